"""`report.html`: one self-contained file per run that works offline.

It holds the interactive circuit (the SVG of `subcircuit.report.svg` with every circuit edge up to
`HTML_MAX_EDGES`; hover an edge for its score, a slider for how many of the top edges are drawn,
click a node for its role scores), the run's parameters, results, timings and versions, the head
roles table, the top edges, and the evaluation plots found in the run folder (PNG files, embedded
as base64). The script and style sheet are bundled from `report/assets/` and inlined; nothing is
fetched from the network.
"""

from __future__ import annotations

import base64
import json
from html import escape
from importlib.resources import files
from pathlib import Path
from typing import Any

from subcircuit.errors import UserError
from subcircuit.graph import parse_node
from subcircuit.positional import fold_circuit
from subcircuit.report.roles import CUTOFFS, ROLES, HeadRoles
from subcircuit.report.spans import CSS as SPANS_CSS
from subcircuit.report.spans import spans_section
from subcircuit.report.stability import heldout_card, stability_section
from subcircuit.report.svg import DEFAULT_MAX_EDGES, HTML_MAX_EDGES, fmt_score, ranked_edges, render_svg

TOP_EDGES_TABLE = 100


def _asset(name: str) -> str:
    return (files("subcircuit.report") / "assets" / name).read_text(encoding="utf-8")


