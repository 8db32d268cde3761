"""`subcircuit export DIR --format eap-ig|mib|dot|csv` and `subcircuit import FILE --model M --out DIR`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from subcircuit.cli._options import DeviceOpt, ModelOpt, OutOpt, RunDirArg
from subcircuit.cli._output import out, status


def export(
    run_dir: RunDirArg,
    fmt: Annotated[str, typer.Option("--format", "-f", help="eap-ig, mib, dot or csv.")],
    dest: Annotated[Path | None, typer.Option("--out", "-o", help="Output file (a folder for mib). Default: "
                                                                   "beside circuit.json (DIR/circuit.eap-ig.json, DIR/mib/, ...).")] = None,
    mib_kind: Annotated[str, typer.Option("--mib-kind", help="mib: importances (one file of per-edge scores) or "
                                                             "circuits (the nine binary circuits at MIB's edge fractions).")] = "importances",
    device: DeviceOpt = "cpu",
) -> None:
    """Write a run's circuit in another tool's format (EAP-IG JSON, an MIB submission folder,
    Graphviz DOT, CSV). EAP-IG and MIB load the model for its graph."""
    from subcircuit.circuit import load_circuit
    from subcircuit.errors import UserError, unknown
    from subcircuit.exchange import FORMATS
    from subcircuit.exchange.convert import default_out, export_circuit

    if fmt not in FORMATS:
        raise unknown("format", fmt, FORMATS)
    if mib_kind not in ("importances", "circuits"):
        raise UserError(f"unknown --mib-kind {mib_kind!r}; valid: importances, circuits")
    circuit = load_circuit(run_dir)
    graph = None
    if fmt in ("eap-ig", "mib"):
        from subcircuit.graph import build_graph
        from subcircuit.models import load

        with status(f"loading {circuit.model} for its graph ..."):
            graph = build_graph(load(circuit.model, device).cfg, circuit.granularity)
    paths = export_circuit(circuit, graph, fmt, dest or default_out(run_dir, fmt), mib_kind)
    for p in paths:
        out().print(f"wrote {p}", markup=False)


def import_(
    file: Annotated[Path, typer.Argument(help="EAP-IG / MIB circuit JSON (or our CSV).")],
    model: ModelOpt,
    dest: OutOpt,
    task: Annotated[str, typer.Option("--task", "-t", help="Task name recorded in circuit.json.")] = "imported",
    method: Annotated[str, typer.Option("--method", help="Method name recorded in circuit.json.")] = "imported",
    device: DeviceOpt = "cpu",
) -> None:
    """Read another tool's circuit (EAP-IG / MIB JSON) into DIR/circuit.json (and its report),
    checking every edge name against the model's graph."""
    from subcircuit.exchange.convert import import_file
    from subcircuit.graph import build_graph
    from subcircuit.models import load
    from subcircuit.runs.report import report_run

    with status(f"loading {model} for its graph ..."):
        graph = build_graph(load(model, device).cfg, "heads-qkv")
    circuit = import_file(file, graph, model, task, method)
    path = circuit.save(dest)
    report_run(dest, circuit, roles=False)
    out().print(f"{len(circuit.in_circuit)} of {len(circuit.edges)} edges in the circuit; wrote {path}", markup=False)
