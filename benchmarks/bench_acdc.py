"""ACDC: the fast path against the independent reference (one full pass per edge, autograd engine); same decisions.

The reference is methods/acdc/reference.py, a plain loop sharing no code with the fast path. On
the small models the fast path is also timed against the previous reference's engine (the same
loop on the engine without autograd): the yardstick of the figures measured before issue 16."""

from __future__ import annotations

import contextlib
import time
from unittest import mock

import torch
from common import medians

from subcircuit.graph import build_graph
from subcircuit.methods.acdc import acdc_fast, acdc_reference
from subcircuit.methods.base import make_problem
from subcircuit.models import load
from subcircuit.patching import Patcher
from subcircuit.tasks import get_metric, get_task


def _problem(model: str, task: str, gran: str, ablation: str, n: int, metric: str | None = None):
    loaded = load(model)
    t = get_task(task, loaded, n=n, seed=0)
    return make_problem(loaded.model, build_graph(loaded.cfg, gran), t, get_metric(metric or t.metric), ablation)


@contextlib.contextmanager
def _previous_reference_engine():
    """The reference loop on the engine the reference used before issue 16: each trial one full
    pass (every component, logits at every position) on the engine without autograd. Only a
    yardstick, so that today's speed-up can be compared with the figures measured against it."""
    def full_pass(self, masks, start=None):
        return self.logits(masks, start=start, skip_dead=False)

    with mock.patch.object(Patcher, "logits_with_grad", full_pass):
        yield


def _versus(model: str, task: str, gran: str, ablation: str, tau: float, n: int = 16, repeats: int = 15,
            metric: str | None = None, yardstick: bool = True, cpu: bool = False) -> list[dict]:
    """The fast path against the independent reference (and, with `yardstick`, against the
    previous reference's engine), interleaved in one process. `cpu`: CPU seconds of this process
    instead of wall seconds (for long cases run with one thread on a machine doing other work)."""
    prob = _problem(model, task, gran, ablation, n, metric)
    out: dict[str, object] = {}

    def fast():
        out["fast"] = acdc_fast(prob, tau)

    def ref():
        out["ref"] = acdc_reference(prob, tau)

    def previous():
        with _previous_reference_engine():
            out["previous"] = acdc_reference(prob, tau)

    fns = {"fast": fast, "reference": ref, **({"previous": previous} if yardstick else {})}
    t = medians(fns, repeats=repeats, warmup=0, clock=time.process_time if cpu else time.perf_counter)
    f, r = out["fast"], out["ref"]
    same = [t.removed for t in f.trace] == [t.removed for t in r.trace] and bool(torch.equal(f.mask, r.mask)) \
        and bool(torch.allclose(f.scores, r.scores, atol=1e-5))
    row = {
        "model": model, "task": task, "graph": f"{gran} ({prob.graph.n_edges} edges)", "ablation": ablation,
        "metric": prob.metric.name, "tau": tau, "prompts": prob.task.n, "circuit_edges": int(f.mask.sum()),
        "clock": "cpu" if cpu else "wall", "reference_s": t["reference"], "fast_s": t["fast"], "speedup": t["reference"] / t["fast"],
    }
    if yardstick:
        row.update(previous_reference_s=t["previous"], speedup_vs_previous=t["previous"] / t["fast"])
    row.update(reference_configs=r.forward_configs, fast_configs=f.forward_configs, identical=same,
               repeats=repeats, threads=torch.get_num_threads())
    return [row]


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
    "smollm2-ioi-layers": lambda: _versus("smollm2-135m", "ioi", "layers", "corrupted", 0.01, repeats=1,
                                          yardstick=False, cpu=True),
    "smollm2-ioi-layers-fast": lambda: _fast_only("layers"),
    "smollm2-ioi-heads-fast": lambda: _fast_only("heads"),
    "smollm2-ioi-heads-qkv-fast": lambda: _fast_only("heads-qkv"),
}
