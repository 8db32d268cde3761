"""ACDC's checkpoint file, `acdc-trace.json` in the run folder: the trials so far, which determine
the whole state of a run (a trace replays without any forward pass).

    {"header": {...the run's options...}, "trials": [[receiver, sender, loss, removed], ...]}

An `--edges N` search keeps every run's trace, keyed by its τ (`repr`, exact):

    {"header": {...}, "trials": [], "search": {"0.001": [[r, s, loss, removed], ...], ...}}

The file is written atomically after every receiver. Reading it back checks the header against
the run's: a trace of a run with other options is refused, naming the options that differ.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from subcircuit.errors import UserError
from subcircuit.files import atomic_write_text
from subcircuit.methods.acdc.state import Trial

TRACE_FILE = "acdc-trace.json"


def _rows(trace: list[Trial]) -> list[list[Any]]:
    return [[t.receiver, t.sender, t.loss, t.removed] for t in trace]


def save_trace(path: Path, header: Mapping[str, Any], trace: list[Trial]) -> None:
    atomic_write_text(path, json.dumps({"header": dict(header), "trials": _rows(trace)}))


def save_search(path: Path, header: Mapping[str, Any], runs: Mapping[float, list[Trial]]) -> None:
    """The checkpoint of an `--edges N` search: every run's trace, keyed by τ (repr, exact)."""
    search = {repr(tau): _rows(tr) for tau, tr in runs.items()}
    atomic_write_text(path, json.dumps({"header": dict(header), "trials": [], "search": search}))


def _read(path: Path, header: Mapping[str, Any]) -> dict[str, Any]:
    """A trace file, checked against the run's options."""
    try:
        d = json.loads(path.read_text())
        if d["header"] != header:
            diff = sorted(k for k in set(header) | set(d["header"]) if header.get(k) != d["header"].get(k))
            raise UserError(f"cannot resume from {path}: the run's options differ ({', '.join(diff)})")
        return d
    except (KeyError, ValueError, TypeError) as e:
        if isinstance(e, UserError):
            raise
        raise UserError(f"cannot resume: {path} is damaged ({e})") from e


def _trials(rows: Any, path: Path) -> list[Trial]:
    try:
        return [Trial(int(r), int(s), float(loss), bool(rm)) for r, s, loss, rm in rows]
    except (ValueError, TypeError) as e:
        raise UserError(f"cannot resume: {path} is damaged ({e})") from e


def load_trace(path: Path, header: Mapping[str, Any]) -> list[Trial]:
    return _trials(_read(path, header).get("trials"), path)  # missing: damaged


def load_search(path: Path, header: Mapping[str, Any]) -> dict[float, list[Trial]]:
    search = _read(path, header).get("search", {})
    if not isinstance(search, dict):
        raise UserError(f"cannot resume: {path} is damaged (search is not a mapping)")
    try:
        return {float(tau): _trials(rows, path) for tau, rows in search.items()}
    except ValueError as e:
        raise UserError(f"cannot resume: {path} is damaged ({e})") from e


def read_trace_header(path: str | Path) -> dict[str, Any]:
    """The header (the run's options) of a trace file, for `--resume DIR`."""
    path = Path(path)
    try:
        return dict(json.loads(path.read_text())["header"])
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"cannot resume: {path} is damaged ({e})") from e
