"""Progress of a long run: a rich bar on a terminal, a plain line every ~30 s otherwise.

A method reports progress through one callback, `progress(done, total, what)`: ACDC after every
edge it tried (`what` = the receiver it is working on), EAP-IG per integration step, the gate
training methods per optimisation step ("sp steps"). On a terminal that drives a rich progress
bar. When stderr is not a terminal (a batch job, `nohup`, a Ray or Slurm log) a bar cannot be
drawn and a 20-minute run would be silent until its end, so `ProgressLine` prints a plain line
instead, at most once per interval (30 s by default), for example

    discover: edges tried 12,345/70,651 (17%) · receiver a9.h3<q> · elapsed 4m12s · ETA 20m31s
    discover: eap-ig steps 3/5 (60%) · elapsed 1m05s · ETA 43s

The ETA is that of the current pass: the rate (work per second) is measured from the first call
of the pass, and a pass starts again whenever `done` goes back or `total` changes (the next τ of
a target-size search, the next run of a sweep). A run shorter than one interval prints nothing.

The clock, the interval and the stream are parameters, so that tests drive `ProgressLine` with a
fake clock (no sleeping, no timing dependence).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO

from subcircuit.cli._output import is_tty, progress

ProgressFn = Callable[[int, int, str], None]
INTERVAL_S = 30.0


def fmt_duration(seconds: float) -> str:
    """45.2 -> '45s', 252 -> '4m12s', 3725 -> '1h02m' (whole seconds, rounded down)."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def is_node_name(what: str) -> bool:
    """Whether a progress label is a node name (ACDC reports the receiver it works on)."""
    from subcircuit.errors import UserError
    from subcircuit.graph import parse_node

    try:
        parse_node(what)
    except UserError:
        return False
    return True


class ProgressLine:
    """A progress callback that prints `command: <what> done/total (p%) · elapsed · ETA` to a
    stream at most once every `interval` seconds (see the module docstring).

    `interval=None` is `INTERVAL_S`; `clock` returns seconds (time.monotonic by default); `stream=None` writes to the current
    sys.stderr; `is_receiver(what)` tells whether `what` names a receiver (then the line reads
    "edges tried N/M · receiver X"), by default `graph.parse_node`."""

    def __init__(self, command: str, *, interval: float | None = None, clock: Callable[[], float] = time.monotonic,
                 stream: TextIO | None = None, is_receiver: Callable[[str], bool] = is_node_name) -> None:
        self.command, self.clock, self.stream = command, clock, stream
        self.interval = INTERVAL_S if interval is None else interval
        self.is_receiver = is_receiver
        self.start = self.last_print = clock()
        self._pass: tuple[float, int, int] | None = None  # (time, done, total) at the first call of the pass
        self._done = 0

    def __call__(self, done: int, total: int, what: str) -> None:
        now = self.clock()
        if self._pass is None or done < self._done or total != self._pass[2]:
            self._pass = (now, done, total)
        self._done = done
        if now - self.last_print >= self.interval:
            self.last_print = now
            print(self.line(done, total, what, now), file=self.stream or sys.stderr, flush=True)

    def eta(self, done: int, total: int, now: float) -> float | None:
        """Seconds left in the current pass at its measured rate; None when it cannot be known yet."""
        if not total or self._pass is None:
            return None
        if done >= total:
            return 0.0
        t0, d0, _ = self._pass
        if done <= d0 or now <= t0:
            return None
        return (total - done) * (now - t0) / (done - d0)

    def line(self, done: int, total: int, what: str, now: float) -> str:
        """The text of one progress line (without the newline)."""
        count = f"{done:,}/{total:,} ({100 * done // total}%)" if total else f"{done:,}"
        parts = [f"edges tried {count}", f"receiver {what}"] if what and self.is_receiver(what) else \
            [f"{what} {count}" if what else count]
        parts.append(f"elapsed {fmt_duration(now - self.start)}")
        eta = self.eta(done, total, now)
        parts.append(f"ETA {'?' if eta is None else fmt_duration(eta)}")
        return f"{self.command}: " + " · ".join(parts)


@contextlib.contextmanager
def edge_progress(command: str, first: str) -> Iterator[ProgressFn]:
    """The progress callback of a run: on a terminal a rich bar (first labelled `first`, then
    "edges tried · <what>"); otherwise a `ProgressLine` on stderr every ~30 s."""
    with progress() as bar:
        job = bar.add_task(first, total=None)
        line = None if is_tty() else ProgressLine(command)

        def report(done: int, total: int, what: str) -> None:
            bar.update(job, completed=done, total=total, description=f"edges tried · {what}")
            if line is not None:
                line(done, total, what)

        yield report
