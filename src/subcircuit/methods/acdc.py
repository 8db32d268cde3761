"""ACDC (Conmy et al. 2023): prune edges greedily from the output backwards.

The algorithm, exactly:

1. Start from the full graph; `cur` = the metric loss of the current graph (lower is better).
2. Visit receivers in reverse topological order: `logits` first, then each stage from the last
   layer down; within an attention stage the value, key and query receivers, last head first
   (the reverse of `graph.receivers`).
3. A receiver whose component no longer feeds anything (every outgoing edge of its head, MLP
   or, for a key/value group, of every head of the group, has been removed) is skipped: its
   incoming edges leave the circuit untried (score 0).
4. For each incoming edge, latest sender first (the reverse of `graph.senders`, `input` last),
   remove it and measure `new`. If `new − cur < τ` (or `|new − cur| < τ` with `abs_value`), the
   edge stays removed and `cur = new`; otherwise it is restored. Its score is `new − cur`, the
   change it caused against the *current* pruned graph.

`acdc_reference` does exactly this with one full forward pass per edge; it is the definition.
`acdc` makes the same decisions with far less work:

- every sender output before the receiver's stage is the same as in the full model (those
  receivers have not been visited yet), so each trial starts at the receiver's stage from
  cached state (one full forward pass caches all of them);
- logits are computed only at the positions the metric reads;
- speculative batching: K cumulative removals (edge 1; edges 1–2; …; 1–K) run as one batch of
  K mask configurations. Every decision up to the first edge that must be kept is exact, since
  each configuration is then exactly the graph the sequential algorithm would try; the batch
  restarts after that edge. K adapts to the recent keep rate (about 1/p_keep), capped by a
  memory budget;
- the patched pass reads only the senders whose mask entries are not all 0 (or not all 1) at
  each stage (see `subcircuit.patching`).

Each trial is recorded in a trace (receiver, sender, loss, removed). A trace replays without
any forward pass, which gives both resumable runs (the trace is the checkpoint) and reuse across
thresholds: a run at τ' follows a run at τ until the first trial whose decision differs, and
even that trial's measured loss is still valid.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from subcircuit.errors import UserError
from subcircuit.graph import Graph
from subcircuit.methods.base import MethodResult, Problem, ProgressFn, _no_progress, register_method
from subcircuit.patching import Prefix


@dataclass(frozen=True)
class Trial:
    """One tried edge: receiver and sender positions, the loss with it removed, the decision."""

    receiver: int
    sender: int
    loss: float
    removed: bool


@dataclass
class ACDCState:
    """Everything an ACDC run has established; `trace` alone determines the rest."""

    mask: Tensor  # [receiver sender] current graph
    scores: Tensor  # [receiver sender] measured change per tried edge (0 if untried)
    cur: float  # loss of the current graph
    trace: list[Trial] = field(default_factory=list)
    skipped: int = 0
    forward_configs: int = 0  # mask configurations run (cost measure)


def _feeds(graph: Graph) -> list[list[int]]:
    """For each receiver, the sender positions of the component(s) it belongs to."""
    out: list[list[int]] = []
    for r in graph.receivers:
        if r.kind == "logits":
            out.append([])
        elif r.kind in ("k", "v") and r.name.split("<")[0].split(".")[1].startswith("g"):
            g = graph.cfg.group_size
            out.append([graph.sender_pos[f"a{r.layer}.h{h}"] for h in range(r.index * g, (r.index + 1) * g)])
        else:
            out.append([graph.sender_pos[r.component]])
    return out


def _walk(graph: Graph) -> Iterator[tuple[int, list[int]]]:
    """(receiver, senders to try in order) in ACDC's visiting order."""
    exists = graph.exists
    for r in reversed(range(len(graph.receivers))):
        yield r, [s for s in reversed(range(len(graph.senders))) if exists[r, s]]


def _decide(new: float, cur: float, tau: float, abs_value: bool) -> bool:
    diff = new - cur
    return (abs(diff) if abs_value else diff) < tau


def _check_tau(tau: float) -> None:
    if not isinstance(tau, int | float) or math.isnan(tau) or tau < 0:
        raise UserError(f"threshold {tau!r} is invalid; expected a number >= 0")


class _Replay:
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
        removed = _decide(t.loss, cur, self.tau, self.abs_value)
        if removed != t.removed:
            self.items.clear()  # the graphs differ from here on
        return Trial(r, s, t.loss, removed)


