"""Helpers shared by the benchmark modules (timing by medians, side by side)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def medians(fns: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1,
            clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Median seconds of each function, interleaved (a, b, c, a, b, c, ...) so that drifting
    machine load affects all of them alike. `clock=time.process_time` measures the process's CPU
    time instead of wall time: with one thread, what the run costs whatever else the machine runs."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = clock()
            f()
            times[k].append(clock() - t0)
    return {k: statistics.median(v) for k, v in times.items()}
