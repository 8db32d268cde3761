"""The inline display of a circuit in Jupyter: the summary numbers and the same interactive,
offline diagram as `report.html`.

The whole report document (its bundled script and style sheet inlined, nothing fetched) is put in
an `<iframe srcdoc=...>`, so its script and CSS run as they do in a browser and cannot clash with
the notebook's own. `Circuit._repr_html_` and the run folder (`subcircuit.runs.notebook`) call
`inline_html`; this module only draws.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Any

from subcircuit.report.html import render_html
from subcircuit.report.roles import HeadRoles
from subcircuit.report.svg import fmt_score

IFRAME_HEIGHT = 760


def summary_rows(circuit: Any) -> list[tuple[str, str]]:
    """(name, value) pairs of the summary shown above the diagram."""
    r = circuit.results
    n_in = r.get("n_edges_in_circuit", len(circuit.in_circuit))
    n_all = r.get("n_edges_total", len(circuit.edges))
    rows = [("run", f"{circuit.method} on {circuit.model} / {circuit.task}"),
            ("graph", f"{circuit.granularity}, {circuit.ablation} ablation, metric {circuit.metric}"),
            ("edges in the circuit", f"{n_in} / {n_all}")]
    for key in ("faithfulness", "faithfulness_heldout", "metric_full_model", "metric_circuit", "metric_empty_circuit"):
        if isinstance(r.get(key), int | float):
            rows.append((key.replace("_", " "), fmt_score(float(r[key]))))
    if "total" in circuit.timings_s:
        rows.append(("time", f"{circuit.timings_s['total']:.1f} s"))
    return rows


def inline_html(circuit: Any, roles: Mapping[str, HeadRoles] | None = None, folder: str | Path | None = None,
                height: int = IFRAME_HEIGHT) -> str:
    """An HTML fragment for a notebook cell: a summary table, then the report in an iframe."""
    rows = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{escape(k)}</th><td>{escape(v)}</td></tr>"
                   for k, v in summary_rows(circuit))
    doc = render_html(circuit, dict(roles or {}), folder)
    return (f"<div class='subcircuit-circuit'><table style='font-size:13px'>{rows}</table>"
            f"<iframe srcdoc=\"{escape(doc, quote=True)}\" style='width:100%;height:{int(height)}px;"
            "border:1px solid #ddd' sandbox='allow-scripts'></iframe></div>")
