"""Choosing a circuit from per-edge scores (bigger = more important): the top n, a threshold,
greedy growth from the logits, and removal of edges that connect nothing (input → logits).

Score methods (`MethodSpec.selects_circuit` False: EAP, EAP-IG, the baselines) return scores
only; the run chooses their circuit with `select_circuit(graph, scores, SelectOptions(...))`:
`--threshold T` keeps the edges scoring at least T; otherwise `--edges N` (or `--sparsity S`,
the fraction removed; default 1% of the edges) keeps N edges, the top N (`--selection top`) or
grown from the logits (`--selection greedy`); `--prune` then drops the edges that lie on no path
input → logits. `--ranking abs` ranks (and thresholds) by |score| instead of the signed score; a
run that does not say gets the method's own ranking (`methods.defaults`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from subcircuit.errors import UserError
from subcircuit.graph import Graph
from subcircuit.methods.base import Options, at_least, non_negative, option


@dataclass(frozen=True)
class SelectOptions(Options):
    """How the run chooses a score method's circuit (see the module docstring)."""

    edges: int | None = option(None, "Circuit size in edges (default: 1% of the graph's edges).")
    threshold: float | None = option(None, "Keep the edges whose score is at least T.")
    sparsity: float | None = option(None, "Fraction of edges removed (instead of --edges).")
    selection: Literal["top", "greedy"] = option("top", "top (the best N) or greedy (grow from the logits).")
    prune: bool = option(False, "Drop edges not on a path input -> logits.")
    ranking: Literal["signed", "abs"] | None = option(
        None, "Rank edges by signed score or by |score| (default: the method's own, methods/defaults.py).")

    def check(self) -> None:
        non_negative("--threshold", self.threshold)
        at_least("--edges", self.edges, 1)
        given = [f for f, v in (("--edges", self.edges), ("--threshold", self.threshold),
                                ("--sparsity", self.sparsity)) if v is not None]
        if len(given) > 1:
            raise UserError(f"give only one of --sparsity, --edges, --threshold (got {', '.join(given)})")
        if self.sparsity is not None and not 0 <= self.sparsity < 1:
            raise UserError(f"--sparsity {self.sparsity} is invalid; expected 0 <= S < 1")