def _run_acdc(
    problem: Problem,
    tau: float,
    abs_value: bool,
    evaluate: Callable[[ACDCState, int, list[int], int], list[float]],
    trace: list[Trial] | None,
    progress: ProgressFn,
    on_receiver: Callable[[ACDCState], None] | None,
    initial_mask: Tensor | None = None,
) -> ACDCState:
    """The walk shared by the reference and the fast path; `evaluate(state, r, senders, i)`
    returns the losses of removing senders[i], senders[i..i+1], ... cumulatively (≥ 1 value).
    With `initial_mask` [receiver sender] (0/1) the walk starts from that graph and tries only
    the edges that are 1 in it (ACDC on a candidate set); the others stay removed, score 0."""
    _check_tau(tau)
    graph = problem.graph
    full = graph.full_mask().to(problem.model.device)
    if initial_mask is not None:
        full = (initial_mask.to(full) != 0).to(full) * full
    with torch.no_grad():
        cur = float(problem.loss(full)[0])
    state = ACDCState(full.clone(), torch.zeros(graph.shape), cur)
    feeds = _feeds(graph)
    replay = _Replay(trace, tau, abs_value)
    total, done = int((full != 0).sum()), 0
    for r, senders in _walk(graph):
        if initial_mask is not None:
            senders = [s for s in senders if full[r, s] != 0]
        rname = graph.receivers[r].name
        if feeds[r] and not bool(state.mask[:, feeds[r]].any()):
            state.mask[r] = 0
            state.skipped += len(senders)
            done += len(senders)
            progress(done, total, rname)
            continue
        i = 0
        while i < len(senders):
            t = replay.take(r, senders[i], state.cur)
            if t is not None:
                trials = [t]
            else:
                losses = evaluate(state, r, senders, i)
                trials = []
                cur = state.cur
                for j, loss in enumerate(losses):
                    removed = _decide(loss, cur, tau, abs_value)
                    trials.append(Trial(r, senders[i + j], loss, removed))
                    if not removed:
                        break
                    cur = loss
            for t in trials:
                state.scores[r, t.sender] = t.loss - state.cur
                if t.removed:
                    state.mask[r, t.sender] = 0
                    state.cur = t.loss
                state.trace.append(t)
            i += len(trials)
            done += len(trials)
            progress(done, total, rname)
        if on_receiver is not None:
            on_receiver(state)
    return state


def acdc_reference(problem: Problem, threshold: float, abs_value: bool = False, trace=None,
                   progress: ProgressFn = _no_progress, on_receiver=None,
                   initial_mask: Tensor | None = None) -> ACDCState:
    """ACDC by its definition: one full forward pass per tried edge, nothing reused."""

    def evaluate(state: ACDCState, r: int, senders: list[int], i: int) -> list[float]:
        mask = state.mask.clone()
        mask[r, senders[i]] = 0
        state.forward_configs += 1
        with torch.no_grad():
            return [float(problem.loss(mask)[0])]

    return _run_acdc(problem, threshold, abs_value, evaluate, trace, progress, on_receiver, initial_mask)


def acdc_fast(
    problem: Problem,
    threshold: float,
    abs_value: bool = False,
    trace: list[Trial] | None = None,
    progress: ProgressFn = _no_progress,
    on_receiver: Callable[[ACDCState], None] | None = None,
    max_batch: int = 64,
    memory_gb: float = 2.0,
    initial_mask: Tensor | None = None,
) -> ACDCState:
    """ACDC with the same decisions as `acdc_reference`, using stage caching, metric-position
    logits and adaptive speculative batching (see the module docstring)."""
    graph = problem.graph
    patcher = problem.patcher
    start = graph.full_mask().to(problem.model.device)
    if initial_mask is not None:  # receivers not yet visited keep their initial rows
        start = (initial_mask.to(start) != 0).to(start) * start
    with torch.no_grad():
        deltas = patcher.prefix(start, len(graph.stages) - 1).deltas
    prefixes: dict[int, Prefix] = {}
    b, p = problem.task.clean.shape
    bytes_per_sender = b * p * graph.cfg.d_model * problem.model.W_E.element_size()
    recent: deque[bool] = deque(maxlen=64)

    def prefix_for(r: int) -> Prefix:
        st = graph.stage_of_receiver(r)
        si = graph.stages.index(st)
        if si not in prefixes:
            prefixes.clear()
            prefixes[si] = Prefix(si, deltas[: st.senders.start])
        return prefixes[si]

    def evaluate(state: ACDCState, r: int, senders: list[int], i: int) -> list[float]:
        pre = prefix_for(r)
        per_config = (len(graph.senders) - pre.deltas.shape[0] + 8) * bytes_per_sender
        cap = max(1, min(max_batch, int(memory_gb * 2**30 // per_config)))
        p_keep = (sum(not x for x in recent) + 1) / (len(recent) + 2)
        k = max(1, min(cap, len(senders) - i, round(1 / p_keep)))
        masks = state.mask.repeat(k, 1, 1)
        for j in range(k):
            masks[j:, r, senders[i + j]] = 0
        state.forward_configs += k
        with torch.no_grad():
            losses = problem.loss(masks, start=pre).tolist()
        # Record what the decisions will be, for the keep-rate estimate.
        cur = state.cur
        for loss in losses:
            removed = _decide(loss, cur, threshold, abs_value)
            recent.append(removed)
            if not removed:
                break
            cur = loss
        return losses

    return _run_acdc(problem, threshold, abs_value, evaluate, trace, progress, on_receiver, initial_mask)


def _result(state: ACDCState, graph: Graph, params: dict) -> MethodResult:
    in_circuit = graph.to_flat(state.mask.cpu() != 0)
    info = {"n_trials": len(state.trace), "n_skipped": state.skipped, "forward_configs": state.forward_configs}
    return MethodResult(graph.to_flat(state.scores), in_circuit, params, info)


@register_method("acdc", "ACDC: greedy edge pruning against the current graph (Conmy et al. 2023)", True)
def acdc(problem: Problem, threshold: float = 0.01, abs_value: bool = False, reference: bool = False,
         trace: list[Trial] | None = None, progress: ProgressFn = _no_progress, on_receiver=None,
         max_batch: int = 64, memory_gb: float = 2.0) -> MethodResult:
    """Registered entry point: ACDC at threshold τ (fast path unless `reference`)."""
    if reference:
        state = acdc_reference(problem, threshold, abs_value, trace, progress, on_receiver)
    else:
        state = acdc_fast(problem, threshold, abs_value, trace, progress, on_receiver, max_batch, memory_gb)
    res = _result(state, problem.graph, {"threshold": threshold, "abs": abs_value})
    res.info["trace"] = state.trace
    return res
