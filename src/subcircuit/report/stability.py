"""The report's held-out and stability parts: what `--n-eval` and `--bootstrap` recorded.

`heldout_card(circuit)`: the held-out faithfulness beside the discovery one; `stability_section`:
the bootstrap summary (reruns, size and held-out faithfulness intervals, mean pairwise Jaccard)
and the stable core (edges kept in >= 90% of the reruns) with its own faithfulness; in the
diagram each edge's opacity follows its frequency (`edge_opacity`).
"""

from __future__ import annotations

from html import escape
from typing import Any

__all__ = ["edge_opacity", "heldout_card", "stability_section"]


def edge_opacity(frequency: float | None) -> float:
    """Stroke opacity of an edge: 0.8 without a bootstrap, else 0.1 + 0.85 × frequency."""
    return 0.8 if frequency is None else round(0.1 + 0.85 * max(0.0, min(1.0, float(frequency))), 3)


def _num(x: Any, digits: int = 3) -> str:
    return "n/a" if x is None else (f"{x:.{digits}f}" if isinstance(x, float) else str(x))


def heldout_card(circuit: Any) -> tuple[str, str] | None:
    """(value, label) of the held-out faithfulness card, None for a run without held-out prompts."""
    r = circuit.results
    if "n_examples_heldout" not in r:
        return None
    return _num(r.get("faithfulness_heldout")), f"faithfulness on {r['n_examples_heldout']} held-out prompts"


def _interval(v: Any, digits: int = 3) -> str:
    return "n/a" if not v else f"[{_num(float(v[0]), digits)}, {_num(float(v[1]), digits)}]"


def stability_section(circuit: Any) -> str:
    """The bootstrap section of report.html ('' for a run without `--bootstrap`)."""
    bs = circuit.results.get("bootstrap")
    if not isinstance(bs, dict):
        return ""
    core = bs.get("stable_core", {})
    rows = [
        ("reruns", str(bs.get("n_reruns"))),
        ("circuit size: mean, 95% interval", f"{_num(bs.get('size_mean'), 1)} {_interval(bs.get('size_interval'), 1)}"),
        ("held-out faithfulness: mean, 95% interval",
         f"{_num(bs.get('faithfulness_heldout_mean'))} {_interval(bs.get('faithfulness_heldout_interval'))}"),
        ("mean pairwise Jaccard overlap", _num(bs.get("jaccard_mean"))),
        (f"stable core (edges in >= {int(100 * core.get('min_frequency', 0.9))}% of reruns)",
         f"{core.get('n_edges')} edges; faithfulness {_num(core.get('faithfulness'))}, held-out "
         f"{_num(core.get('faithfulness_heldout'))}"),
    ]
    table = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    stable = sorted((e for e in circuit.edges if e.get("frequency", 0) >= core.get("min_frequency", 0.9)),
                    key=lambda e: (-e["frequency"], e["edge"]))
    items = "".join(f"<tr><td>{escape(e['edge'])}</td><td class='num'>{e['frequency']:.2f}</td>"
                    f"<td>{'yes' if e['in_circuit'] else 'no'}</td></tr>" for e in stable)
    core_table = (f"<table><tr><th>edge</th><th class='num'>frequency</th><th>in this circuit</th></tr>{items}</table>"
                  if stable else "<p class='muted'>no edge was kept in enough reruns</p>")
    return ("<section><h2>Stability (bootstrap)</h2><p class='muted'>The method rerun on resampled discovery "
            "prompts; in the diagram an edge's opacity grows with the fraction of reruns that kept it.</p>"
            f"<table>{table}</table><h3>Stable core</h3>{core_table}</section>")
