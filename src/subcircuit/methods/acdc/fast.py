"""ACDC's fast path: the same decisions as the definition (`reference.py`) with far less work.

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

The walk (order, dead receivers, replay of traces) is `walk.py`; this module is the evaluator
it calls. `ACDCState.n_budget_cuts` counts the paths cut by the memory budget,
`n_shorter_k` the batches where the cost model chose fewer steps than the path laid out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import torch
from torch import Tensor

from subcircuit.methods.acdc.state import ACDCState, Trial
from subcircuit.methods.acdc.walk import Evaluate, dead, decide, walk
from subcircuit.methods.base import Problem, ProgressFn, no_progress
from subcircuit.patching import Memo, Prefix


class CostModel:
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
    *,
    trace: list[Trial] | None = None,
    progress: ProgressFn = no_progress,
    on_receiver: Callable[[ACDCState], None] | None = None,
    max_batch: int = 64,
    memory_gb: float = 2.0,
    initial_mask: Tensor | None = None,
) -> ACDCState:
    """ACDC with the same decisions as `acdc_reference`, using stage caching, metric-position
    logits and speculative batching along predicted decisions (see the module docstring)."""
    graph = problem.graph
    patcher = problem.patcher
    feeds = graph.feeds
    n_stages = len(graph.stages)
    stage_idx = [graph.stages.index(graph.stage_of_receiver(r)) for r in range(len(graph.receivers))]
    b, p = problem.task.clean.shape
    bytes_per_sender = b * p * graph.cfg.d_model * problem.model.W_E.element_size()
    cost = CostModel(problem)
    predicted: dict[tuple[int, int], bool] = {}  # measured guesses: would this edge be removed?
    # recent outcomes of predictions, per source: measured guess / default guess ("removed")
    hits: dict[bool, deque[bool]] = {True: deque(maxlen=64), False: deque(maxlen=64)}

    def ok_rate(measured: bool) -> float:
        h = hits[measured]
        return (sum(h) + 1) / (len(h) + 2)

    def make_evaluate(start: Tensor, flat, firsts) -> tuple[float, Evaluate]:
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
                if j != i and j in firsts and dead(mask, feeds[r]):
                    mask[r] = 0
                    j += firsts[j]
                    continue
                si = stage_idx[r]
                per_config = (len(graph.senders) - graph.stages[si].senders.start + 8) * bytes_per_sender
                if steps and (len(steps) + 1) * per_config > budget:
                    state.n_budget_cuts += 1
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
            state.n_shorter_k += k < len(steps)
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
                    removed = decide(loss, cur, threshold, abs_value)
                    trials.append(Trial(r, s, loss, removed))
                    hits[measured].append(removed == guess)
                    cur = loss if removed else cur
                    exact = removed == guess
                predicted[(r, s)] = decide(loss, spec, threshold, abs_value)
                if guess:
                    spec = loss
            return trials

        return cur, evaluate

    return walk(problem, threshold, abs_value, make_evaluate, trace, progress, on_receiver, initial_mask)
