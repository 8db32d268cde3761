"""`subcircuit show DIR`: (re)render a run's circuit.svg and report.html from its circuit.json."""

from __future__ import annotations

from typing import Annotated

import typer

from subcircuit.cli._options import DeviceOpt, RunDirArg
from subcircuit.cli._output import out, status


def show(
    run_dir: RunDirArg,
    recompute_roles: Annotated[bool, typer.Option("--recompute-roles", help="Measure head roles again (loads "
                                                                            "the model) even if roles.json exists.")] = False,
    no_roles: Annotated[bool, typer.Option("--no-roles", help="Draw without head roles.")] = False,
    device: DeviceOpt = "cpu",
) -> None:
    """(Re)render DIR/circuit.svg and DIR/report.html from DIR/circuit.json (roles from roles.json,
    or measured on the model when it is available)."""
    from subcircuit.runs.report import report_run

    with status(f"rendering {run_dir} ..."):
        files = report_run(run_dir, recompute_roles=recompute_roles, device=device, roles=not no_roles)
    o = out()
    if files.roles_note:
        o.print(files.roles_note, markup=False)
    if files.roles is not None:
        o.print(f"{'used' if files.roles_reused else 'wrote'} {files.roles}", markup=False)
    o.print(f"wrote {files.svg}", markup=False)
    o.print(f"wrote {files.html}", markup=False)
