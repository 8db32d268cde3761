"""Agreement with a reference circuit: TPR/FPR, ROC curves and their AUC, at edge and node level.

Edge level: every edge of the graph is a positive (in the reference) or a negative; a circuit's
true-positive rate is |C ∩ R| / |R| and its false-positive rate |C \\ R| / |E \\ R|.
Node level: the nodes are the components `input`, `a{L}.h{H}`, `m{L}` and `logits`; a node is
in a circuit iff any edge of the circuit touches it (as sender, or as receiver through any of
its inputs: a head's q, k or v; a key/value group's input counts for every head of the group).

ROC curves, as the ACDC paper draws them (Conmy et al. 2023, §4.1 and the `pessimistic_auc` /
`discard_non_pareto_optimal` helpers of github.com/ArthurConmy/Automatic-Circuit-Discovery,
`notebooks/roc_plot_generator.py`, `acdc/graphics.py`):

- ACDC gives one circuit per threshold τ, i.e. one (FPR, TPR) point per τ. Keep the Pareto
  points (no other point has lower-or-equal FPR and higher-or-equal TPR), add (0, 0) and
  (1, 1) — the empty and the full graph, the two ends of every sweep.
- AUC is the area under the *pessimistic* step function through those points: sorted by FPR
  (ties by TPR), the curve stays at the previous TPR until the next point's FPR, so
  AUC = Σ_i (1 − x_i)(y_i − y_{i−1}) with (x_0, y_0) = (0, 0) and y made non-decreasing.
  Two points (0, t) and (1, 1) give AUC = t, not the trapezoid's (1 + t)/2.
- Score-based methods give a ranking instead: the circuits are the top-k edges for every k
  (cut only between distinct scores), which gives all points at once; the same AUC applies
  (with every cut point kept it equals the usual ROC AUC with ties counted pessimistically).
  For nodes, a node enters at the rank of its best edge, i.e. its score is the max of its edges'.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from subcircuit.errors import UserError
from subcircuit.graph import Graph

Point = tuple[float, float]  # (fpr, tpr)


@dataclass(frozen=True)
class Rates:
    """Confusion counts of a circuit against a reference, with TPR and FPR."""

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def tpr(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else math.nan

    @property
    def fpr(self) -> float:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else math.nan

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else math.nan

    def to_dict(self) -> dict:
        def num(x: float) -> float | None:
            return None if math.isnan(x) else x

        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn, "tpr": num(self.tpr),
                "fpr": num(self.fpr)}


def rates(pred: Tensor, ref: Tensor) -> Rates:
    """pred, ref [n] bool (edges or nodes) -> confusion counts."""
    if pred.shape != ref.shape:
        raise ValueError(f"shapes differ: {tuple(pred.shape)} vs {tuple(ref.shape)}")
    p, r = pred.bool(), ref.bool()
    return Rates(int((p & r).sum()), int((p & ~r).sum()), int((~p & r).sum()), int((~p & ~r).sum()))


# ---------------------------------------------------------------------------------------- nodes


def node_names(graph: Graph) -> tuple[str, ...]:
    """The nodes of node-level evaluation: every sender component, then `logits`."""
    return tuple(n.name for n in graph.senders) + ("logits",)


def _edge_nodes(graph: Graph) -> list[list[int]]:
    """For each edge (in `graph.edges` order), the node positions it touches: its sender, and the
    component(s) its receiver is an input of (every head of a key/value group), or `logits`."""
    pos = {n: i for i, n in enumerate(node_names(graph))}
    out = []
    for r, s in graph.edge_index.tolist():
        touched = [pos[graph.senders[s].name]]
        feeds = graph.feeds[r]
        touched += [pos[graph.senders[i].name] for i in feeds] if feeds else [pos["logits"]]
        out.append(touched)
    return out


def node_incidence(graph: Graph) -> Tensor:
    """[n_nodes n_edges] bool: which edges touch which node."""
    inc = torch.zeros(len(node_names(graph)), graph.n_edges, dtype=torch.bool)
    for e, nodes in enumerate(_edge_nodes(graph)):
        inc[nodes, e] = True
    return inc


def nodes_of(edge_mask: Tensor, incidence: Tensor) -> Tensor:
    """edge_mask [n_edges] bool -> [n_nodes] bool: nodes touched by at least one edge."""
    return (incidence & edge_mask.bool()[None, :]).any(dim=1)


def node_scores(scores: Tensor, incidence: Tensor) -> Tensor:
    """scores [n_edges] -> [n_nodes]: each node's best edge score (-inf for untouched nodes)."""
    s = scores.float()[None, :].expand(incidence.shape[0], -1)
    return torch.where(incidence, s, torch.tensor(-math.inf)).max(dim=1).values


