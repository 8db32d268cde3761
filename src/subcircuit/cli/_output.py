"""Where the command line writes: results on stdout, everything else on stderr.

- `out()`: a rich console on stdout for results (tables, numbers); wide when stdout is a file or
  a pipe, so that a table written to a log is not squeezed into 80 columns.
- `err()`: a rich console on stderr for status lines.
- `progress()` and `status()`: a rich progress bar and a spinner, drawn only when stderr is a
  terminal (a batch job's log gets the plain lines of `_progress.ProgressLine` instead, and the
  spinner's message goes to the log at INFO level, shown with -v).

Nothing here imports the library: `subcircuit --help` must stay fast.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.progress import Progress

log = logging.getLogger("subcircuit.cli")


def is_tty() -> bool:
    """Whether stderr is an interactive terminal (progress bars and spinners only then)."""
    return sys.stderr.isatty()


def out() -> Console:
    """A rich console on stdout (results: tables, numbers). Not a terminal: 160 columns (or
    $COLUMNS), so tables written to files and pipes are not squeezed into 80."""
    columns = os.environ.get("COLUMNS", "")
    width = None if sys.stdout.isatty() else int(columns) if columns.isdigit() else 160
    return Console(highlight=False, width=width)


def err() -> Console:
    """A rich console on stderr (status lines, errors)."""
    return Console(stderr=True, highlight=False)


def progress(**kw: Any) -> Progress:
    """A rich progress bar on stderr, disabled when stderr is not a terminal."""
    return Progress(console=err(), disable=not is_tty(), transient=True, **kw)


@contextlib.contextmanager
def status(message: str) -> Iterator[None]:
    """A spinner while a slow step runs when stderr is a terminal; otherwise the message is only
    logged (INFO, shown with -v), so that stderr of a non-interactive run holds just errors."""
    if is_tty():
        with err().status(message):
            yield
    else:
        log.info(message)
        yield


def fmt_params(n: int) -> str:
    """134515008 -> '134.5M'; 0 (unknown) -> '?'."""
    if n <= 0:
        return "?"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)
