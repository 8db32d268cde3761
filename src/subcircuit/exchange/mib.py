"""MIB's circuit-track submission folder (Mueller et al. 2025, "MIB: A Mechanistic Interpretability
Benchmark"; layout from the track's README and its evaluation code, see docs/exchange.md).

MIB expects one folder per task and model, named `{task}_{model}` (task words joined by `-`, e.g.
`ioi_gpt2`, `arc-easy_llama3`), holding either

- **importances**: one EAP-IG JSON file with a floating-point score for every edge
  (`importances.json` here; MIB's evaluation then takes the top edges at each of its fractions), or
- **circuits**: nine EAP-IG JSON files with binary membership (no scores), one circuit with at most
  each fraction of the graph's edges in `MIB_FRACTIONS` (0.1 % ... 50 %; MIB adds the full model).
  MIB reads every `.json` in the folder and orders them by edge count, so the file names are free;
  here `edges-{percent}pct.json`.

The binary circuit at fraction p holds the top `int(p · n_edges)` edges by our score (bigger is
more important, DESIGN.md), the count MIB's own `apply_topn` uses.
"""

from __future__ import annotations

from pathlib import Path

from subcircuit.circuit import Circuit
from subcircuit.errors import UserError
from subcircuit.exchange import eap_ig
from subcircuit.graph import Graph

MIB_FRACTIONS: tuple[float, ...] = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
IMPORTANCES = "importances.json"


def folder_name(circuit: Circuit) -> str:
    """`{task}_{model}` with `_` inside the task written `-` (MIB splits the name at `_`)."""
    task = Path(circuit.task).stem if circuit.task.endswith(".jsonl") else circuit.task
    return f"{task.replace('_', '-')}_{circuit.model.replace('_', '-')}"


def circuit_file(fraction: float) -> str:
    return f"edges-{fraction * 100:g}pct.json"


def write(circuit: Circuit, graph: Graph, out: str | Path, kind: str = "importances") -> list[Path]:
    """Write the MIB folder `out/{task}_{model}/` (importances, or the nine binary circuits)."""
    if kind not in ("importances", "circuits"):
        raise UserError(f"unknown MIB kind {kind!r}; valid: importances, circuits")
    folder = Path(out) / folder_name(circuit)
    if kind == "importances":
        return [eap_ig.write(circuit, graph, folder / IMPORTANCES)]
    ranked = sorted(circuit.edges, key=lambda e: -e["score"])
    paths = []
    for p in MIB_FRACTIONS:
        top = {e["edge"] for e in ranked[: int(p * graph.n_edges)]}
        paths.append(eap_ig.write(circuit, graph, folder / circuit_file(p), binary=True, edges=top))
    return paths
