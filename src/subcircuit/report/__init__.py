"""Seeing the circuit: `circuit.svg`, `report.html` and head roles (`roles.json`) of a run folder.

- `svg.render_svg(circuit, roles)`: the diagram as SVG text (pure Python, no system package).
- `html.render_html(circuit, roles, folder)`: the self-contained interactive report.
- `roles.head_roles(loaded, heads, task)`: role scores of heads, measured on the model.
- `write_report(folder, ...)`: all three for a run folder; `subcircuit discover` calls it after
  writing circuit.json and `subcircuit show DIR` re-renders from circuit.json (using roles.json
  beside it, or recomputing the roles when the model is available).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from subcircuit.circuit import Circuit, atomic_write_text, load_circuit
from subcircuit.report.roles import ROLES_FILE, HeadRoles, head_roles, load_roles, save_roles

log = logging.getLogger(__name__)
SVG_FILE = "circuit.svg"
HTML_FILE = "report.html"

__all__ = ["ReportFiles", "circuit_heads", "compute_roles", "write_report"]


@dataclass(frozen=True)
class ReportFiles:
    svg: Path
    html: Path
    roles: Path | None  # roles.json, when roles were computed or found
    roles_note: str | None  # why there are no roles, when there are none
    roles_reused: bool = False  # roles came from an existing roles.json


def circuit_heads(circuit: Circuit) -> list[str]:
    """The attention heads (`a{L}.h{H}`) that an edge of the circuit leaves or enters."""
    import re

    heads: set[str] = set()
    for name in circuit.in_circuit:
        for part in name.split("->"):
            comp = part.split("<")[0]
            if re.fullmatch(r"a\d+\.h\d+", comp):
                heads.add(comp)
    return sorted(heads, key=lambda h: tuple(int(x) for x in h[1:].split(".h")))


def compute_roles(circuit: Circuit, loaded: Any = None, task: Any = None, device: str = "cpu"
                  ) -> dict[str, HeadRoles]:
    """Role scores of the circuit's heads. Without `loaded`, the model (and the task, from the
    circuit's task name, prompt count and seed) is loaded by name; errors propagate."""
    heads = circuit_heads(circuit)
    if not heads:
        return {}
    if loaded is None:
        from subcircuit.models.loading import load
        from subcircuit.tasks import get_task

        loaded = load(circuit.model, device)
        task = get_task(circuit.task, loaded, circuit.params.get("n_examples"), int(circuit.params.get("seed", 0)))
    return head_roles(loaded, heads, task, seed=int(circuit.params.get("seed", 0)))


def write_report(folder: str | Path, circuit: Circuit | None = None, loaded: Any = None, task: Any = None,
                 recompute_roles: bool = False, device: str = "cpu", roles: bool = True) -> ReportFiles:
    """Write `circuit.svg` and `report.html` (and `roles.json`) into a run folder.

    Roles: computed with `loaded` (and `task`) when given; else read from roles.json; else (or with
    `recompute_roles`) recomputed by loading the model by name — when that fails (e.g. the model is
    not available offline) the report is drawn without roles and says why. `roles=False` skips them."""
    from subcircuit.report.html import render_html
    from subcircuit.report.svg import render_svg

    folder = Path(folder)
    circuit = circuit if circuit is not None else load_circuit(folder)
    roles_path = folder / ROLES_FILE
    found: dict[str, HeadRoles] = {}
    note: str | None = None
    written_roles: Path | None = None
    reused = False
    if roles and circuit_heads(circuit):
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
    svg_path, html_path = folder / SVG_FILE, folder / HTML_FILE
    atomic_write_text(svg_path, render_svg(circuit, found))
    atomic_write_text(html_path, render_html(circuit, found, folder, roles_note=note))
    return ReportFiles(svg_path, html_path, written_roles, note, reused)
