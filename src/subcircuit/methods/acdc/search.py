"""`--edges N` for ACDC: the largest circuit with at most N edges, by a search over τ.

ACDC's circuit shrinks (roughly) as τ grows. The search starts at τ = 1e-3, moves by factors of
10 until one run gives more than N edges and another at most N, then bisects on the log scale
until the bracket is within 5% (at most 12 runs per phase). The result is the run at the
smallest τ found with at most N edges.

Each run replays the trace of the finished run with the nearest τ (on the log scale) until
their decisions diverge (see `walk.py`), so later runs cost a fraction of the first. The
traces of every run so far are handed to `checkpoint` after every receiver; passing them back
as `saved` resumes the search where it stopped (the τ sequence is deterministic, and a run with
its own trace replays it without forward passes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Protocol

from torch import Tensor

from subcircuit.errors import UserError
from subcircuit.methods.acdc.state import ACDCState, Trial
from subcircuit.methods.base import Problem, ProgressFn, no_progress


class RunACDC(Protocol):
    def __call__(self, problem: Problem, tau: float, abs_value: bool = False, *, trace: list[Trial] | None = None,
                 progress: ProgressFn = no_progress, on_receiver: Callable[[ACDCState], None] | None = None,
                 initial_mask: Tensor | None = None) -> ACDCState: ...


def acdc_for_size(problem: Problem, n_edges: int, run_acdc: RunACDC, abs_value: bool = False,
                  progress: ProgressFn = no_progress, max_runs: int = 12, initial_mask: Tensor | None = None,
                  saved: Mapping[float, list[Trial]] | None = None,
                  checkpoint: Callable[[dict[float, list[Trial]]], None] | None = None,
                  known: Mapping[float, list[Trial]] | None = None,
                  ) -> tuple[ACDCState, float, list[tuple[float, int]], dict[float, list[Trial]]]:
    """The largest ACDC circuit with at most `n_edges` edges, searching τ on a log scale.

    `run_acdc` runs ACDC at one τ (the fast path); `saved`: the traces of an interrupted search
    (its checkpoint); `known`: finished traces of other runs on the same problem to replay
    from. Returns (state, τ, [(τ, size)] of every run, {τ: trace} of every run)."""
    if n_edges > problem.graph.n_edges:
        raise UserError(f"--edges {n_edges} is larger than the graph ({problem.graph.n_edges} edges)")
    runs: dict[float, ACDCState] = {}
    saved = saved or {}
    known = known or {}

    def run(tau: float) -> int:
        pool = {**known, **{t: st.trace for t, st in runs.items()}}
        near = min(pool, key=lambda t: abs(math.log(t) - math.log(tau)) if t > 0 else math.inf, default=None)
        trace = saved.get(tau, None if near is None else pool[near])

        def on_receiver(st: ACDCState) -> None:
            if checkpoint is not None:
                checkpoint({**{t: r.trace for t, r in runs.items()}, tau: st.trace})

        st = run_acdc(problem, tau, abs_value, trace=trace, progress=progress, on_receiver=on_receiver,
                      initial_mask=initial_mask)
        runs[tau] = st
        return int(st.mask.sum())

    lo, hi = None, None  # lo: size > n (τ too small); hi: size <= n
    tau = 1e-3
    for _ in range(max_runs):
        size = run(tau)
        if size <= n_edges:
            hi = tau
            if lo is not None:
                break
            tau /= 10
        else:
            lo = tau
            if hi is not None:
                break
            tau *= 10
        if tau < 1e-9 or tau > 1e6:
            break
    for _ in range(max_runs):
        if lo is None or hi is None or hi / lo < 1.05:
            break
        mid = math.sqrt(lo * hi)
        if run(mid) <= n_edges:
            hi = mid
        else:
            lo = mid
    if hi is None:
        raise UserError(f"no threshold gives a circuit of at most {n_edges} edges")
    sizes = sorted((t, int(s.mask.sum())) for t, s in runs.items())
    return runs[hi], hi, sizes, {t: s.trace for t, s in runs.items()}
