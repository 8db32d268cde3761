"""`circuit.svg`: the circuit drawn as plain SVG text (no graphviz, no display, no system package).

Layout: one row per computation step, from `input` at the bottom to `logits` at the top — each
layer's attention heads on one row (sorted by head; key/value groups of grouped-query models
after them), its MLP on the row above. Only components that touch a drawn edge appear. Every
edge is a curve from its sender's top to its receiver's bottom; query, key and value inputs enter
a head at its left, middle and right. Edge width grows with the score (square root, relative to
the largest drawn score), colour names the receiver kind (q, k, v, MLP, logits; whole heads and
attention layers at coarser granularities), and negative scores are dashed. A head's label (its
role, `subcircuit.evaluation.roles`) is written under its name and tints the box.

Circuits larger than `max_edges` show the top edges by score, and the picture says how many are
hidden. The same drawing, with every edge up to `HTML_MAX_EDGES`, is the interactive diagram of
`report.html` (its script hides and shows edges by their `data-rank`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Any

from subcircuit.graph import NodeName, parse_edge, parse_node
from subcircuit.report.roles import HeadRoles
from subcircuit.report.stability import edge_opacity

DEFAULT_MAX_EDGES = 300
HTML_MAX_EDGES = 2000

#: colours by receiver kind (colour-blind-safe Okabe–Ito palette)
KIND_COLOURS: dict[str, str] = {
    "q": "#0072B2",  # blue
    "k": "#009E73",  # green
    "v": "#D55E00",  # vermillion
    "mlp": "#CC79A7",  # purple-pink
    "logits": "#E69F00",  # orange
    "head": "#555555",  # a whole head (heads granularity) or attention layer
}
KIND_NAMES = {"q": "query", "k": "key", "v": "value", "mlp": "MLP input", "logits": "logits", "head": "head / layer"}
#: box fill by role (the label's first role)
ROLE_FILLS: dict[str, str] = {
    "previous-token": "#DCEBFA",
    "induction": "#FBE3C8",
    "duplicate-token": "#E3F3DC",
    "answer-attention": "#F6DDE9",
    "copying": "#EFE6FA",
}
ROLE_SHORT = {"previous-token": "prev-token", "induction": "induction", "duplicate-token": "dup-token",
              "answer-attention": "answer-attn", "copying": "copying"}

NODE_W, NODE_H = 96, 36
GAP_X, ROW_H = 22, 84
MLP_STEP = 42  # an MLP sits this far above its layer's attention row (or the MLP below)
LABEL_W = 40  # the layer labels on the left
MARGIN_X, MARGIN_TOP, MARGIN_BOTTOM = 30, 78, 30
FONT = "Helvetica, Arial, sans-serif"

@dataclass(frozen=True)
class DrawnNode:
    name: str
    kind: str  # input | head | group | attn | mlp | logits
    x: float  # centre
    y: float  # centre
    label: str | None = None  # role label


@dataclass(frozen=True)
class DrawnEdge:
    edge: str
    sender: str
    receiver: str  # the component (`a1.h0`), without the port
    kind: str  # q | k | v | mlp | logits | head
    score: float
    rank: int  # 0 = highest score
    path: str
    width: float


@dataclass(frozen=True)
class Layout:
    nodes: list[DrawnNode]
    edges: list[DrawnEdge]
    width: float
    height: float
    n_circuit: int  # edges in the circuit
    n_hidden: int  # circuit edges not drawn
    row_y: dict[float, float]  # layer (-1 input, inf logits) -> y of its attention row


def receiver_kind(receiver: str) -> tuple[str, str]:
    """`a1.h0<k>` -> ('a1.h0', 'k'); `m3` -> ('m3', 'mlp'); `logits`; `a2.h1` / `a2` -> 'head'."""
    node = parse_node(receiver)
    return node.component, _edge_kind(node)


def _edge_kind(receiver: NodeName) -> str:
    """The colour class of an edge into `receiver`: q | k | v | mlp | logits | head."""
    if receiver.port is not None:
        return receiver.port
    if receiver.kind in ("logits", "mlp"):
        return receiver.kind
    return "head"


def _row_key(node: NodeName) -> tuple[float, int]:
    """(layer, 0 for attention / 1 for MLP); input first, logits last."""
    if node.kind == "input":
        return (-1, 0)
    if node.kind == "logits":
        return (math.inf, 0)
    assert node.layer is not None
    return (node.layer, 1 if node.kind == "mlp" else 0)


def _col_key(node: NodeName) -> tuple[int, int]:
    """Heads by index, then KV groups by index (other boxes: one per row)."""
    if node.kind in ("head", "group"):
        assert node.index is not None
        return (0 if node.kind == "head" else 1, node.index)
    return (0, 0)


def ranked_edges(circuit: Any) -> list[dict[str, Any]]:
    """The circuit's edges, highest score first (ties by name, so the order is stable)."""
    edges = [e for e in circuit.edges if e["in_circuit"]]
    return sorted(edges, key=lambda e: (-e["score"], e["edge"]))


