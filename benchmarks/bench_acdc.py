"""ACDC: the fast path against the slow reference (one full forward pass per edge), same decisions."""

from __future__ import annotations

import time

import torch
from common import medians

from subcircuit.graph import build_graph
from subcircuit.methods.acdc import acdc_fast, acdc_reference
from subcircuit.methods.base import make_problem
from subcircuit.models import load
from subcircuit.tasks import get_metric, get_task


def _problem(model: str, task: str, gran: str, ablation: str, n: int, metric: str | None = None):
    loaded = load(model)
    t = get_task(task, loaded, n=n, seed=0)
    return make_problem(loaded.model, build_graph(loaded.cfg, gran), t, get_metric(metric or t.metric), ablation)


def _versus(model: str, task: str, gran: str, ablation: str, tau: float, n: int = 16, repeats: int = 3,
            metric: str | None = None) -> list[dict]:
    prob = _problem(model, task, gran, ablation, n, metric)
    out: dict[str, object] = {}

    def fast():
        out["fast"] = acdc_fast(prob, tau)

    def ref():
        out["ref"] = acdc_reference(prob, tau)

    t = medians({"fast": fast, "reference": ref}, repeats=repeats, warmup=0)
    f, r = out["fast"], out["ref"]
    same = bool(torch.equal(f.mask, r.mask)) and bool(torch.allclose(f.scores, r.scores, atol=1e-5))
    return [{
        "model": model, "task": task, "graph": f"{gran} ({prob.graph.n_edges} edges)", "ablation": ablation,
        "metric": prob.metric.name, "tau": tau, "prompts": prob.task.n, "circuit_edges": int(f.mask.sum()),
        "reference_s": t["reference"], "fast_s": t["fast"], "speedup": t["reference"] / t["fast"],
        "reference_configs": r.forward_configs, "fast_configs": f.forward_configs, "identical": same,
        "repeats": repeats,
    }]


def _fast_only(gran: str, tau: float = 0.01) -> list[dict]:
    """The fast path alone on SmolLM2 IOI (16 prompts): wall time and work done."""
    prob = _problem("smollm2-135m", "ioi", gran, "corrupted", 16)
    t0 = time.perf_counter()
    st = acdc_fast(prob, tau)
    took = time.perf_counter() - t0
    return [{"model": "smollm2-135m", "task": "ioi", "graph": f"{gran} ({prob.graph.n_edges} edges)",
             "tau": tau, "prompts": 16, "median_s": took, "circuit_edges": int(st.mask.sum()),
             "trials": len(st.trace), "skipped_edges": st.skipped, "configs_run": st.forward_configs,
             "repeats": 1}]


CASES = {
    "toy-induction-2l": lambda: _versus("toy-induction-2l", "induction", "heads-qkv", "corrupted", 0.01),
    "tracr-reverse": lambda: _versus("tracr-reverse", "tracr-reverse", "heads-qkv", "zero", 0.01),
    "tracr-proportion": lambda: _versus("tracr-proportion", "tracr-proportion", "heads-qkv", "zero", 0.01),
    "smollm2-ioi-layers": lambda: _versus("smollm2-135m", "ioi", "layers", "corrupted", 0.01, repeats=1),
    "smollm2-ioi-layers-fast": lambda: _fast_only("layers"),
    "smollm2-ioi-heads-fast": lambda: _fast_only("heads"),
}
