"""The report of a run folder: which head roles to draw, then `circuit.svg` and `report.html`.

Roles: measured with the loaded model (and task) when the caller has them (`subcircuit
discover`); else read from the folder's roles.json; else (or with `recompute_roles`) measured
by loading the model by name — when that fails (e.g. the model is not available offline) the
report is drawn without roles and says why. Measuring is `subcircuit.evaluation.roles`;
drawing is `subcircuit.report`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from subcircuit.circuit import Circuit, load_circuit
from subcircuit.evaluation.roles import (
    ROLES_FILE,
    HeadRoles,
    circuit_heads,
    head_roles,
    load_roles,
    save_roles,
)
from subcircuit.positional import fold_circuit
from subcircuit.report import write_report

log = logging.getLogger(__name__)

__all__ = ["ReportFiles", "compute_roles", "report_run"]


@dataclass(frozen=True)
class ReportFiles:
    svg: Path
    html: Path
    roles: Path | None  # roles.json, when roles were computed or found
    roles_note: str | None  # why there are no roles, when there are none
    roles_reused: bool = False  # roles came from an existing roles.json


def compute_roles(circuit: Circuit, loaded: Any = None, task: Any = None, device: str = "cpu"
                  ) -> dict[str, HeadRoles]:
    """Role scores of the circuit's heads. Without `loaded`, the model (and the task, from the
    circuit's task name, prompt count and seed) is loaded by name; errors propagate."""
    heads = circuit_heads(fold_circuit(circuit))
    if not heads:
        return {}
    if loaded is None:
        from subcircuit.models import load
        from subcircuit.tasks import get_task

        loaded = load(circuit.model, device)
        task = get_task(circuit.task, loaded, circuit.params.get("n_examples"), int(circuit.params.get("seed", 0)))
    return head_roles(loaded, heads, task, seed=int(circuit.params.get("seed", 0)))


def report_run(folder: str | Path, circuit: Circuit | None = None, loaded: Any = None, task: Any = None,
               recompute_roles: bool = False, device: str = "cpu", roles: bool = True) -> ReportFiles:
    """Write `circuit.svg` and `report.html` (and `roles.json`) into a run folder (see the module
    docstring for where the roles come from). `roles=False` draws without them."""
    folder = Path(folder)
    circuit = circuit if circuit is not None else load_circuit(folder)
    roles_path = folder / ROLES_FILE
    found: dict[str, HeadRoles] = {}
    note: str | None = None
    written_roles: Path | None = None
    reused = False
    if roles and circuit_heads(fold_circuit(circuit)):
        if loaded is None and roles_path.exists() and not recompute_roles:
            found = load_roles(roles_path)
            written_roles, reused = roles_path, True
        else:
            try:
                found = compute_roles(circuit, loaded, task, device)
                written_roles = save_roles(roles_path, found, circuit.model, circuit.task)
            except Exception as e:  # noqa: BLE001 - a missing model only costs the labels
                if loaded is not None:
                    raise
                note = f"head roles not computed: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                log.warning("%s", note)
    elif roles:
        note = "the circuit has no attention heads, so there are no head roles"
    svg_path, html_path = write_report(folder, circuit, found, note)
    return ReportFiles(svg_path, html_path, written_roles, note, reused)