def _value(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return escape(str(v))
    if isinstance(v, float):
        return escape(fmt_score(v))
    if isinstance(v, list | dict):
        text = json.dumps(v)
        return escape(text if len(text) < 300 else text[:300] + " …")
    return escape(str(v))


def _table(d: dict[str, Any], unit: str = "") -> str:
    if not d:
        return '<p class="muted">none recorded</p>'
    rows = "".join(f"<tr><th>{escape(str(k))}</th><td class='num'>{_value(v)}{unit}</td></tr>" for k, v in d.items())
    return f"<table>{rows}</table>"


def _cards(circuit: Any) -> str:
    r = circuit.results
    items = [
        (f"{r.get('n_edges_in_circuit', len(circuit.in_circuit))} / {r.get('n_edges_total', len(circuit.edges))}",
         "edges in the circuit"),
        (_value(r.get("faithfulness")) if r.get("faithfulness") is not None else "n/a", "faithfulness"),
        (_value(r.get("metric_full_model")), f"{escape(circuit.metric)}: full model"),
        (_value(r.get("metric_circuit")), f"{escape(circuit.metric)}: circuit"),
        (_value(r.get("metric_empty_circuit")), f"{escape(circuit.metric)}: empty circuit"),
        (f"{circuit.timings_s['total']:.1f} s" if "total" in circuit.timings_s else "n/a", "total time"),
    ]
    held = heldout_card(circuit)
    if held is not None:
        items.insert(2, held)
    return "".join(f'<div class="card"><div class="v">{v}</div><div class="k">{k}</div></div>' for v, k in items)


def _roles_table(roles: dict[str, HeadRoles]) -> str:
    if not roles:
        return ""
    head = "".join(f"<th class='num'>{escape(r)}<br><span class='muted'>≥ {CUTOFFS[r]:g}</span></th>" for r in ROLES)
    rows = []
    for name in sorted(roles, key=_head_sort):
        hr = roles[name]
        cells = []
        for r in ROLES:
            s = hr.scores.get(r)
            ok = s is not None and s >= CUTOFFS[r]
            cells.append(f"<td class='num{' pass' if ok else ''}'>{'n/a' if s is None else f'{s:.3f}'}</td>")
        rows.append(f"<tr><td>{escape(name)}</td><td>{escape(hr.label or '—')}</td>{''.join(cells)}</tr>")
    return f"<table><tr><th>head</th><th>label</th>{head}</tr>{''.join(rows)}</table>"


def _head_sort(name: str) -> tuple[int, int]:
    """Heads by (layer, head); any other name (roles.json is read as given) last."""
    try:
        node = parse_node(name)
    except UserError:
        return (10**6, 0)
    if node.kind != "head" or node.layer is None or node.index is None:
        return (10**6, 0)
    return node.layer, node.index


def _plots(folder: Path | None) -> str:
    if folder is None:
        return ""
    pngs = sorted(Path(folder).glob("*.png"))
    if not pngs:
        return ""
    parts = []
    for p in pngs:
        b64 = base64.b64encode(p.read_bytes()).decode("ascii")
        parts.append(f"<figure><img alt='{escape(p.name)}' src='data:image/png;base64,{b64}'>"
                     f"<figcaption class='muted'>{escape(p.name)}</figcaption></figure>")
    return f"<section class='plots'><h2>Evaluation plots</h2>{''.join(parts)}</section>"


def _evaluation(folder: Path | None) -> str:
    if folder is None or not (Path(folder) / "evaluation.json").exists():
        return ""
    try:
        d = json.loads((Path(folder) / "evaluation.json").read_text())
    except (OSError, json.JSONDecodeError):
        return ""
    flat = {k: v for k, v in d.items() if isinstance(v, int | float | str | bool)} if isinstance(d, dict) else {}
    return f"<section><h2>Evaluation (evaluation.json)</h2>{_table(flat)}</section>" if flat else ""


def _top_edges(circuit: Any) -> str:
    ranked = ranked_edges(circuit)
    rows = "".join(f"<tr><td class='num'>{i + 1}</td><td>{escape(e['edge'])}</td><td class='num'>"
                   f"{fmt_score(e['score'])}</td></tr>" for i, e in enumerate(ranked[:TOP_EDGES_TABLE]))
    more = f"<p class='muted'>… and {len(ranked) - TOP_EDGES_TABLE} more in circuit.json</p>" \
        if len(ranked) > TOP_EDGES_TABLE else ""
    return f"<table><tr><th class='num'>#</th><th>edge</th><th class='num'>score</th></tr>{rows}</table>{more}"


def render_html(circuit: Any, roles: dict[str, HeadRoles] | None = None, folder: str | Path | None = None,
                roles_note: str | None = None, max_edges: int = HTML_MAX_EDGES) -> str:
    """The report of one run as a self-contained HTML document (text)."""
    roles = roles or {}
    folder = Path(folder) if folder is not None else None
    svg = render_svg(fold_circuit(circuit), roles, max_edges=max_edges, interactive=True)  # positional: folded
    n_circuit = len(fold_circuit(circuit).in_circuit)
    n_drawn = min(n_circuit, max_edges)
    default = min(n_drawn, DEFAULT_MAX_EDGES)
    data = {
        "n_circuit_edges": n_circuit,
        "roles": {h: {"scores": r.scores, "label": r.label} for h, r in roles.items()},
        "role_names": list(ROLES),
        "cutoffs": CUTOFFS,
        "roles_note": roles_note,
    }
    data_json = json.dumps(data).replace("</", "<\\/")
    title = f"{circuit.method} on {circuit.model} / {circuit.task}"
    run_params = {"model": circuit.model, "task": circuit.task, "method": circuit.method,
                  "granularity": circuit.granularity, "ablation": circuit.ablation, "metric": circuit.metric,
                  **circuit.params}
    roles_section = ""
    if roles:
        roles_section = ("<section><h2>Head roles</h2><p class='muted'>Scores measured on the model (see "
                         "docs/report.md for definitions); a role labels a head when its score reaches the cut-off "
                         f"shown.</p>{_roles_table(roles)}</section>")
    elif roles_note:
        roles_section = f"<section><h2>Head roles</h2><p class='muted'>{escape(roles_note)}</p></section>"
    slider = (f'<label for="edge-slider">edges shown</label> <input type="range" id="edge-slider" min="1" '
              f'max="{n_drawn}" step="1" value="{default}"> <span id="edge-count"></span>'
              if n_drawn else '<span id="edge-count">the circuit has no edges</span>')
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} — subcircuit report</title>
<style>
{_asset("report.css")}
{SPANS_CSS if circuit.spans else ""}
</style>
</head>
<body>
<header><h1>{escape(title)}</h1>
<p>{escape(circuit.granularity)} graph · {escape(circuit.ablation)} ablation · metric {escape(circuit.metric)}
 · subcircuit {escape(str(circuit.versions.get("subcircuit", "?")))}</p></header>
<main>
<section><div class="cards">{_cards(circuit)}</div></section>
{spans_section(circuit, roles)}
<section id="blind-view"><h2>Circuit{" (position-blind view)" if circuit.spans else ""}</h2>
<div class="controls">{slider}
<span class="muted">hover an edge for its score · click a node for its role scores</span></div>
<div class="diagram-wrap"><div class="diagram">
{svg}</div>
<div id="node-panel"><span class="muted">Click a node to see its role scores and edges.</span></div></div>
</section>
{stability_section(circuit)}
{roles_section}
<section><h2>Parameters</h2>{_table(run_params)}</section>
<section><h2>Results</h2>{_table(circuit.results)}</section>
<section><h2>Timings</h2>{_table(circuit.timings_s, " s")}</section>
{_evaluation(folder)}
{_plots(folder)}
<section><h2>Top edges</h2>{_top_edges(circuit)}</section>
<section><h2>Versions</h2>{_table(circuit.versions)}</section>
</main>
<div id="tooltip"></div>
<script type="application/json" id="report-data">{data_json}</script>
<script>
{_asset("report.js")}
</script>
</body>
</html>
"""
