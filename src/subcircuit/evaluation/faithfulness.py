"""Faithfulness: how much of the full model's behaviour a circuit alone recovers.

MIB's definition (Mueller et al. 2025, "MIB: A Mechanistic Interpretability Benchmark"), also
DESIGN.md's:

    f(C) = (m(C) − m(∅)) / (m(N) − m(∅))

with m the task metric's own value (`Problem.value`, not the loss), m(N) the full model (every
edge kept), m(C) the circuit (every other edge ablated) and m(∅) the empty graph (every edge
ablated). f = 1: the circuit does what the model does; f = 0: no better than ablating everything.
f is undefined (None) when m(N) = m(∅), i.e. the ablation does not change the metric at all.

The full and empty graphs are the same for every circuit of a problem, so `Baseline` measures
them once and `faithfulness_many` evaluates any number of circuits as one batch of mask
configurations through the patching primitive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from subcircuit.methods.base import Problem

EPS = 1e-12


@dataclass(frozen=True)
class Baseline:
    """m(N) and m(∅) of a problem: the two ends faithfulness is normalized by."""

    full: float
    empty: float

    def normalize(self, value: float) -> float | None:
        """f = (value − m(∅)) / (m(N) − m(∅)); None when m(N) = m(∅)."""
        return faithfulness_value(value, self.full, self.empty)


def faithfulness_value(circuit: float, full: float, empty: float) -> float | None:
    """(m(C) − m(∅)) / (m(N) − m(∅)); None when the denominator vanishes or anything is not finite."""
    denom = full - empty
    if abs(denom) <= EPS:
        return None
    f = (circuit - empty) / denom
    return f if math.isfinite(f) else None


def configs_fitting(free: int, n_senders: int, batch: int, seq: int, d_model: int, element_size: int,
                    most: int = 64) -> int:
    """How many mask configurations fit in `free` bytes: one takes its sender deltas,
    [senders + 8, batch, seq, d_model] at `element_size` bytes; 1..`most`."""
    per = (n_senders + 8) * batch * seq * d_model * element_size
    return int(min(most, max(1, int(free) // max(per, 1))))


def eval_batch(problem: Problem, headroom: float = 0.5, most: int = 64) -> int:
    """How many mask configurations one evaluation call may hold: `configs_fitting` in `headroom`
    of the device's free memory now; 8 when the free memory cannot be read."""
    from subcircuit.models.placement import free_bytes

    model = problem.model
    dev = model.device
    free = None if dev.type == "meta" else free_bytes(f"cuda:{dev.index or 0}" if dev.type == "cuda" else "cpu")
    if free is None:
        return 8
    b, p = problem.task.clean.shape
    return configs_fitting(int(free * headroom), len(problem.graph.senders), b, p, model.cfg.d_model,
                           model.W_E.element_size(), most)


def metric_values(problem: Problem, masks: Tensor, batch: int | None = None) -> list[float]:
    """masks [c receiver sender] -> the metric's value for each configuration, `batch` at a time
    (None: as many as fit in memory, `eval_batch`)."""
    batch = batch or eval_batch(problem)
    out: list[float] = []
    dev = problem.model.device
    with torch.no_grad():
        for i in range(0, masks.shape[0], batch):
            chunk = masks[i : i + batch].to(device=dev, dtype=torch.float32)
            out += [float(v) for v in problem.value(chunk)]
    return out


def baseline(problem: Problem) -> Baseline:
    """Measure m(N) (full graph) and m(∅) (empty graph) in one batch of two configurations."""
    g = problem.graph
    full, empty = metric_values(problem, torch.stack([g.full_mask(), torch.zeros(g.shape)]))
    return Baseline(full, empty)


def faithfulness_many(problem: Problem, masks: Tensor, base: Baseline | None = None,
                      batch: int | None = None) -> tuple[list[float], list[float | None]]:
    """masks [c receiver sender] -> (metric values [c], faithfulness [c] (None where undefined))."""
    base = base or baseline(problem)
    values = metric_values(problem, masks, batch)
    return values, [base.normalize(v) for v in values]


def measure(problem: Problem, mask: Tensor, base: Baseline | None = None) -> dict[str, float | None]:
    """The `results` fields of circuit.json for one circuit mask [receiver sender]:
    metric_full_model, metric_circuit, metric_empty_circuit, faithfulness."""
    base = base or baseline(problem)
    (value,), (faith,) = faithfulness_many(problem, mask[None], base)
    return {"metric_full_model": base.full, "metric_circuit": value, "metric_empty_circuit": base.empty,
            "faithfulness": faith}
