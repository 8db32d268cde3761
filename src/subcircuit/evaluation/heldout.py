"""Faithfulness on held-out prompts: the circuit found on the discovery prompts, judged on others.

`HeldOut(model, graph, task, metric, ablation)` holds the evaluation prompts (`tasks.split`) as
problems of at most `chunk` prompts each (so 64 prompts of a real model cost what 16 do in
memory); every metric is a mean over examples, so the prompt-weighted mean of the chunks' values
is the metric on the whole set, and m(N), m(∅) and m(C) are combined that way before
normalizing. Mean ablation averages over the reference prompts, so it runs as one chunk (its
mean is over all the held-out corrupted prompts).

`measure(mask)` gives the `results` fields of circuit.json: metric_full_model_heldout,
metric_circuit_heldout, metric_empty_circuit_heldout, faithfulness_heldout, n_examples_heldout.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from torch import Tensor

from subcircuit.evaluation.faithfulness import Baseline, baseline, faithfulness_value, metric_values
from subcircuit.graph import Graph
from subcircuit.methods.base import Problem, make_problem
from subcircuit.tasks.base import Task
from subcircuit.tasks.metrics import Metric

__all__ = ["HELDOUT_KEYS", "HeldOut"]

HELDOUT_KEYS = ("metric_full_model_heldout", "metric_circuit_heldout", "metric_empty_circuit_heldout",
                "faithfulness_heldout", "n_examples_heldout")


class HeldOut:
    """The held-out prompts of a run, ready to measure circuits on (see the module docstring)."""

    def __init__(self, model: Any, graph: Graph, task: Task, metric: Metric, ablation: str = "corrupted",
                 chunk: int = 16) -> None:
        from subcircuit.tasks.split import subset_task

        self.task, self.graph = task, graph
        size = task.n if ablation == "mean" else max(1, chunk)
        parts = [subset_task(task, list(range(i, min(i + size, task.n)))) for i in range(0, task.n, size)]
        self.problems: list[Problem] = [make_problem(model, graph, t, metric, ablation) for t in parts]

    @property
    def n(self) -> int:
        return self.task.n

    def _mean(self, per_chunk: list[list[float]]) -> list[float]:
        """Prompt-weighted mean over chunks of per-configuration values."""
        w = [p.task.n for p in self.problems]
        return [sum(v[j] * wi for v, wi in zip(per_chunk, w, strict=True)) / sum(w) for j in range(len(per_chunk[0]))]

    @cached_property
    def baseline(self) -> Baseline:
        """m(N) and m(∅) on the held-out prompts."""
        bs = [baseline(p) for p in self.problems]
        full, empty = self._mean([[b.full, b.empty] for b in bs])
        return Baseline(full, empty)

    def values(self, masks: Tensor) -> list[float]:
        """masks [c receiver sender] -> the metric on the held-out prompts for each configuration."""
        return self._mean([metric_values(p, masks) for p in self.problems])

    def measure(self, mask: Tensor) -> dict[str, Any]:
        """The held-out `results` fields for one circuit mask [receiver sender]."""
        base = self.baseline
        (value,) = self.values(mask[None])
        return {"metric_full_model_heldout": base.full, "metric_circuit_heldout": value,
                "metric_empty_circuit_heldout": base.empty,
                "faithfulness_heldout": faithfulness_value(value, base.full, base.empty),
                "n_examples_heldout": self.n}


def run_prompts(c: Any, device: str = "cpu", prompts: str = "heldout", n_eval: int | None = None,
                dtype: str | None = None, offload: str | None = None) -> tuple[Any, Graph, Task, Metric]:
    """(loaded model, graph, task, metric) of a finished run (a `Circuit`), with its discovery
    prompts (`prompts="discovery"`: the run's n_examples and seed) or its held-out prompts
    (`"heldout"`: as the run drew them, `tasks.split`; `n_eval` default: the run's own count).
    At `dtype` (None: the run's own, else the device's default). A UserError when the run has no
    held-out prompts."""
    from subcircuit.errors import UserError
    from subcircuit.graph import build_graph
    from subcircuit.models import load
    from subcircuit.tasks import get_metric, get_task
    from subcircuit.tasks.split import heldout_task

    if prompts not in ("heldout", "discovery"):
        raise UserError(f"--prompts {prompts!r} is invalid; valid: heldout, discovery")
    loaded = load(c.model, device, dtype or getattr(c, "dtype", None), offload)
    seed = int(c.params.get("seed", 0))
    task = get_task(c.task, loaded, c.params.get("n_examples"), seed)
    if prompts == "heldout":
        n = n_eval if n_eval is not None else c.results.get("n_examples_heldout")  # None: the default count
        ev = heldout_task(c.task, loaded, task, n, seed)
        if ev is None:
            raise UserError(f"run of {c.model!r} / {c.task!r} has no held-out prompts; use --prompts discovery")
        task = ev
    return loaded, build_graph(loaded.cfg, c.granularity), task, get_metric(c.metric)


def measure_run(c: Any, device: str = "cpu", n_eval: int | None = None, dtype: str | None = None,
                offload: str | None = None) -> dict[str, Any]:
    """The held-out `results` fields of a finished run, measured now (for a circuit file made
    without them)."""
    import torch

    loaded, graph, task, metric = run_prompts(c, device, "heldout", n_eval, dtype, offload)
    torch.manual_seed(int(c.params.get("seed", 0)))
    return HeldOut(loaded.model, graph, task, metric, c.ablation).measure(graph.mask_from_edges(c.in_circuit))
