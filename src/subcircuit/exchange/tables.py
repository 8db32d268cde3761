"""Our own tables out of a circuit, and back: CSV (every edge) and Graphviz DOT (the circuit).

CSV: a header `edge,sender,receiver,score,in_circuit`, one row per edge of circuit.json, scores
written with Python's `repr` (they read back exactly). DOT: a `digraph` of the circuit's edges
between components (`"a5.h5" -> "a9.h9"`), each with its name, score, port (q/k/v) and a pen
width that grows with the score; `dot -Tsvg` draws it. Both read back into the same edges
(`read_csv`, `read_dot`); DOT holds only the circuit's edges.
"""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path
from typing import Any

from subcircuit.circuit import Circuit
from subcircuit.errors import UserError
from subcircuit.graph import parse_edge, parse_node

CSV_COLUMNS = ("edge", "sender", "receiver", "score", "in_circuit")


def to_csv(circuit: Circuit) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for e in circuit.edges:
        s, r = parse_edge(e["edge"])
        w.writerow([e["edge"], s, r, repr(float(e["score"])), "true" if e["in_circuit"] else "false"])
    return buf.getvalue()


def read_csv(text: str, source: str = "csv") -> list[dict[str, Any]]:
    rows = list(csv.DictReader(io.StringIO(text)))
    out = []
    for i, row in enumerate(rows):
        try:
            score = float(row["score"])
            flag = {"true": True, "false": False}[row["in_circuit"].strip().lower()]
            name = row["edge"]
        except (KeyError, ValueError, AttributeError):
            raise UserError(f"{source}: row {i + 2} needs edge, a numeric score and in_circuit true/false") from None
        if not math.isfinite(score):
            raise UserError(f"{source}: row {i + 2} ({name!r}) has a non-finite score")
        out.append({"edge": name, "score": score, "in_circuit": flag})
    return out


def to_dot(circuit: Circuit) -> str:
    edges = [e for e in circuit.edges if e["in_circuit"]]
    top = max((abs(e["score"]) for e in edges), default=0.0) or 1.0
    lines = [f'digraph "{circuit.method} {circuit.model} {circuit.task}" {{', "  rankdir=BT;",
             '  node [shape=box, style=rounded, fontname="Helvetica"];']
    for e in edges:
        s, r = parse_edge(e["edge"])
        node = parse_node(r)
        width = 0.5 + 4.5 * math.sqrt(abs(e["score"]) / top)
        lines.append(f'  "{s}" -> "{node.component}" [name="{e["edge"]}", score="{float(e["score"])!r}", '
                     f'port="{node.port or ""}", penwidth={width:.2f}];')
    lines.append("}")
    return "\n".join(lines) + "\n"


_DOT_EDGE = re.compile(r'^\s*"[^"]+" -> "[^"]+" \[name="([^"]+)", score="([^"]+)"')


def read_dot(text: str) -> list[dict[str, Any]]:
    """The circuit edges of a DOT file written by `to_dot` (all in the circuit)."""
    return [{"edge": m.group(1), "score": float(m.group(2)), "in_circuit": True}
            for line in text.splitlines() if (m := _DOT_EDGE.match(line))]


def write(circuit: Circuit, path: str | Path, fmt: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_csv(circuit) if fmt == "csv" else to_dot(circuit), encoding="utf-8")
    return path
