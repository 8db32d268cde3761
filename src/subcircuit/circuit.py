"""The circuit file (`circuit.json`, format `subcircuit.circuit/1`, fixed by DESIGN.md).

A `Circuit` is the value a discovery run produces: every scored edge with its score and whether
it is in the circuit, the run's parameters, the metric values behind faithfulness, timings and
versions. Files are written atomically (temporary file, then rename), so a crash never leaves
a half-written `circuit.json`. Loading checks the format and, given a graph, every edge name:
unknown or duplicated names are errors, never silently ignored.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from subcircuit.errors import UserError
from subcircuit.files import atomic_write_text  # noqa: F401  (re-exported for now)

FORMAT = "subcircuit.circuit/1"
REQUIRED = ("format", "model", "task", "method", "granularity", "ablation", "metric", "params", "edges", "results")


@dataclass(frozen=True)
class Circuit:
    model: str
    task: str
    method: str
    granularity: str
    ablation: str
    metric: str
    params: dict[str, Any]
    edges: list[dict[str, Any]]  # {"edge": name, "score": float, "in_circuit": bool}
    results: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)  # every option of the run (reproducibility)
    dtype: str | None = None  # the compute dtype ("float32", "bfloat16", "float16"); optional in the file
    spans: list[str] | None = None  # the span names of a positional graph (`--positions spans`), else None

    @property
    def in_circuit(self) -> list[str]:
        return [e["edge"] for e in self.edges if e["in_circuit"]]

    @property
    def scores(self) -> dict[str, float]:
        return {e["edge"]: e["score"] for e in self.edges}

    # ------------------------------------------------------------------ notebooks (docs/notebooks.md)

    def _repr_html_(self) -> str:
        """Jupyter's inline display: the summary and the interactive diagram of report.html."""
        from subcircuit.report.notebook import inline_html

        return inline_html(self)

    def edges_frame(self, only_circuit: bool = False):
        """Every edge as a pandas DataFrame (edge, sender, receiver, port, score, in_circuit, and
        frequency when recorded), sorted by score; pandas is imported only here."""
        import pandas as pd

        from subcircuit.graph import parse_edge, parse_node

        rows = []
        for e in self.edges:
            if only_circuit and not e["in_circuit"]:
                continue
            sender, receiver = parse_edge(e["edge"])
            node = parse_node(receiver)
            row = {"edge": e["edge"], "sender": sender, "receiver": node.component, "port": node.port,
                   "score": float(e["score"]), "in_circuit": bool(e["in_circuit"])}
            if "frequency" in e:
                row["frequency"] = e["frequency"]
            rows.append(row)
        cols = ["edge", "sender", "receiver", "port", "score", "in_circuit"]
        frame = pd.DataFrame(rows, columns=cols + (["frequency"] if any("frequency" in r for r in rows) else []))
        return frame.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)

    def to_networkx(self, only_circuit: bool = True):
        """The circuit as a networkx MultiDiGraph: nodes are components (`input`, `a9.h9`, `m3`,
        `logits`), one edge per circuit edge keyed by its name, with `score` and `port` (q/k/v
        or None); networkx is imported only here."""
        import networkx as nx

        from subcircuit.graph import parse_edge, parse_node

        g = nx.MultiDiGraph(model=self.model, task=self.task, method=self.method)
        for e in self.edges:
            if only_circuit and not e["in_circuit"]:
                continue
            sender, receiver = parse_edge(e["edge"])
            node = parse_node(receiver)
            g.add_edge(sender, node.component, key=e["edge"], score=float(e["score"]), port=node.port,
                       in_circuit=bool(e["in_circuit"]))
        return g

    def heads(self, roles: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """The attention heads an edge of the circuit leaves or enters, by (layer, head), with
        their role label and scores when `roles` (head name -> HeadRoles, e.g. a run folder's
        roles.json) is given."""
        from subcircuit.graph import parse_edge, parse_node

        found: dict[str, tuple[int, int]] = {}
        for name in self.in_circuit:
            for part in parse_edge(name):
                n = parse_node(part)
                if n.kind == "head" and n.layer is not None and n.index is not None:
                    found[n.component] = (n.layer, n.index)
        out = []
        for head, (layer, index) in sorted(found.items(), key=lambda kv: kv[1]):
            row: dict[str, Any] = {"head": head, "layer": layer, "index": index}
            hr = (roles or {}).get(head)
            if roles is not None:
                row["label"] = hr.label if hr is not None else None
                row.update(hr.scores if hr is not None else {})
            out.append(row)
        return out

    def to_dict(self) -> dict[str, Any]:
        d = {"format": FORMAT, **asdict(self)}
        if d["dtype"] is None:
            del d["dtype"]
        if d["spans"] is None:  # plain circuits: no "spans" field
            del d["spans"]
        return d

    def save(self, path: str | Path) -> Path:
        """Write circuit.json atomically (a folder path gets `circuit.json` inside it)."""
        path = Path(path)
        if path.is_dir() or not path.suffix:
            path.mkdir(parents=True, exist_ok=True)
            path = path / "circuit.json"
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1, allow_nan=False))
        return path


