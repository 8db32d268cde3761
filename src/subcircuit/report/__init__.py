"""Seeing the circuit: `circuit.svg` and `report.html` of a run folder. Drawing only.

- `svg.render_svg(circuit, roles)`: the diagram as SVG text (pure Python, no system package).
- `html.render_html(circuit, roles, folder)`: the self-contained interactive report.
- `write_report(folder, circuit, roles, roles_note)`: both files into a run folder.

Head roles are measured elsewhere (`subcircuit.evaluation.roles`, on the model) and handed in;
this package never loads a model. Which roles to draw for a run folder (reuse its roles.json,
measure them, or say why there are none) is decided by `subcircuit.runs.report.report_run`,
which `subcircuit discover` and `subcircuit show DIR` call.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from subcircuit.files import atomic_write_text

if TYPE_CHECKING:
    from subcircuit.report.roles import HeadRoles

SVG_FILE = "circuit.svg"
HTML_FILE = "report.html"

__all__ = ["HTML_FILE", "SVG_FILE", "write_report"]


def write_report(folder: str | Path, circuit: Any, roles: Mapping[str, HeadRoles] | None = None,
                 roles_note: str | None = None) -> tuple[Path, Path]:
    """Draw `circuit.svg` and `report.html` of `circuit` into `folder`, with head `roles` (by
    head name; none when None) and `roles_note` (why there are no roles, shown in the report).
    Returns (svg path, html path)."""
    from subcircuit.positional import fold_circuit
    from subcircuit.report.html import render_html
    from subcircuit.report.svg import render_svg

    folder = Path(folder)
    found = dict(roles or {})
    svg_path, html_path = folder / SVG_FILE, folder / HTML_FILE
    atomic_write_text(svg_path, render_svg(fold_circuit(circuit), found))  # positional circuits: folded
    atomic_write_text(html_path, render_html(circuit, found, folder, roles_note=roles_note))
    return svg_path, html_path
