"""ACDC by its definition (DESIGN.md §4), as a plain loop: the reference the fast path is tested
against. It shares no code with the fast path's walk (`walk.py`) or evaluator (`fast.py`) and
runs on the other patching engine, so a bug in the walk order, the dead-receiver skip, the
replay or the engine without autograd shows up as a difference.

1. Start from the full graph (or, with `initial_mask`, from the edges present in it; only those
   are tried). `cur` = the metric loss of the current graph (lower is better).
2. Visit the receivers in reverse (`logits` first, the first receiver of layer 0 last).
3. A receiver whose component no longer feeds anything — every outgoing edge of its head, MLP
   or attention layer, or of every head of its KV group, removed — is skipped: its incoming
   edges leave the graph untried (score 0).
4. Otherwise, for each incoming edge, latest sender first: remove it and measure `new`. Its
   score is `new − cur`. If `new − cur < τ` (`|new − cur| < τ` with `abs_value`) it stays
   removed and `cur = new`; otherwise it is restored.

Each trial is one full forward pass on the autograd engine (`Patcher.logits_with_grad`): every
component computed, logits at every position, then the metric's positions picked out.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from subcircuit.errors import UserError
from subcircuit.graph import Graph
from subcircuit.methods.acdc.state import ACDCState, Trial
from subcircuit.methods.base import Problem, ProgressFn, no_progress
from subcircuit.patching import Patcher


def _component(graph: Graph, r: int) -> list[int]:
    """The senders that are the component receiver r is an input of, from the nodes' fields:
    the MLP or attention layer of its layer, or the heads it stands for (none for logits)."""
    rec = graph.receivers[r]
    want = {"mlp_in": "mlp", "attn_in": "attn"}.get(rec.kind, "head")
    if rec.kind == "logits":
        return []
    return [i for i, snd in enumerate(graph.senders) if snd.layer == rec.layer and snd.kind == want
            and (want != "head" or snd.heads[0] in rec.heads)]


def acdc_reference(problem: Problem, tau: float, abs_value: bool = False, *, initial_mask: Tensor | None = None,
                   progress: ProgressFn = no_progress,
                   on_receiver: Callable[[ACDCState], None] | None = None) -> ACDCState:
    """ACDC at threshold `tau` by the definition (see the module docstring). `on_receiver(state)`
    is called after each receiver whose edges were tried or skipped."""
    if isinstance(tau, bool) or not isinstance(tau, int | float) or math.isnan(tau) or tau < 0:
        raise UserError(f"threshold {tau!r} is invalid; expected a number >= 0")
    graph, task, model = problem.graph, problem.task, problem.model
    engine = Patcher(model, graph, task.clean, problem.ablation, positions=None, spans=task.span_ids)
    rows = torch.arange(task.n, device=task.clean.device)
    base = problem.base_logits if problem.base_logits.dtype == torch.float64 else problem.base_logits.float()

    def loss_of(mask: Tensor) -> float:
        with torch.no_grad():
            logits = engine.logits_with_grad(mask[None]).detach()  # [1 b p v], every position
            at = logits[:, rows, task.positions]  # [1 b v]
            at = at if at.dtype == torch.float64 else at.float()
            return float(problem.metric.loss(at, task, base)[0])

    present = graph.exists.clone()
    if initial_mask is not None:
        present &= initial_mask.cpu() != 0
    mask = present.to(torch.float32).to(model.device)
    tries = {r: [s for s in range(len(graph.senders) - 1, -1, -1) if present[r, s]]
             for r in range(len(graph.receivers))}
    total = sum(len(v) for v in tries.values())
    state = ACDCState(mask, torch.zeros(graph.shape), loss_of(mask))
    done = 0
    for r in range(len(graph.receivers) - 1, -1, -1):
        senders = tries[r]
        if not senders:
            continue
        name = graph.receivers[r].name
        comp = _component(graph, r)
        if comp and not bool((state.mask[:, comp] != 0).any()):
            state.mask[r, :] = 0
            state.skipped += len(senders)
            done += len(senders)
            progress(done, total, name)
        else:
            for s in senders:
                trial = state.mask.clone()
                trial[r, s] = 0
                new = loss_of(trial)
                state.forward_configs += 1
                if not math.isfinite(new):
                    raise UserError(f"the metric is {new} with edge {graph.senders[s].name}->{name} removed; check "
                                    "the task's prompts and the ablation (a NaN here would corrupt the circuit)")
                diff = new - state.cur
                removed = (abs(diff) if abs_value else diff) < tau
                state.scores[r, s] = diff
                if removed:
                    state.mask = trial
                    state.cur = new
                state.trace.append(Trial(r, s, new, removed))
                done += 1
                progress(done, total, name)
        if on_receiver is not None:
            on_receiver(state)
    return state
