"""`subcircuit models` and `subcircuit tasks`: what is available, with sizes."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from subcircuit.cli._output import fmt_params, log, out


def models() -> None:
    """List the models known by short name, with sizes and whether each is available offline now."""
    from subcircuit.models import MODELS

    table = Table()
    table.add_column("name", no_wrap=True, style="bold")
    table.add_column("description")
    table.add_column("parameters", justify="right", no_wrap=True)
    table.add_column("source")
    table.add_column("offline now", no_wrap=True)
    for entry in MODELS.values():
        ok = _safe_available(entry)
        table.add_row(entry.name, entry.description, fmt_params(entry.n_params), entry.source, "yes" if ok else "no")
    out().print(table)


def _safe_available(entry: Any) -> bool:
    """`entry.available()`, treating a failing check as 'not available' (logged)."""
    try:
        return bool(entry.available())
    except Exception as e:  # noqa: BLE001 - a broken availability check must not break the listing
        log.warning("availability check for %s failed: %s", entry.name, e)
        return False


def tasks() -> None:
    """List the built-in tasks (clean/corrupted prompt pairs and a metric)."""
    try:
        from subcircuit.tasks import list_tasks
    except ImportError as e:
        out().print(f"no built-in tasks yet: subcircuit.tasks.list_tasks() is not available ({e})")
        return
    table = Table()
    table.add_column("name", no_wrap=True, style="bold")
    table.add_column("description")
    table.add_column("default model", no_wrap=True)
    table.add_column("metric", no_wrap=True)
    table.add_column("examples", justify="right", no_wrap=True)
    table.add_column("default model does it (measured)")
    for info in list_tasks():
        table.add_row(
            str(getattr(info, "name", info)),
            str(getattr(info, "description", "")),
            str(getattr(info, "default_model", "")),
            str(getattr(info, "default_metric", "")),
            str(getattr(info, "default_n", "")),
            _works_text(getattr(info, "works", None), str(getattr(info, "performance", ""))),
        )
    out().print(table)


def _works_text(works: bool | None, performance: str) -> str:
    """'yes: <numbers>', 'NO: <numbers>' or the bare performance text when there is no criterion."""
    label = {True: "yes: ", False: "NO: ", None: ""}[works]
    return f"{label}{performance}".strip() or "?"
