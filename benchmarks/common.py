"""Helpers shared by the benchmark modules (timing by medians, side by side)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def medians(fns: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each function, interleaved (a, b, c, a, b, c, ...) so that drifting
    machine load affects all of them alike."""
    for _ in range(warmup):
        for f in fns.values():
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}