def target_edges(n_total: int, edges: int | None, sparsity: float | None) -> int:
    """The requested circuit size from `--edges N` or `--sparsity S` (fraction removed); 1% of
    the edges when neither is given."""
    if edges is not None and sparsity is not None:
        raise UserError("give either --edges or --sparsity, not both")
    if sparsity is not None:
        if not 0 <= sparsity < 1:
            raise UserError(f"--sparsity {sparsity} is invalid; expected 0 <= S < 1")
        return max(1, round((1 - sparsity) * n_total))
    n = edges if edges is not None else max(1, n_total // 100)
    if not 1 <= n <= n_total:
        raise UserError(f"--edges {n} is invalid; expected 1..{n_total}")
    return n


def check_select(graph: Graph, opts: SelectOptions) -> None:
    """Refuse a selection the graph cannot give (before any method runs)."""
    if opts.threshold is None:
        target_edges(graph.n_edges, opts.edges, opts.sparsity)


def select_circuit(graph: Graph, scores: Tensor, opts: SelectOptions) -> tuple[Tensor, dict[str, Any], dict[str, Any]]:
    """(keep [n_edges] bool, params, info): the circuit chosen from `scores` by `opts`. params:
    {"threshold": T} or {"edges": n, "selection": s}, and "prune": True with --prune; info:
    {"n_pruned_disconnected": k} with --prune."""
    params: dict[str, Any] = {}
    info: dict[str, Any] = {}
    if opts.ranking == "abs":  # rank (and threshold) by magnitude; the stored scores stay signed
        scores = scores.abs()
        params["ranking"] = "abs"
    elif opts.ranking == "signed":
        params["ranking"] = "signed"
    if opts.threshold is not None:
        keep = select_threshold(scores, opts.threshold)
        params["threshold"] = opts.threshold
    else:
        n = target_edges(graph.n_edges, opts.edges, opts.sparsity)
        keep = select_greedy(graph, scores, n) if opts.selection == "greedy" else select_top(scores, n)
        params.update(edges=n, selection=opts.selection)
    if opts.prune:
        before = int(keep.sum())
        keep = prune_disconnected(graph, keep)
        params["prune"] = True
        info["n_pruned_disconnected"] = before - int(keep.sum())
    return keep, params, info


def select_top(scores: Tensor, n: int) -> Tensor:
    """[n_edges] bool: the n highest-scoring edges (ties broken by position, deterministically)."""
    if not 1 <= n <= scores.numel():
        raise UserError(f"--edges {n} is invalid; expected 1..{scores.numel()}")
    order = torch.argsort(scores.float(), descending=True, stable=True)
    keep = torch.zeros(scores.numel(), dtype=torch.bool)
    keep[order[:n]] = True
    return keep


def select_threshold(scores: Tensor, threshold: float) -> Tensor:
    """[n_edges] bool: edges whose score is at least `threshold`."""
    return scores >= threshold


def receiver_components(graph: Graph) -> list[list[int]]:
    """For each receiver, the sender positions of the component(s) it feeds ([] for logits;
    every head of the group for a grouped key/value receiver): `graph.feeds` as lists."""
    return [list(f) for f in graph.feeds]


def _receiver_components(graph: Graph) -> Tensor:
    """[receiver sender] bool: the sender components each receiver feeds (none for logits)."""
    comp = torch.zeros(graph.shape, dtype=torch.bool)
    for r, cs in enumerate(receiver_components(graph)):
        comp[r, cs] = True
    return comp


def prune_disconnected(graph: Graph, keep: Tensor) -> Tensor:
    """[n_edges] bool -> the kept edges that lie on some path `input` → `logits` through kept
    edges. A component (head, MLP) is *reached* when a kept edge from a reached sender enters
    one of its receivers (`input` is always reached) and *useful* when it is reached and a kept
    edge leads from it to `logits` or to a useful component; an edge s→r stays when s is
    `input` or useful, and r is `logits` or belongs to a useful component.

    Under corrupted ablation the pruned edges change nothing: a component with no kept input
    outputs exactly its ablated output (its delta is 0), and a receiver whose component feeds
    nothing kept reaches no logit. Under mean or zero ablation they can (see docs/methods.md)."""
    k = graph.from_flat(keep.bool().cpu().float()).bool()  # [receiver sender]
    comp = _receiver_components(graph)
    is_logits = torch.tensor([r.kind == "logits" for r in graph.receivers])
    n_s = len(graph.senders)
    reached = torch.zeros(n_s, dtype=torch.bool)
    reached[0] = True
    for s in range(1, n_s):
        rows = comp[:, s]
        reached[s] = bool((k[rows] & reached[None, :]).any())
    useful = torch.zeros(n_s, dtype=torch.bool)
    for s in reversed(range(n_s)):
        if not reached[s]:
            continue
        targets = is_logits | (comp & useful[None, :]).any(1)  # receivers that lead on
        useful[s] = bool((k[:, s] & targets).any())
    targets = is_logits | (comp & useful[None, :]).any(1)
    src = useful.clone()
    src[0] = True
    return graph.to_flat(k & src[None, :] & targets[:, None])


def select_greedy(graph: Graph, scores: Tensor, n: int) -> Tensor:
    """[n_edges] bool: grow a circuit of n edges from the logits: start from the edges into
    `logits`; repeatedly add the best-scoring edge whose receiver belongs to `logits` or to a
    component already in the circuit (each added edge brings its sender in). Pass `scores.abs()`
    to rank by magnitude (the EAP-IG repository's default). Fewer than n edges when none are
    left to add."""
    import heapq

    if not 1 <= n <= scores.numel():
        raise UserError(f"--edges {n} is invalid; expected 1..{scores.numel()}")
    idx = torch.full(graph.shape, -1, dtype=torch.long)
    idx[graph.exists] = torch.arange(graph.n_edges)
    comp = _receiver_components(graph)
    sc = scores.float().cpu().tolist()
    heap: list[tuple[float, int, int]] = []  # (−score, edge, sender)

    def push_receiver(r: int) -> None:
        for s in graph.exists[r].nonzero().flatten().tolist():
            e = int(idx[r, s])
            heapq.heappush(heap, (-sc[e], e, s))

    in_circuit = torch.zeros(len(graph.senders), dtype=torch.bool)
    for r, rec in enumerate(graph.receivers):
        if rec.kind == "logits":
            push_receiver(r)
    keep = torch.zeros(graph.n_edges, dtype=torch.bool)
    count = 0
    while heap and count < n:
        _, e, s = heapq.heappop(heap)
        if keep[e]:
            continue
        keep[e] = True
        count += 1
        if s != 0 and not in_circuit[s]:
            in_circuit[s] = True
            for r in comp[:, s].nonzero().flatten().tolist():
                push_receiver(r)
    return keep
