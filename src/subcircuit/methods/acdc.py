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

`acdc_reference` does exactly this as a straightforward implementation would: one full forward
pass per edge (every component, logits at every position). It is the definition. `acdc_fast`
makes the same decisions with far less work:

- every sender output before the receiver's stage is the same as in the starting graph (those
  receivers have not been visited yet), so each trial starts at the receiver's stage from
  cached state (one full forward pass caches all of them);
- logits are computed only at the positions the metric reads, and components that no
  configuration reads (dead heads and MLPs) are not computed;
- speculative batching along predicted decisions: the walk ahead is laid out as a path of K
  steps, each removing its edge from the graph that the sequential walk would have *if every
  earlier step's predicted decision held* (receivers that the predicted graph leaves dead are
  skipped on the path, as the walk would). The K configurations run as one batch. Step j's
  decision is exact when the predictions of steps 1..j−1 held, since its configuration is then
  exactly the graph the sequential algorithm tries, so the decisions up to and including the
  first wrong prediction are kept and the next batch starts after it. An edge never measured is
  predicted "removed"; an edge measured in an earlier batch (beyond a wrong prediction) is
  predicted from that measurement, which makes the next batch's predictions mostly right. K
  maximises the expected number of exact decisions per second under a static cost model (per
  stage overhead, per configuration FLOPs) and the recent rate of right predictions, capped by
  `max_batch` and a memory budget. The batch never depends on measured time, so a run is
  bit-for-bit reproducible;
- within a batch, everything before the earliest receiver's stage comes from the cache, a
  component whose inputs agree across the configurations is computed once and stored once, and
  from the last attention layer on only the metric's positions are computed (see
  `subcircuit.patching`);