# ---------------------------------------------------------------------------------- ROC and AUC


def pareto(points: Sequence[Point]) -> list[Point]:
    """The Pareto-optimal (fpr, tpr) points plus (0, 0) and (1, 1), sorted by fpr then tpr.
    A point is dropped when another has fpr <= and tpr >= (and differs)."""
    pts = sorted({(float(x), float(y)) for x, y in points if math.isfinite(x) and math.isfinite(y)}
                 | {(0.0, 0.0), (1.0, 1.0)})
    keep = [(x, y) for x, y in pts if not any(x1 <= x and y1 >= y and (x1, y1) != (x, y) for x1, y1 in pts)]
    return sorted(set(keep) | {(0.0, 0.0), (1.0, 1.0)})


def pessimistic_auc(points: Sequence[Point]) -> float:
    """Area under the pessimistic step function through (fpr, tpr) points (see module docstring).

    Points are sorted by fpr (ties: tpr); (0, 0) is prepended; tpr is made non-decreasing; each
    rise y_i − y_{i−1} happens at x_i and counts for the remaining width 1 − x_i."""
    pts = sorted((float(x), float(y)) for x, y in points)
    area, prev_y = 0.0, 0.0
    for x, y in pts:
        if not (0 <= x <= 1 and 0 <= y <= 1):
            raise ValueError(f"ROC point ({x}, {y}) lies outside [0, 1]²")
        if y > prev_y:
            area += (1 - x) * (y - prev_y)
            prev_y = y
    return area


def auc_of_circuits(pred_masks: Sequence[Tensor], ref: Tensor) -> tuple[float, list[Point]]:
    """ACDC-style AUC: one circuit per τ (pred_masks: [n] bool each) against ref [n] bool.
    Returns (AUC over the Pareto points + (0,0) and (1,1), those points)."""
    pts = [(r.fpr, r.tpr) for r in (rates(p, ref) for p in pred_masks)]
    front = pareto(pts)
    return pessimistic_auc(front), front


def ranking_roc(scores: Tensor, ref: Tensor) -> list[Point]:
    """ROC points of the top-k sets of a ranking (bigger score first), cutting only between distinct
    scores, from k = 0 to k = n. scores, ref: [n]."""
    s = scores.detach().float().cpu()
    s = torch.where(torch.isnan(s), torch.tensor(-math.inf), s)
    r = ref.bool().cpu()
    n_pos, n_neg = int(r.sum()), int((~r).sum())
    if n_pos == 0 or n_neg == 0:
        raise UserError("the reference circuit is empty or holds every element; ROC is undefined")
    order = torch.argsort(s, descending=True, stable=True)
    tp = torch.cumsum(r[order].int(), 0)
    fp = torch.cumsum((~r[order]).int(), 0)
    ss = s[order]
    last_of_tie = torch.ones_like(ss, dtype=torch.bool)
    last_of_tie[:-1] = ss[:-1] != ss[1:]
    pts = [(0.0, 0.0)] + [(f / n_neg, t / n_pos) for t, f in zip(tp[last_of_tie].tolist(), fp[last_of_tie].tolist(),
                                                                  strict=True)]
    return pts


def auc_of_ranking(scores: Tensor, ref: Tensor) -> tuple[float, list[Point]]:
    """AUC of a score ranking against ref [n] bool (every cut between distinct scores)."""
    pts = ranking_roc(scores, ref)
    return pessimistic_auc(pts), pts