def layout(circuit: Any, roles: dict[str, HeadRoles] | None = None, max_edges: int = DEFAULT_MAX_EDGES) -> Layout:
    """Positions of the nodes and paths of the top `max_edges` circuit edges."""
    ranked = ranked_edges(circuit)
    shown = ranked[:max_edges]
    parsed = []
    comps: dict[str, NodeName] = {}  # every drawn box: its name and what the name says (no port)
    for e in shown:
        s_name, r_name = parse_edge(e["edge"])
        sender, receiver = parse_node(s_name), parse_node(r_name)
        comp = receiver.component
        parsed.append((e, sender.component, comp, _edge_kind(receiver)))
        comps[sender.component] = sender
        comps[comp] = NodeName(receiver.kind, receiver.layer, receiver.index)
    rows: dict[float, list[str]] = {}  # layer -> attention components (input, logits: their own rows)
    layers: set[float] = set()
    mlps = sorted((c for c, n in comps.items() if n.kind == "mlp"), key=lambda c: _row_key(comps[c]))
    for c, n in comps.items():
        layer = _row_key(n)[0]
        layers.add(layer)
        if n.kind != "mlp":
            rows.setdefault(layer, []).append(c)
    keys = sorted(layers)
    widest = max((len(v) for v in rows.values()), default=1)
    attn_w = widest * NODE_W + (widest - 1) * GAP_X
    mlp_col = NODE_W + 2 * GAP_X if mlps else 0
    width = max(2 * MARGIN_X + LABEL_W + attn_w + mlp_col, 420)
    # vertical positions, bottom-up in "up" coordinates (0 = input): an attention row sits ROW_H
    # above the previous one; an MLP sits MLP_STEP above its layer's attention (or the previous MLP),
    # so a layer with only an MLP costs less than a full row
    mlp_layers = {_row_key(comps[m])[0] for m in mlps}
    up: dict[float, float] = {}
    mlp_up: dict[float, float] = {}
    last_attn, last_mlp = 0.0, -math.inf
    for key in keys:
        if key == -1:
            up[key] = 0.0
            continue
        if key == math.inf or rows.get(key):
            last_attn = up[key] = max(last_attn + ROW_H, last_mlp + MLP_STEP + 6)
        if key in mlp_layers:
            last_mlp = mlp_up[key] = max(last_attn + MLP_STEP, last_mlp + MLP_STEP)
            up.setdefault(key, last_mlp)  # an MLP-only layer's label goes beside its MLP
    top_up = max([*up.values(), *mlp_up.values(), 0.0])
    height = MARGIN_TOP + MARGIN_BOTTOM + NODE_H + top_up
    pos: dict[str, tuple[float, float]] = {}
    row_y: dict[float, float] = {}
    centre = MARGIN_X + LABEL_W + attn_w / 2
    base = height - MARGIN_BOTTOM - NODE_H / 2
    for key in keys:
        y = base - up[key]
        row_y[key] = y
        names = sorted(rows.get(key, []), key=lambda c: _col_key(comps[c]))
        row_w = len(names) * NODE_W + (len(names) - 1) * GAP_X
        x0 = centre - row_w / 2 + NODE_W / 2
        for j, nm in enumerate(names):
            pos[nm] = (x0 + j * (NODE_W + GAP_X), y)
    for m in mlps:  # a column on the right, above the layer's attention
        pos[m] = (width - MARGIN_X - NODE_W / 2, base - mlp_up[_row_key(comps[m])[0]])
    roles = roles or {}
    nodes = [DrawnNode(nm, comps[nm].kind, *pos[nm], label=roles[nm].label if nm in roles else None)
             for nm in sorted(pos, key=lambda n: (_row_key(comps[n]), _col_key(comps[n])))]
    top = max((abs(e["score"]) for e in shown), default=1.0) or 1.0
    port_dx = {"q": -NODE_W / 4, "k": 0.0, "v": NODE_W / 4}
    edges = []
    for rank, (e, sender, comp, kind) in enumerate(parsed):
        (x1, y1), (x2, y2) = pos[sender], pos[comp]
        x2 += port_dx.get(kind, 0.0)
        y1 -= NODE_H / 2
        y2 += NODE_H / 2
        dy = max(abs(y1 - y2) * 0.45, 30)
        path = f"M{x1:.1f},{y1:.1f} C{x1:.1f},{y1 - dy:.1f} {x2:.1f},{y2 + dy:.1f} {x2:.1f},{y2:.1f}"
        w = 0.8 + 5.2 * math.sqrt(min(abs(e["score"]) / top, 1.0))
        edges.append(DrawnEdge(e["edge"], sender, comp, kind, float(e["score"]), rank, path, round(w, 2)))
    return Layout(nodes, edges, width, height, len(ranked), len(ranked) - len(shown), row_y)


def fmt_score(x: float) -> str:
    return f"{x:.4g}"


def short_label(label: str | None) -> str:
    if not label:
        return ""
    parts = [p.strip() for p in label.split("+")]
    head = ROLE_SHORT.get(parts[0], parts[0])
    return head + (" +copy" if len(parts) > 1 else "")


