"""A run folder loaded in Python, for notebooks: its circuit, its head roles (roles.json), and the
inline display (`_repr_html_`: the summary and report.html's interactive diagram, with roles and
the folder's evaluation plots).

    from subcircuit.runs.notebook import open_run
    run = open_run("out/ioi")      # shows itself when it is the last line of a cell
    run.heads()                     # heads with their role labels and scores
    run.circuit.edges_frame()       # every edge as a DataFrame
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from subcircuit.circuit import Circuit, load_circuit
from subcircuit.evaluation.roles import ROLES_FILE, HeadRoles, load_roles
from subcircuit.report.notebook import inline_html

__all__ = ["RunFolder", "open_run"]


@dataclass(frozen=True)
class RunFolder:
    folder: Path
    circuit: Circuit
    roles: dict[str, HeadRoles]

    def _repr_html_(self) -> str:
        return inline_html(self.circuit, self.roles, self.folder)

    def heads(self) -> list[dict[str, Any]]:
        """The circuit's heads with their role labels and scores (from roles.json)."""
        return self.circuit.heads(self.roles)

    def edges_frame(self, only_circuit: bool = False):
        return self.circuit.edges_frame(only_circuit)


def open_run(folder: str | Path) -> RunFolder:
    """Load a run folder (its circuit.json, and roles.json when there is one)."""
    folder = Path(folder)
    circuit = load_circuit(folder)
    roles = load_roles(folder / ROLES_FILE) if (folder / ROLES_FILE).exists() else {}
    return RunFolder(folder, circuit, roles)
