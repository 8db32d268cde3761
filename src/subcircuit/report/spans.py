"""The position-aware part of the report (`--positions spans` runs): drawing only.

- the prompt with its spans coloured (the run's first prompt, `params["span_example"]`: a list of
  [span, token text] pairs written by the run);
- the circuit with the spans as columns: one diagram per span, holding the edges whose receiver
  reads at that span;
- a toggle that folds the circuit back to the position-blind view (every plain edge kept at any
  span: `positional.fold_circuit`), the main interactive diagram of the report;
- a table of the circuit's edges with a column per span (the edge's score where it is in the
  circuit).
"""

from __future__ import annotations

from html import escape
from typing import Any

from subcircuit.graph import split_span
from subcircuit.positional import fold_circuit
from subcircuit.report.svg import fmt_score, render_svg

# one colour per span (cycled)
COLOURS = ("#fde68a", "#bfdbfe", "#fecaca", "#bbf7d0", "#ddd6fe", "#fed7aa", "#a5f3fc", "#f5d0fe", "#e5e7eb")


def span_colour(i: int) -> str:
    return COLOURS[i % len(COLOURS)]


def _prompt(circuit: Any) -> str:
    example = circuit.params.get("span_example") or []
    spans = list(circuit.spans)
    legend = "".join(f"<span class='span-tok' style='background:{span_colour(i)}'>{escape(s)}</span> "
                     for i, s in enumerate(spans))
    toks = "".join(
        f"<span class='span-tok' title='{escape(str(s))}' style='background:"
        f"{span_colour(spans.index(s)) if s in spans else '#fff'}'>{escape(str(t))}</span>"
        for s, t in example)
    body = f"<p class='prompt'>{toks}</p>" if toks else "<p class='muted'>no example prompt recorded</p>"
    return f"<p>spans: {legend}</p>{body}"


def _table(circuit: Any) -> str:
    spans = list(circuit.spans)
    rows: dict[str, dict[str, float]] = {}
    for e in circuit.edges:
        if not e["in_circuit"]:
            continue
        sender, _, receiver = e["edge"].partition("->")
        base, span = split_span(receiver)
        rows.setdefault(f"{sender}->{base}", {})[span or ""] = e["score"]
    head = "".join(f"<th class='num' style='background:{span_colour(i)}'>{escape(s)}</th>" for i, s in enumerate(spans))
    body = "".join(
        f"<tr><td>{escape(edge)}</td>" + "".join(
            f"<td class='num'>{fmt_score(cells[s]) if s in cells else ''}</td>" for s in spans) + "</tr>"
        for edge, cells in sorted(rows.items(), key=lambda kv: -max(kv[1].values())))
    return f"<table><tr><th>edge</th>{head}</tr>{body}</table>"


def spans_section(circuit: Any, roles: Any = None) -> str:
    """The positional section of report.html ("" for a plain circuit)."""
    if not getattr(circuit, "spans", None):
        return ""
    cols = "".join(
        f"<div class='span-col'><h3 style='background:{span_colour(i)}'>{escape(s)}</h3>"
        f"{render_svg(fold_circuit(circuit, span=s), roles, title=f'at span {s}')}</div>"
        for i, s in enumerate(circuit.spans))
    return f"""<section><h2>Spans</h2>
{_prompt(circuit)}
<p><label><input type="checkbox" id="fold-toggle"> fold to the position-blind view</label>
<span class="muted">(position-aware: one diagram per span; folded: every edge kept at any span)</span></p>
<div id="span-columns" class="span-columns">{cols}</div>
<h3>Circuit edges by span</h3>{_table(circuit)}
</section>
<script>
(function () {{
function init() {{
  var t = document.getElementById("fold-toggle"), cols = document.getElementById("span-columns"),
      blind = document.getElementById("blind-view");
  function show() {{ cols.style.display = t.checked ? "none" : "flex";
                     if (blind) {{ blind.style.display = t.checked ? "" : "none"; }} }}
  t.addEventListener("change", show); show();
}}
if (document.readyState === "loading") {{ document.addEventListener("DOMContentLoaded", init); }} else {{ init(); }}
}})();
</script>"""


CSS = """
.span-columns { display: flex; gap: 8px; overflow-x: auto; }
.span-col { flex: 1 1 0; min-width: 220px; }
.span-col h3 { margin: 0 0 4px 0; padding: 2px 6px; border-radius: 4px; }
.span-col svg { width: 100%; height: auto; }
.span-tok { padding: 1px 2px; border-radius: 3px; white-space: pre; }
.prompt { font-family: monospace; line-height: 1.9; display: flex; flex-wrap: wrap; gap: 1px; }
"""
