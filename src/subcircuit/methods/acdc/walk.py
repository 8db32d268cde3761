"""The fast path's walk: ACDC's visiting order, the dead-receiver skip and the replay of traces.

The walk visits ACDC's (receiver, sender) pairs in order (`order`): receivers in reverse
(`logits` first, then each stage from the last layer down; within an attention stage the value,
key and query receivers, last head first), each receiver's senders latest first (`input` last),
only the edges present in the starting graph. At a receiver's first pair, a receiver whose
component no longer feeds anything (`dead`: every outgoing edge of its head, MLP or attention
layer, or of every head of its KV group, removed) is skipped with all its edges, which leave the
circuit untried (score 0). Every other pair becomes a `Trial` from one of three sources:

- a trial already decided by the evaluator's last batch (the speculative path, `fast.py`),
- a recorded trial (`Replay`): a trace from an earlier run, at this τ (resume) or another one,
  serves its measured losses while the decisions they give under this τ agree with the record;
  the first trial whose decision differs is still valid (its loss was measured on the same
  graph) and ends the replay,
- the evaluator, which measures the pair (and possibly the pairs after it).

The decision: the edge stays removed when `new − cur < τ` (`|new − cur| < τ` with `abs_value`);
its score is `new − cur`. The independent reference (`reference.py`) shares none of this.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

import torch
from torch import Tensor

from subcircuit.errors import UserError
from subcircuit.graph import Graph
from subcircuit.methods.acdc.state import ACDCState, Trial
from subcircuit.methods.base import Problem, ProgressFn


def decide(new: float, cur: float, tau: float, abs_value: bool) -> bool:
    """Whether the edge whose removal gives loss `new` (from `cur`) stays removed."""
    diff = new - cur
    return (abs(diff) if abs_value else diff) < tau


def check_tau(tau: float) -> None:
    if isinstance(tau, bool) or not isinstance(tau, int | float) or math.isnan(tau) or tau < 0:
        raise UserError(f"threshold {tau!r} is invalid; expected a number >= 0")


class Replay:
    """Serves recorded trials while their decisions under the new τ agree with the record."""

    def __init__(self, trace: list[Trial] | None, tau: float, abs_value: bool) -> None:
        self.items = deque(trace or [])
        self.tau, self.abs_value = tau, abs_value

    def take(self, r: int, s: int, cur: float) -> Trial | None:
        if not self.items:
            return None
        t = self.items.popleft()
        if (t.receiver, t.sender) != (r, s):
            raise UserError(f"the saved ACDC trace does not match this graph at receiver {r}, sender {s}")
        removed = decide(t.loss, cur, self.tau, self.abs_value)
        if removed != t.removed:
            self.items.clear()  # the graphs differ from here on
        return Trial(r, s, t.loss, removed)


def order(graph: Graph, start: Tensor) -> tuple[list[tuple[int, int]], dict[int, int]]:
    """ACDC's visiting order flattened: the (receiver, sender) pairs to try, and for the first
    pair of each receiver its number of pairs (where the dead-receiver check happens)."""
    flat: list[tuple[int, int]] = []
    firsts: dict[int, int] = {}
    exists = graph.exists & (start.cpu() != 0)
    for r in reversed(range(len(graph.receivers))):
        senders = [s for s in reversed(range(len(graph.senders))) if exists[r, s]]
        if senders:
            firsts[len(flat)] = len(senders)
            flat.extend((r, s) for s in senders)
    return flat, firsts


def dead(mask: Tensor, feeds: tuple[int, ...]) -> bool:
    """Whether a receiver's component no longer feeds anything in the graph `mask`."""
    return bool(feeds) and not bool(mask[:, list(feeds)].any())


def check_finite(loss: float, graph: Graph, r: int, s: int) -> None:
    if not math.isfinite(loss):
        raise UserError(f"the metric is {loss} with edge {graph.senders[s].name}->{graph.receivers[r].name} "
                        "removed; check the task's prompts and the ablation (a NaN here would corrupt the circuit)")


Evaluate = Callable[[ACDCState, int], list[Trial]]
MakeEvaluate = Callable[[Tensor, list[tuple[int, int]], dict[int, int]], tuple[float, Evaluate]]


def walk(problem: Problem, tau: float, abs_value: bool, make_evaluate: MakeEvaluate, trace: list[Trial] | None,
         progress: ProgressFn, on_receiver: Callable[[ACDCState], None] | None,
         initial_mask: Tensor | None = None) -> ACDCState:
    """Run ACDC's walk with an evaluator.

    `make_evaluate(start, flat, firsts)` returns the loss of the starting graph and
    `evaluate(state, i)`, which returns the exact trials of `flat[i]` and possibly of the pairs
    after it (≥ 1 trial, each decided against the graph the sequential walk would have then).
    With `initial_mask` [receiver sender] (0/1) the walk starts from that graph and tries only
    the edges that are 1 in it (ACDC on a candidate set); the others stay removed, score 0.
    `on_receiver(state)` is called after each receiver (the trace checkpoint)."""
    check_tau(tau)
    graph = problem.graph
    start = graph.full_mask().to(problem.model.device)
    if initial_mask is not None:
        start = (initial_mask.to(start) != 0).to(start) * start
    flat, firsts = order(graph, start)
    feeds = graph.feeds
    cur, evaluate = make_evaluate(start, flat, firsts)
    state = ACDCState(start.clone(), torch.zeros(graph.shape), cur)
    replay = Replay(trace, tau, abs_value)
    pending: deque[Trial] = deque()
    ends = {i + n for i, n in firsts.items()}
    total, i = len(flat), 0
    while i < total:
        r, s = flat[i]
        if i in firsts and dead(state.mask, feeds[r]):
            n = firsts[i]
            state.mask[r] = 0
            state.skipped += n
            i += n
        else:
            t = pending.popleft() if pending else replay.take(r, s, state.cur)
            if t is None:
                trials = evaluate(state, i)
                t = trials[0]
                pending.extend(trials[1:])
            if (t.receiver, t.sender) != (r, s):  # pragma: no cover - a bug, not a user error
                raise RuntimeError(f"ACDC walk out of step at {i}: {(t.receiver, t.sender)} != {(r, s)}")
            check_finite(t.loss, graph, r, s)
            state.scores[r, s] = t.loss - state.cur
            if t.removed:
                state.mask[r, s] = 0
                state.cur = t.loss
            state.trace.append(t)
            i += 1
        progress(i, total, graph.receivers[r].name)
        if i in ends and on_receiver is not None:
            on_receiver(state)
    return state