def edge_records(edges: tuple[str, ...], scores: Tensor, in_circuit: Tensor) -> list[dict[str, Any]]:
    """Records for circuit.json from names, scores [n_edges] and membership [n_edges]."""
    out = []
    for name, s, keep in zip(edges, scores.tolist(), in_circuit.tolist(), strict=True):
        out.append({"edge": name, "score": _finite(s), "in_circuit": bool(keep)})
    return out


def _finite(x: float) -> float:
    return float(x) if math.isfinite(x) else 0.0


def load_circuit(path: str | Path, graph=None) -> Circuit:
    """Read circuit.json (or a run folder holding one); with `graph`, check every edge name."""
    path = Path(path)
    if path.is_dir():
        path = path / "circuit.json"
    if not path.exists():
        raise UserError(f"no circuit file at {str(path)!r}")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON (line {e.lineno}: {e.msg}); was the file truncated?") from e
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); is it a circuit file?") from e
    except RecursionError as e:
        raise UserError(f"{path}: JSON nested too deeply; is it a circuit file?") from e
    except OSError as e:
        raise UserError(f"cannot read circuit file {str(path)!r}: {e.strerror or e}") from e
    if not isinstance(d, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(d).__name__}")
    missing = [k for k in REQUIRED if k not in d]
    if missing:
        raise UserError(f"{path}: missing field(s) {missing}")
    if d["format"] != FORMAT:
        raise UserError(f"{path}: format {d['format']!r} is not supported; expected {FORMAT!r}")
    for k in ("model", "task", "method", "granularity", "ablation", "metric"):
        if not isinstance(d[k], str):
            raise UserError(f"{path}: field {k!r} must be a string, not {type(d[k]).__name__}")
    for k in ("params", "results", "timings_s", "versions", "options"):
        if not isinstance(d.get(k, {}), dict):
            raise UserError(f"{path}: field {k!r} must be an object, not {type(d[k]).__name__}")
    edges = d["edges"]
    if not isinstance(edges, list):
        raise UserError(f"{path}: 'edges' must be a list")
    seen: set[str] = set()
    for i, e in enumerate(edges):
        if not isinstance(e, dict) or not isinstance(e.get("edge"), str):
            raise UserError(f"{path}: edges[{i}] must be an object with a string 'edge'")
        if not isinstance(e.get("score"), int | float) or isinstance(e.get("score"), bool):
            raise UserError(f"{path}: edges[{i}] ({e['edge']!r}) has no numeric 'score'")
        try:
            finite = math.isfinite(float(e["score"]))
        except OverflowError:
            finite = False
        if not finite:
            raise UserError(f"{path}: edges[{i}] ({e['edge']!r}) has a non-finite score {e['score']}")
        if not isinstance(e.get("in_circuit"), bool):
            raise UserError(f"{path}: edges[{i}] ({e['edge']!r}) has no boolean 'in_circuit'")
        if e["edge"] in seen:
            raise UserError(f"{path}: edge {e['edge']!r} is listed twice")
        seen.add(e["edge"])
        if graph is not None:
            try:
                graph.edge(e["edge"])
            except UserError as err:
                raise UserError(f"{path}: edges[{i}]: {err}") from None
    spans = d.get("spans")
    if spans is not None and (not isinstance(spans, list) or not spans or not all(isinstance(s, str) for s in spans)):
        raise UserError(f"{path}: field 'spans' must be a non-empty list of span names")
    fields = {k: d[k] for k in REQUIRED if k != "format"}
    return Circuit(**fields, timings_s=d.get("timings_s", {}), versions=d.get("versions", {}),
                   options=d.get("options", {}), dtype=d.get("dtype") if isinstance(d.get("dtype"), str) else None,
                   spans=spans)


def circuit_mask(circuit: Circuit, graph) -> Tensor:
    """[receiver sender] 0/1 mask of the circuit's edges."""
    return graph.mask_from_edges(circuit.in_circuit)


def scores_tensor(circuit: Circuit, graph) -> Tensor:
    """[n_edges] scores in `graph.edges` order (edges the file lacks get -inf)."""
    out = torch.full((graph.n_edges,), -math.inf)
    for e in circuit.edges:
        out[graph.edge_position(e["edge"])] = e["score"]
    return out
