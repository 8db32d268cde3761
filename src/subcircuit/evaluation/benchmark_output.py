"""Writing a benchmark's results: `results.json`, `results.md` (markdown tables) and `roc.png`.

Used by `subcircuit benchmark ground-truth` and `subcircuit benchmark paper`. A result is a dict
with `models` (row labels), `methods` (columns), `scores` (`MethodScore`s: per model and method
the edge AUC, node AUC, recovery at the true size, seconds and the edge ROC points) and `truth`
(per model what it is benchmarked with). The tables: one per quantity, models x methods.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

QUANTITIES = (("auc_edge", "edge AUC"), ("auc_node", "node AUC"), ("recovery", "recovery at the true size"))


def score_table(result: dict[str, Any]) -> dict[tuple[str, str], Any]:
    return {(s.model, s.method): s for s in result["scores"]}


def fmt_value(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def markdown(result: dict[str, Any], command: str = "") -> str:
    """The markdown tables (one per quantity, models x methods) and the models' setups."""
    table = score_table(result)
    models, methods = result["models"], result["methods"]
    lines: list[str] = []
    if command:
        lines += [f"`{command}`", ""]
    for key, title in QUANTITIES:
        lines += [f"**{title}**", "", "| model | " + " | ".join(methods) + " |",
                  "|---|" + "---|" * len(methods)]
        for m in models:
            cells = [fmt_value(getattr(table[(m, meth)], key)) if (m, meth) in table else "—" for meth in methods]
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
    truth = result.get("truth") or {}
    published = {m: truth[m]["published_auc_edge"] for m in models if truth.get(m, {}).get("published_auc_edge")}
    if published:
        lines += ["**published edge AUC** (Conmy et al. 2023, Table 2: KL, corrupted ablation)", "",
                  "| model | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
        for m, pub in published.items():
            lines.append(f"| {m} | " + " | ".join(fmt_value(pub.get(meth)) if meth in pub else "—"
                                                  for meth in methods) + " |")
        lines.append("")
    if truth:
        lines += ["**models**", "", "| model | circuit | task | ablation | metric | prompts | edges | true edges | "
                  "nodes | true nodes | reference's faithfulness |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for m in models:
            t = truth[m]
            lines.append(f"| {m} | {t.get('what', '')} | {t['task']} | {t['ablation']} | {t['metric']} | "
                         f"{t['n_examples']} | {t['n_edges']} | {t['n_true_edges']} | {t['n_nodes']} | "
                         f"{t['n_true_nodes']} | {fmt_value(t.get('faithfulness_truth'))} |")
        lines.append("")
    return "\n".join(lines)


def to_json(result: dict[str, Any]) -> dict[str, Any]:
    return {**{k: v for k, v in result.items() if k != "scores"}, "scores": [s.to_dict() for s in result["scores"]]}


def write_roc_png(result: dict[str, Any], path: Path) -> Path:
    """One panel per model: every method's edge ROC (ACDC: its Pareto points as a step curve)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = score_table(result)
    models = result["models"]
    cols = min(3, len(models))
    rows = math.ceil(len(models) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.8 * rows), squeeze=False)
    for ax, m in zip(axes.flat, models, strict=False):
        for meth in result["methods"]:
            s = table.get((m, meth))
            if s is None or not s.roc_edge:
                continue
            pts = sorted(s.roc_edge)
            ax.step([p[0] for p in pts], [p[1] for p in pts], where="post", label=f"{meth} ({fmt_value(s.auc_edge, 2)})")
        ax.plot([0, 1], [0, 1], color="0.8", lw=0.8, ls=":")
        ax.set_title(m, fontsize=10)
        ax.set_xlabel("FPR (edges)")
        ax.set_ylabel("TPR (edges)")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=6, loc="lower right")
    for ax in list(axes.flat)[len(models):]:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_outputs(result: dict[str, Any], out: str | Path, command: str = "") -> list[Path]:
    """results.json, results.md and roc.png in `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(to_json(result), indent=2) + "\n")
    (out / "results.md").write_text(markdown(result, command) + "\n")
    return [out / "results.json", out / "results.md", write_roc_png(result, out / "roc.png")]
