"""Faithfulness-vs-size curves and MIB's two summary numbers, CPR and CMD.

A score-based method (EAP, EAP-IG, Edge Pruning, random, ...) ranks every edge; the circuit of
size k is its top-k edges. MIB (Mueller et al. 2025, circuit track) evaluates the ranking at ten
edge fractions

    FRACTIONS = 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1   (0.1% … 100%)

with k = floor(fraction · n_edges) (MIB's `int(pct * n_scored_items)`), measures faithfulness f(k)
(see `faithfulness`), and integrates with the trapezoid rule over the fraction itself:

    CPR = Σ_i (x_{i+1} − x_i) · (f_i + f_{i+1}) / 2                higher is better
    CMD = Σ_i (x_{i+1} − x_i) · (|1 − f_i| + |1 − f_{i+1}|) / 2    lower is better

The x-axis is the fraction of the graph's edges, in [0, 1], on a linear scale (MIB's default,
`log_scale=False`), and the integral starts at the first point (0.001), not at 0, so a
perfect curve (f ≡ 1) has CPR = 0.999 and CMD = 0. CPR ranks edges by their signed score
(edges that push the metric the right way first); CMD ranks by |score| (MIB's `absolute=True`):
CPR rewards circuits that do the task, CMD circuits that reproduce the model, in either
direction. Differences from MIB: we do not prune dangling edges of the top-k circuit, and the
top-k tie-break is by edge position (`selection.select_top`).

All ten circuits run as one batch of mask configurations through `Problem.value`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from subcircuit.errors import UserError
from subcircuit.evaluation.faithfulness import Baseline, baseline, faithfulness_many
from subcircuit.graph import Graph
from subcircuit.methods.base import Problem

FRACTIONS: tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


@dataclass(frozen=True)
class Curve:
    """Faithfulness of the top-k circuits at each fraction; `absolute`: ranked by |score|."""

    fractions: tuple[float, ...]
    n_edges: tuple[int, ...]
    values: tuple[float, ...]  # the metric's value m(C_k)
    faithfulness: tuple[float | None, ...]
    absolute: bool
    baseline: Baseline = field(repr=False)

    def area(self) -> float:
        """CPR (signed ranking) or the area under f of this curve."""
        return area_under(self.fractions, self._f())

    def area_from_one(self) -> float:
        """CMD's integrand: the area between f and 1."""
        return area_from_one(self.fractions, self._f())

    def _f(self) -> list[float]:
        return [math.nan if f is None else f for f in self.faithfulness]

    def to_dict(self) -> dict:
        return {"fractions": list(self.fractions), "n_edges": list(self.n_edges), "values": list(self.values),
                "faithfulness": list(self.faithfulness), "absolute": self.absolute}


def trapezoid(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Σ (x_{i+1} − x_i)(y_i + y_{i+1})/2 over consecutive points (xs increasing)."""
    if len(xs) != len(ys):
        raise ValueError(f"{len(xs)} x values but {len(ys)} y values")
    if any(b < a for a, b in zip(xs, xs[1:], strict=False)):
        raise ValueError("x values must be increasing")
    return float(sum((x2 - x1) * (y1 + y2) / 2 for x1, x2, y1, y2 in zip(xs, xs[1:], ys, ys[1:], strict=False)))


def area_under(fractions: Sequence[float], faithfulness: Sequence[float]) -> float:
    """CPR: trapezoid area under f over the edge fraction."""
    return trapezoid(fractions, faithfulness)


def area_from_one(fractions: Sequence[float], faithfulness: Sequence[float]) -> float:
    """CMD: trapezoid area under |1 − f| over the edge fraction."""
    return trapezoid(fractions, [abs(1 - f) for f in faithfulness])


def sizes(n_edges: int, fractions: Sequence[float] = FRACTIONS) -> list[int]:
    """k = floor(fraction · n_edges) for each fraction (MIB's rounding)."""
    for f in fractions:
        if not 0 <= f <= 1:
            raise UserError(f"edge fraction {f} is invalid; expected 0..1")
    return [int(f * n_edges) for f in fractions]


def topk_masks(graph: Graph, scores: Tensor, ks: Sequence[int], absolute: bool = False) -> Tensor:
    """scores [n_edges] -> masks [len(ks) receiver sender]: the top-k edges for each k (ties by
    position; non-finite scores rank last)."""
    s = scores.detach().float().cpu()
    s = s.abs() if absolute else s
    s = torch.where(torch.isfinite(s), s, torch.tensor(-math.inf))
    order = torch.argsort(s, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    flat = torch.stack([(rank < k).float() for k in ks])  # [c n_edges]
    return graph.from_flat(flat)


def faithfulness_curve(problem: Problem, scores: Tensor, fractions: Sequence[float] = FRACTIONS,
                       absolute: bool = False, base: Baseline | None = None, batch: int | None = None) -> Curve:
    """Faithfulness of the top-k circuits of `scores` [n_edges] at each edge fraction."""
    g = problem.graph
    if scores.shape != (g.n_edges,):
        raise UserError(f"scores have shape {tuple(scores.shape)}; expected ({g.n_edges},)")
    base = base or baseline(problem)
    ks = sizes(g.n_edges, fractions)
    # k = 0 and k = n_edges are the empty and full graphs: already measured by the baseline
    todo = sorted({k for k in ks if 0 < k < g.n_edges})
    measured = dict(zip(todo, faithfulness_many(problem, topk_masks(g, scores, todo, absolute), base, batch)[0],
                        strict=True)) if todo else {}
    measured.update({0: base.empty, g.n_edges: base.full})
    values = [measured[k] for k in ks]
    faith = [base.normalize(v) for v in values]
    return Curve(tuple(fractions), tuple(ks), tuple(values), tuple(faith), absolute, base)


@dataclass(frozen=True)
class CprCmd:
    """MIB's two numbers with the curves behind them."""

    cpr: float
    cmd: float
    cpr_curve: Curve
    cmd_curve: Curve

    def to_dict(self) -> dict:
        return {"cpr": self.cpr, "cmd": self.cmd, "cpr_curve": self.cpr_curve.to_dict(),
                "cmd_curve": self.cmd_curve.to_dict()}


def cpr_cmd(problem: Problem, scores: Tensor, fractions: Sequence[float] = FRACTIONS, batch: int | None = None) -> CprCmd:
    """CPR (signed ranking, area under f) and CMD (|score| ranking, area under |1 − f|)."""
    base = baseline(problem)
    signed = faithfulness_curve(problem, scores, fractions, False, base, batch)
    if bool((scores[torch.isfinite(scores)] >= 0).all()):  # |score| ranks as score does: same circuits
        absolute = Curve(signed.fractions, signed.n_edges, signed.values, signed.faithfulness, True, base)
    else:
        absolute = faithfulness_curve(problem, scores, fractions, True, base, batch)
    return CprCmd(signed.area(), absolute.area_from_one(), signed, absolute)