- across batches, one `Memo` keeps the outputs of components whose inputs agreed across a
  batch (they are the current graph's) and later batches reuse them while the component's mask
  rows and inputs are unchanged, so a batch recomputes only what its trial edges reach.

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
from subcircuit.patching import Memo, Patcher, Prefix


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


def _order(graph: Graph, start: Tensor) -> tuple[list[tuple[int, int]], dict[int, int]]:
    """ACDC's visiting order flattened: the (receiver, sender) pairs to try, and for the first
    pair of each receiver its number of pairs (where the dead-receiver check happens)."""
    flat: list[tuple[int, int]] = []
    firsts: dict[int, int] = {}
    exists = graph.exists & (start.cpu() != 0)
    for r, senders in _walk(graph):
        senders = [s for s in senders if exists[r, s]]
        if senders:
            firsts[len(flat)] = len(senders)
            flat.extend((r, s) for s in senders)
    return flat, firsts


def _dead(mask: Tensor, feeds: list[int]) -> bool:
    """Whether a receiver's component no longer feeds anything in the graph `mask`."""
    return bool(feeds) and not bool(mask[:, feeds].any())


def _check_finite(loss: float, graph: Graph, r: int, s: int) -> None:
    if not math.isfinite(loss):
        raise UserError(f"the metric is {loss} with edge {graph.senders[s].name}->{graph.receivers[r].name} "
                        "removed; check the task's prompts and the ablation (a NaN here would corrupt the circuit)")


Evaluate = Callable[[ACDCState, int], list[Trial]]


def _run_acdc(
    problem: Problem,
    tau: float,
    abs_value: bool,
    make_evaluate: Callable[[Tensor, list[tuple[int, int]], dict[int, int], list[list[int]]], tuple[float, Evaluate]],
    trace: list[Trial] | None,
    progress: ProgressFn,
    on_receiver: Callable[[ACDCState], None] | None,
    initial_mask: Tensor | None = None,
) -> ACDCState:
    """The walk shared by the reference and the fast path.

    `make_evaluate(start, flat, firsts, feeds)` returns the loss of the starting graph and
    `evaluate(state, i)`, which returns the exact trials of `flat[i]` and possibly of the pairs
    after it (≥ 1 trial, each decided against the graph the sequential walk would have then).
    With `initial_mask` [receiver sender] (0/1) the walk starts from that graph and tries only
    the edges that are 1 in it (ACDC on a candidate set); the others stay removed, score 0."""
    _check_tau(tau)
    graph = problem.graph
    start = graph.full_mask().to(problem.model.device)
    if initial_mask is not None:
        start = (initial_mask.to(start) != 0).to(start) * start
    flat, firsts = _order(graph, start)
    feeds = _feeds(graph)
    cur, evaluate = make_evaluate(start, flat, firsts, feeds)
    state = ACDCState(start.clone(), torch.zeros(graph.shape), cur)
    replay = _Replay(trace, tau, abs_value)
    pending: deque[Trial] = deque()
    ends = {i + n for i, n in firsts.items()}
    total, i = len(flat), 0
    while i < total:
        r, s = flat[i]
        if i in firsts and _dead(state.mask, feeds[r]):
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
            _check_finite(t.loss, graph, r, s)
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


def acdc_reference(problem: Problem, threshold: float, abs_value: bool = False, trace=None,
                   progress: ProgressFn = _no_progress, on_receiver=None,
                   initial_mask: Tensor | None = None) -> ACDCState:
    """ACDC by its definition, as a straightforward implementation runs it: one full forward
    pass per tried edge (every component, logits at every position, then the metric's
    positions picked out), nothing reused."""
    task = problem.task
    plain = Patcher(problem.model, problem.graph, task.clean, problem.ablation, positions=None)
    rows = torch.arange(task.n, device=task.clean.device)

    def loss_of(mask: Tensor) -> float:
        with torch.no_grad():
            logits = plain.logits(mask, skip_dead=False)[:, rows, task.positions]  # [1 b v]
            return float(problem.metric.loss(logits.float(), task, problem.base_logits.float())[0])

    def make_evaluate(start: Tensor, flat, firsts, feeds) -> tuple[float, Evaluate]:
        def evaluate(state: ACDCState, i: int) -> list[Trial]:
            r, s = flat[i]
            mask = state.mask.clone()
            mask[r, s] = 0
            state.forward_configs += 1
            loss = loss_of(mask)
            return [Trial(r, s, loss, _decide(loss, state.cur, threshold, abs_value))]

        return loss_of(start), evaluate

    return _run_acdc(problem, threshold, abs_value, make_evaluate, trace, progress, on_receiver, initial_mask)


class _CostModel:
    """Estimated time of a batched call: `a·depth + b·work`, where depth is the fraction of
    the model's stages the call runs (a = per-call overhead of running every stage) and work
    is Σ over its configurations of the fraction each computes on its own, from its
    receiver's stage on (b = one configuration through the whole model, from its FLOPs).

    The estimate is static, never a measured time, so the same command always batches the
    same way and gives bit-identical scores (batch composition changes float rounding)."""

    def __init__(self, problem: Problem) -> None:
        model, graph = problem.model, problem.graph
        cpu = model.device.type == "cpu"
        emb = {"W_E", "W_U", "W_pos"}
        body = sum(p.numel() for n, p in model.named_parameters() if n.split(".")[-1] not in emb)
        b, _ = problem.task.clean.shape
        flops = 2 * problem.task.clean.numel() * body + 2 * b * graph.cfg.d_model * graph.cfg.vocab_size
        self.a = len(graph.stages) * (1.5e-3 if cpu else 1e-3)
        self.b = flops / (8e10 if cpu else 2e13)

    def best_length(self, depth: list[float], work: list[float], ok: list[float]) -> int:
        """The prefix length k maximising expected exact decisions per second, where step j's
        decision is exact if the predictions of the steps before it hold (probability ok[j])."""
        best, best_rate, p, done, w = 1, -1.0, 1.0, 0.0, 0.0
        for k in range(1, len(depth) + 1):
            done += p
            p *= ok[k - 1]
            w += work[k - 1]
            rate = done / (self.a * depth[k - 1] + self.b * w)
            if rate > best_rate:
                best, best_rate = k, rate
        return best


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
    logits and speculative batching along predicted decisions (see the module docstring)."""
    graph = problem.graph
    patcher = problem.patcher
    n_stages = len(graph.stages)
    stage_idx = [graph.stages.index(graph.stage_of_receiver(r)) for r in range(len(graph.receivers))]
    b, p = problem.task.clean.shape
    bytes_per_sender = b * p * graph.cfg.d_model * problem.model.W_E.element_size()
    cost = _CostModel(problem)
    predicted: dict[tuple[int, int], bool] = {}  # measured guesses: would this edge be removed?
    # recent outcomes of predictions, per source: measured guess / default guess ("removed")
    hits: dict[bool, deque[bool]] = {True: deque(maxlen=64), False: deque(maxlen=64)}

    def ok_rate(measured: bool) -> float:
        h = hits[measured]
        return (sum(h) + 1) / (len(h) + 2)

    def make_evaluate(start: Tensor, flat, firsts, feeds) -> tuple[float, Evaluate]:
        with torch.no_grad():
            deltas = patcher.prefix(start, n_stages - 1).deltas  # every sender in the start graph

        prefixes: dict[int, Prefix] = {}

        def prefix(si: int) -> Prefix:  # one object per stage: its `total` is computed once
            if si not in prefixes:
                prefixes[si] = Prefix(si, deltas[: graph.stages[si].senders.start])
            return prefixes[si]

        with torch.no_grad():
            cur = float(problem.loss(start, start=prefix(n_stages - 1))[0])
        memo = Memo()  # component outputs shared by consecutive batches

        def evaluate(state: ACDCState, i: int) -> list[Trial]:
            # The speculative path: from flat[i] on, each step removes its edge from the graph
            # the walk would have if every earlier step's predicted decision held.
            mask = state.mask.clone()
            configs: list[Tensor] = []
            steps: list[tuple[int, int, bool, bool]] = []  # r, s, predicted removal, measured guess
            depth: list[float] = []
            work: list[float] = []
            ok: list[float] = []
            j, lo = i, n_stages
            budget = memory_gb * 2**30
            while j < len(flat) and len(steps) < max_batch:
                r, s = flat[j]
                if j != i and j in firsts and _dead(mask, feeds[r]):
                    mask[r] = 0
                    j += firsts[j]
                    continue
                si = stage_idx[r]
                per_config = (len(graph.senders) - graph.stages[si].senders.start + 8) * bytes_per_sender
                if steps and (len(steps) + 1) * per_config > budget:
                    break
                lo = min(lo, si)
                m = mask.clone()
                m[r, s] = 0
                configs.append(m)
                guess = predicted.get((r, s))
                steps.append((r, s, True if guess is None else guess, guess is not None))
                depth.append((n_stages - lo) / n_stages)
                work.append((n_stages - si) / n_stages)
                ok.append(ok_rate(guess is not None))
                if steps[-1][2]:
                    mask[r, s] = 0
                j += 1
            k = cost.best_length(depth, work, ok)
            start_si = min(stage_idx[r] for r, _, _, _ in steps[:k])
            state.forward_configs += k
            with torch.no_grad():
                losses = problem.loss(torch.stack(configs[:k]), start=prefix(start_si), memo=memo).tolist()
            # Decide in order; a decision is exact while every earlier prediction held. Every
            # step also refreshes the guess for its edge from what it measured.
            trials: list[Trial] = []
            cur = spec = state.cur
            exact = True
            for (r, s, guess, measured), loss in zip(steps[:k], losses, strict=True):
                if exact:
                    removed = _decide(loss, cur, threshold, abs_value)
                    trials.append(Trial(r, s, loss, removed))
                    hits[measured].append(removed == guess)
                    cur = loss if removed else cur
                    exact = removed == guess
                predicted[(r, s)] = _decide(loss, spec, threshold, abs_value)
                if guess:
                    spec = loss
            return trials

        return cur, evaluate

    return _run_acdc(problem, threshold, abs_value, make_evaluate, trace, progress, on_receiver, initial_mask)


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
