"""ACDC (Conmy et al. 2023): prune edges greedily from the output backwards.

The algorithm, exactly (DESIGN.md §4):

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

The package:

- `reference.py`: the definition as a plain loop, one full forward pass per edge on the
  autograd engine; it shares no code with the fast path (`ACDCOptions.reference=True`);
- `walk.py` + `fast.py`: the fast path, the same decisions with far less work (stage caching,
  metric-position logits, speculative batching along predicted decisions, a memo across
  batches) and replay of traces;
- `search.py`: `--edges N`, a search over τ for the largest circuit with at most N edges;
- `candidates.py`: `--candidates K`, ACDC on the top K edges by EAP-IG;
- `trace.py`: the trace file `acdc-trace.json`, ACDC's checkpoint.

Each trial is recorded in a trace (receiver, sender, loss, removed). A trace replays without
any forward pass, which gives both resumable runs (the trace is the checkpoint, written after
every receiver into the run folder `ctx.folder`) and reuse across thresholds: a run at τ'
follows a run at τ until the first trial whose decision differs, and even that trial's measured
loss is still valid. The finished traces of a session (a sweep) are kept in `ctx.cache`, so each
run replays the one with the nearest τ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

from torch import Tensor

from subcircuit.errors import UserError
from subcircuit.methods.acdc.candidates import acdc_on_candidates, candidate_mask, scores_key
from subcircuit.methods.acdc.fast import acdc_fast
from subcircuit.methods.acdc.reference import acdc_reference
from subcircuit.methods.acdc.search import acdc_for_size
from subcircuit.methods.acdc.state import ACDCState, Trial
from subcircuit.methods.acdc.trace import (
    TRACE_FILE,
    load_search,
    load_trace,
    read_trace_header,
    save_search,
    save_trace,
)
from subcircuit.methods.base import (
    Context,
    MethodResult,
    Options,
    Problem,
    ProgressFn,
    at_least,
    no_progress,
    non_negative,
    option,
    register_method,
)

__all__ = ["ACDCOptions", "ACDCState", "TRACE_FILE", "Trial", "acdc", "acdc_fast", "acdc_for_size",
           "acdc_on_candidates", "acdc_reference", "candidate_mask", "read_trace_header", "scores_key"]

DEFAULT_THRESHOLD = 0.01


DEFAULT_BATCH_GB = 2.0  # a speculative batch's budget when the run has no memory model


@dataclass(frozen=True)
class ACDCOptions(Options):
    """ACDC's options (see the package docstring)."""

    threshold: float | None = option(None, "ACDC's τ (default 0.01 unless --edges is given).")
    edges: int | None = option(None, "Target circuit size: search τ for at most N edges.")
    abs_value: bool = option(False, "Compare |new − cur| with τ instead of new − cur.", flag="--abs")
    candidates: int | None = option(None, "Try only the top K edges by EAP-IG.")
    ig_steps: int = option(5, "EAP-IG interpolation steps (for --candidates).")
    ig: Literal["inputs", "activations"] = option("inputs", "EAP-IG variant (for --candidates): inputs or "
                                                            "activations.")
    max_batch: int = option(64, "Most mask configurations in one speculative batch.")
    memory_gb: float | None = option(None, "Memory budget of one speculative batch (GiB); default: from the run's "
                                           "memory model and the device's free memory (2 GiB when unknown).")
    reference: bool = option(False, "Run the slow independent reference (one full forward pass per edge).")

    def check(self) -> None:
        non_negative("--threshold", self.threshold)
        if self.threshold is not None and self.edges is not None:
            raise UserError("give either --threshold or --edges, not both")
        at_least("--edges", self.edges, 1)
        if self.candidates is not None and self.candidates < 1:
            raise UserError(f"--candidates {self.candidates} is invalid; expected K >= 1")
        at_least("--ig-steps", self.ig_steps, 1)
        at_least("--max-batch", self.max_batch, 1)
        if self.memory_gb is not None and not self.memory_gb > 0:
            raise UserError(f"--memory-gb {self.memory_gb} is invalid; expected a number > 0")

    @property
    def tau(self) -> float:
        """The threshold of a run at one τ."""
        return DEFAULT_THRESHOLD if self.threshold is None else float(self.threshold)


