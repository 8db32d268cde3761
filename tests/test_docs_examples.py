"""The method example of docs/contributing.md runs as written: registered, built from its
options dataclass, refused with a bad value, and giving one score per edge."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest
import torch
from conftest import TINY_CONFIGS, random_model

from subcircuit.errors import UserError
from subcircuit.graph import build_graph
from subcircuit.methods import METHODS, make_problem, run_method
from subcircuit.tasks.base import Task
from subcircuit.tasks.metrics import get_metric

DOC = Path(__file__).resolve().parents[1] / "docs" / "contributing.md"


def _method_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    (code,) = [b for b in blocks if "register_method(" in b]
    return code


def test_contributing_method_example_runs():
    model = random_model(TINY_CONFIGS["gpt2"], seed=0)
    g = torch.Generator().manual_seed(0)
    clean, corr = torch.randint(0, 23, (3, 6), generator=g), torch.randint(0, 23, (3, 6), generator=g)
    task = Task("tiny", clean, corr, torch.full((3,), 5), torch.randint(0, 23, (3, 1), generator=g),
                torch.randint(0, 23, (3, 1), generator=g))
    problem = make_problem(model, build_graph(model.cfg), task, get_metric("logit-diff"))
    try:
        module = types.ModuleType("docs_example")  # dataclasses resolve annotations through sys.modules
        sys.modules[module.__name__] = module
        exec(compile(_method_example(), str(DOC), "exec"), module.__dict__)
        spec = METHODS["my-method"]
        assert spec.uses_gradients and not spec.selects_circuit
        res = run_method("my-method", problem, steps=3)
        assert res.scores.shape == (problem.graph.n_edges,) and bool(torch.isfinite(res.scores).all())
        assert res.params == {"steps": 3}
        with pytest.raises(UserError, match="--my-steps 0 is invalid"):
            run_method("my-method", problem, steps=0)
        with pytest.raises(UserError, match="--abs is not an option of my-method"):
            run_method("my-method", problem, abs_value=True)
    finally:
        METHODS.pop("my-method", None)
        sys.modules.pop("docs_example", None)
