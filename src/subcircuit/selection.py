"""Choosing a circuit from per-edge scores (bigger = more important): the top n, a threshold,
greedy growth from the logits, and removal of edges that connect nothing (input → logits)."""

from __future__ import annotations

import torch
from torch import Tensor

from subcircuit.errors import UserError


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


def receiver_components(graph) -> list[list[int]]:
    """For each receiver, the sender positions of the component(s) it feeds ([] for logits;
    every head of the group for a grouped key/value receiver)."""
    out: list[list[int]] = []
    g = graph.cfg.group_size
    for r in graph.receivers:
        if r.kind == "logits":
            out.append([])
        elif ".g" in r.name:
            out.append([graph.sender_pos[f"a{r.layer}.h{h}"] for h in range(r.index * g, (r.index + 1) * g)])
        else:
            out.append([graph.sender_pos[r.component]])
    return out


def _receiver_components(graph) -> Tensor:
    """[receiver sender] bool: the sender components each receiver feeds (none for logits)."""
    comp = torch.zeros(graph.shape, dtype=torch.bool)
    for r, cs in enumerate(receiver_components(graph)):
        comp[r, cs] = True
    return comp


def prune_disconnected(graph, keep: Tensor) -> Tensor:
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


def select_greedy(graph, scores: Tensor, n: int) -> Tensor:
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