def _node_fill(node: DrawnNode) -> str:
    if node.kind in ("input", "logits"):
        return "#EDEDED"
    if node.kind == "mlp":
        return "#F7F0F5"
    if node.label:
        return ROLE_FILLS.get(node.label.split("+")[0].strip(), "#FFFFFF")
    return "#FFFFFF"


def _freq_note(frequency: float | None) -> str:
    return "" if frequency is None else f"; kept in {100 * frequency:.0f}% of bootstrap reruns"


def render_svg(circuit: Any, roles: dict[str, HeadRoles] | None = None, max_edges: int = DEFAULT_MAX_EDGES,
               interactive: bool = False, title: str | None = None) -> str:
    """The circuit as a standalone SVG document (text). `interactive` adds the ids and data
    attributes the report's script uses; the picture is the same."""
    lay = layout(circuit, roles, max_edges)
    W, H = lay.width, lay.height
    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W:.0f}" height="{H:.0f}" viewBox="0 0 {W:.0f} {H:.0f}"'
        f' font-family="{FONT}"' + (' id="circuit-svg"' if interactive else "") + ">",
        f'<rect x="0" y="0" width="{W:.0f}" height="{H:.0f}" fill="#FFFFFF"/>',
    ]
    if title is None:
        title = f"{circuit.method} · {circuit.model} · {circuit.task} ({circuit.granularity})"
    out.append(f'<text x="{MARGIN_X}" y="22" font-size="14" font-weight="bold" fill="#222">{escape(title)}</text>')
    shown = len(lay.edges)
    note = (f"{lay.n_circuit} edges" if lay.n_hidden == 0 else
            f"top {shown} of {lay.n_circuit} edges by score; {lay.n_hidden} hidden")
    out.append(f'<text x="{MARGIN_X}" y="40" font-size="11" fill="#555"'
               + (' id="edge-count-note"' if interactive else "") + f">{escape(note)}</text>")
    kinds = [k for k in KIND_COLOURS if any(e.kind == k for e in lay.edges)]
    lx = MARGIN_X
    for k in kinds:
        out.append(f'<line x1="{lx}" y1="56" x2="{lx + 18}" y2="56" stroke="{KIND_COLOURS[k]}" stroke-width="3"/>')
        out.append(f'<text x="{lx + 22}" y="60" font-size="11" fill="#333">{KIND_NAMES[k]}</text>')
        lx += 30 + 6.5 * len(KIND_NAMES[k])
    for layer, y in lay.row_y.items():
        if 0 <= layer < math.inf:
            out.append(f'<text x="{MARGIN_X}" y="{y + 4:.1f}" font-size="11" fill="#888">L{int(layer)}</text>')
    out.append('<g class="edges" fill="none">')
    freq = {r["edge"]: r.get("frequency") for r in circuit.edges if r.get("in_circuit")}
    for e in reversed(lay.edges):  # the strongest edges on top
        dash = ' stroke-dasharray="5,3"' if e.score < 0 else ""
        data = (f' class="edge" data-rank="{e.rank}" data-edge="{escape(e.edge)}" data-score="{e.score!r}"'
                f' data-sender="{escape(e.sender)}" data-receiver="{escape(e.receiver)}"' if interactive else "")
        out.append(f'<path d="{e.path}" stroke="{KIND_COLOURS[e.kind]}" stroke-width="{e.width}"'
                   f' stroke-opacity="{edge_opacity(freq.get(e.edge))}"{dash}{data}><title>{escape(e.edge)}: score '
                   f"{fmt_score(e.score)}{_freq_note(freq.get(e.edge))}</title></path>")
    out.append("</g>")
    out.append('<g class="nodes">')
    for n in lay.nodes:
        x, y = n.x - NODE_W / 2, n.y - NODE_H / 2
        rx = 17 if n.kind in ("input", "logits") else 5
        data = f' class="node" data-node="{escape(n.name)}" style="cursor:pointer"' if interactive else ""
        tip = n.name + (f": {n.label}" if n.label else "")
        out.append(f"<g{data}><title>{escape(tip)}</title>")
        out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{NODE_W}" height="{NODE_H}" rx="{rx}"'
                   f' fill="{_node_fill(n)}" stroke="#444" stroke-width="1"/>')
        sub = short_label(n.label)
        ty = n.y + (-2 if sub else 4)
        out.append(f'<text x="{n.x:.1f}" y="{ty:.1f}" font-size="12" font-weight="bold" text-anchor="middle"'
                   f' fill="#111">{escape(n.name)}</text>')
        if sub:
            out.append(f'<text x="{n.x:.1f}" y="{n.y + 12:.1f}" font-size="10" text-anchor="middle"'
                       f' fill="#333">{escape(sub)}</text>')
        out.append("</g>")
    out.append("</g>")
    if not lay.edges:
        out.append(f'<text x="{MARGIN_X}" y="{H / 2:.0f}" font-size="13" fill="#a00">the circuit is empty</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
