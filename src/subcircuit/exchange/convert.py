"""`export_circuit` and `import_file`: what `subcircuit export` and `subcircuit import` call."""

from __future__ import annotations

from pathlib import Path

from subcircuit.circuit import Circuit
from subcircuit.errors import UserError, unknown
from subcircuit.exchange import FORMATS, eap_ig, mib, tables
from subcircuit.graph import Graph

SUFFIX = {"eap-ig": ".eap-ig.json", "dot": ".dot", "csv": ".csv"}


def default_out(run_dir: str | Path, fmt: str) -> Path:
    """Where an export goes when no --out is given: beside circuit.json in the run folder."""
    run_dir = Path(run_dir)
    return run_dir / "mib" if fmt == "mib" else run_dir / f"circuit{SUFFIX[fmt]}"


def export_circuit(circuit: Circuit, graph: Graph | None, fmt: str, out: str | Path,
                   mib_kind: str = "importances") -> list[Path]:
    """Write `circuit` in format `fmt` (FORMATS) to `out` (a file; a folder for `mib`). EAP-IG
    and MIB need the model's `graph` (heads-qkv); CSV and DOT do not."""
    if fmt not in FORMATS:
        raise unknown("format", fmt, FORMATS)
    if fmt in ("csv", "dot"):
        return [tables.write(circuit, out, fmt)]
    if graph is None:
        raise UserError(f"format {fmt!r} needs the model's graph")
    _check_names(circuit, graph)
    if fmt == "eap-ig":
        return [eap_ig.write(circuit, graph, out)]
    return mib.write(circuit, graph, out, mib_kind)


def _check_names(circuit: Circuit, graph: Graph) -> None:
    for e in circuit.edges:
        graph.edge(e["edge"])


def import_file(path: str | Path, graph: Graph, model: str, task: str = "imported",
                method: str = "imported") -> Circuit:
    """A `Circuit` from an EAP-IG / MIB JSON file (or our CSV), every edge name checked against
    `graph` (heads-qkv of `model`)."""
    path = Path(path)
    if path.suffix == ".csv":
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UserError(f"no file at {str(path)!r}") from None
        records = tables.read_csv(text, str(path))
        seen: set[str] = set()
        for r in records:
            try:
                graph.edge(r["edge"])
            except UserError as err:
                raise UserError(f"{path}: {err} (model {model!r}, {graph.granularity})") from None
            if r["edge"] in seen:
                raise UserError(f"{path}: edge {r['edge']!r} is listed twice")
            seen.add(r["edge"])
        n_in = sum(r["in_circuit"] for r in records)
        return Circuit(model=model, task=task, method=method, granularity=graph.granularity, ablation="corrupted",
                       metric="unknown", params={"source": str(path)}, edges=records,
                       results={"n_edges_total": graph.n_edges, "n_edges_in_circuit": n_in})
    return eap_ig.from_eap_ig(eap_ig.read_json(path), graph, model, str(path), task, method)