def _traces_key(options: ACDCOptions) -> tuple[Any, ...]:
    """Where a session keeps its finished traces {τ: trace}: runs share them when they start from
    the same graph (same candidates) and decide alike (same --abs)."""
    cand = None if options.candidates is None else (options.candidates, options.ig_steps, options.ig)
    return ("acdc-traces", options.abs_value, cand)


def _nearest(done: dict[float, list[Trial]], tau: float) -> list[Trial] | None:
    near = min(done, key=lambda t: abs(math.log(t + 1e-12) - math.log(tau + 1e-12)), default=None)
    return None if near is None else done[near]


def _reference(problem: Problem, tau: float, abs_value: bool = False, *, trace=None,
               progress: ProgressFn = no_progress, on_receiver=None, initial_mask: Tensor | None = None) -> ACDCState:
    """The reference in the fast path's calling convention (it replays nothing: `trace` unused)."""
    return acdc_reference(problem, tau, abs_value, initial_mask=initial_mask, progress=progress,
                          on_receiver=on_receiver)


def batch_gb(given: float | None, budget: int | None) -> float:
    """The speculative batch's budget in GiB: `--memory-gb` when given, else the run's memory
    model's (`Context.memory_budget`, bytes), else 2 GiB."""
    if given is not None:
        return given
    return max(budget / 2**30, 1 / 1024) if budget is not None else DEFAULT_BATCH_GB


@register_method("acdc", "ACDC: greedy edge pruning against the current graph (Conmy et al. 2023)", ACDCOptions,
                 selects_circuit=True, resumable=True, checkpoint_files=(TRACE_FILE,), ranks_edges=False)
def acdc(problem: Problem, options: ACDCOptions, ctx: Context) -> MethodResult:
    """ACDC at τ (`threshold`) or for at most `edges` edges, on every edge or on `candidates`.
    With `ctx.folder` the trace is kept in `acdc-trace.json` after every receiver and, with
    `ctx.resume`, replayed first; finished traces go to `ctx.cache` for the session's next runs."""
    graph = problem.graph
    run = _reference if options.reference else partial(acdc_fast, max_batch=options.max_batch,
                                                       memory_gb=batch_gb(options.memory_gb, ctx.memory_budget))
    info: dict[str, Any] = {}
    initial = None
    if options.candidates is not None:
        initial, _ = candidate_mask(problem, options.candidates, options.abs_value, options.ig_steps, options.ig,
                                    ctx.progress, ctx.cache)  # deterministic: a resumed run gets the same
        info["candidates"] = options.candidates
    path = None if ctx.folder is None else Path(ctx.folder) / TRACE_FILE
    header = dict(ctx.header)
    resume = ctx.resume and path is not None and path.exists()
    done: dict[float, list[Trial]] = ctx.cache.setdefault(_traces_key(options), {})
    if options.edges is not None:
        saved = load_search(path, header) if resume else None
        state, tau, sizes, traces = acdc_for_size(
            problem, options.edges, run, options.abs_value, ctx.progress, initial_mask=initial, saved=saved,
            checkpoint=None if path is None else (lambda traces: save_search(path, header, traces)),
            known=None if options.reference else done)
        params: dict[str, Any] = {"threshold": tau, "target_edges": options.edges, "abs": options.abs_value}
        info["tau_search"] = [{"threshold": t, "n_edges": n} for t, n in sizes]
    else:
        tau = options.tau
        trace = load_trace(path, header) if resume else (None if options.reference else _nearest(done, tau))
        state = run(problem, tau, options.abs_value, trace=trace, progress=ctx.progress, initial_mask=initial,
                    on_receiver=None if path is None else (lambda st: save_trace(path, header, st.trace)))
        params = {"threshold": tau, "abs": options.abs_value}
        traces = {tau: state.trace}
    if not options.reference:
        done.update(traces)
    if options.candidates is not None:
        params.update(candidates=options.candidates, ig_steps=options.ig_steps, ig=options.ig)
    info.update(n_trials=len(state.trace), n_skipped=state.skipped, forward_configs=state.forward_configs)
    return MethodResult(graph.to_flat(state.scores), graph.to_flat(state.mask.cpu() != 0), params, info)
