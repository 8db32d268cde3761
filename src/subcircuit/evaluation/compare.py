"""`evaluate` and `compare`: scoring finished runs (folders holding circuit.json).

`evaluate_run(dir, against)` reports the run's faithfulness (as stored by the run) and, against
a reference — the shipped reference circuit of the run's model and task (`canonical`), or the
circuit of another run folder — edge- and node-level TPR/FPR, plus, for methods that score every
edge, the ROC AUC of the score ranking. With `curve=True` it re-runs the task to measure the
faithfulness curve, CPR and CMD (`curves`), cached in `DIR/evaluation.json`.

`compare_runs(dirs)` puts several runs (a sweep folder counts as all its runs) in one markdown
table and draws faithfulness-vs-size curves and ROC curves as PNG files (matplotlib, Agg).
ACDC runs are single circuits: one point each, and together one Pareto ROC curve per
(model, task, metric, ablation).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from subcircuit.circuit import Circuit, atomic_write_text, load_circuit
from subcircuit.errors import UserError
from subcircuit.evaluation.reference import canonical_name, graph_for_model, list_references, load_reference
from subcircuit.evaluation.roc import (
    auc_of_circuits,
    auc_of_ranking,
    node_incidence,
    node_scores,
    nodes_of,
    ranking_roc,
    rates,
)
from subcircuit.evaluation.tables import fmt
from subcircuit.graph import Graph
from subcircuit.positional import fold_circuit

log = logging.getLogger(__name__)
EVAL_FILE = "evaluation.json"


@dataclass
class RunEvaluation:
    """What `subcircuit evaluate` prints for one run folder."""

    folder: Path
    circuit: Circuit
    reference: str | None = None
    edge: dict[str, Any] | None = None  # rates against the reference
    node: dict[str, Any] | None = None
    auc_edge: float | None = None  # score-ranking AUC (methods that score every edge)
    auc_node: float | None = None
    curve: dict[str, Any] | None = None  # CPR/CMD and the curves
    roc_points: dict[str, list] = field(default_factory=dict)

    @property
    def label(self) -> str:
        p = self.circuit.params
        tag = f"τ={p['threshold']:g}" if "threshold" in p and not ranks_edges(self.circuit) else f"{self.n_edges}e"
        return f"{self.circuit.method} {tag}"

    @property
    def n_edges(self) -> int:
        return int(self.circuit.results.get("n_edges_in_circuit", len(self.circuit.in_circuit)))

    def row(self) -> dict[str, Any]:
        r = self.circuit.results
        out = {"run": str(self.folder), "method": self.circuit.method, "n_edges": self.n_edges,
               "fraction": self.n_edges / max(1, int(r.get("n_edges_total", len(self.circuit.edges)))),
               "faithfulness": r.get("faithfulness")}
        if r.get("n_examples_heldout"):
            out["faithfulness_heldout"] = r.get("faithfulness_heldout")
        if self.curve:
            out.update(cpr=self.curve["cpr"], cmd=self.curve["cmd"])
        if self.edge:
            out.update(edge_tpr=self.edge["tpr"], edge_fpr=self.edge["fpr"], node_tpr=self.node["tpr"],
                       node_fpr=self.node["fpr"])
        if self.auc_edge is not None:
            out.update(auc_edge=self.auc_edge, auc_node=self.auc_node)
        return out


def run_folders(paths: list[str | Path]) -> list[Path]:
    """Run folders from the arguments: a folder with circuit.json, or a sweep folder (its runs)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if (p / "circuit.json").exists():
            out.append(p)
        elif (p / "summary.json").exists():
            out += sorted(q.parent for q in p.glob("*/circuit.json"))
        elif p.is_file() and p.name == "circuit.json":
            out.append(p.parent)
        else:
            raise UserError(f"no circuit.json in {str(p)!r} (expected a run folder or a sweep folder)")
    return out


def ranks_edges(c: Circuit) -> bool:
    """Whether the circuit's method scores edges as a ranking (its `MethodSpec.ranks_edges`; a
    method this version does not know counts as ranking)."""
    from subcircuit.methods import METHODS

    spec = METHODS.get(c.method)
    return spec is None or spec.ranks_edges


def _scores_every_edge(c: Circuit) -> bool:
    return ranks_edges(c) and any(e["score"] != 0 for e in c.edges)


def circuit_graph(c: Circuit) -> Graph:
    return graph_for_model(c.model, c.granularity)


def _flat(c: Circuit, g: Graph) -> tuple[torch.Tensor, torch.Tensor]:
    """(membership [n_edges] bool, scores [n_edges]) of a circuit in graph order."""
    keep = torch.zeros(g.n_edges, dtype=torch.bool)
    scores = torch.full((g.n_edges,), -math.inf)
    for e in c.edges:
        i = g.edge_position(e["edge"])
        keep[i] = bool(e["in_circuit"])
        scores[i] = float(e["score"])
    return keep, scores


def resolve_against(c: Circuit, against: str | None, g: Graph) -> tuple[str, torch.Tensor] | None:
    """(label, reference edge mask [n_edges]) for `against`: None (canonical if one exists),
    'canonical' (must exist), a shipped reference name, or a run folder / reference file."""
    if against is None or against == "canonical":
        name = canonical_name(c.model, c.task)
        if name is None:
            if against is None:
                return None
            raise UserError(f"no reference circuit for model {c.model!r} and task {c.task!r}; "
                            f"shipped: {', '.join(list_references())}; or give a run folder")
        return name, load_reference(name, g).edge_mask
    p = Path(against)
    if p.is_dir() or p.name == "circuit.json":
        other = load_circuit(p, g)
        if other.granularity != c.granularity:
            raise UserError(f"{against}: granularity {other.granularity!r} differs from {c.granularity!r}")
        return str(p), g.to_flat(g.mask_from_edges(other.in_circuit, torch.bool))
    return load_reference(against, g).name, load_reference(against, g).edge_mask


def evaluate_run(folder: str | Path, against: str | None = None, curve: bool = False,
                 device: str = "cpu", prompts: str = "heldout", dtype: str | None = None,
                 offload: str | None = None) -> RunEvaluation:
    """Evaluate one run folder (see the module docstring). The curve is measured on the run's
    held-out prompts (`prompts="heldout"`, when it has them) or on its discovery prompts."""
    folder = Path(folder)
    if not (folder / "circuit.json").exists():
        raise UserError(f"no circuit.json in {str(folder)!r}")
    c0 = load_circuit(folder)
    g = circuit_graph(c0)
    if c0.spans:  # a positional circuit is evaluated in its position-blind view (docs/positions.md)
        c = fold_circuit(c0)
        for e in c.edges:
            g.edge(e["edge"])
    else:
        c = load_circuit(folder, g)
    ev = RunEvaluation(folder, c)
    ref = resolve_against(c, against, g)
    keep, scores = _flat(c, g)
    if ref is not None:
        ev.reference, ref_e = ref
        inc = node_incidence(g)
        ref_n = nodes_of(ref_e, inc)
        ev.edge = rates(keep, ref_e).to_dict()
        ev.node = rates(nodes_of(keep, inc), ref_n).to_dict()
        if _scores_every_edge(c):
            ev.auc_edge, pts = auc_of_ranking(scores, ref_e)
            ev.auc_node, _ = auc_of_ranking(node_scores(scores, inc), ref_n)
            ev.roc_points["edge"] = pts
        ev.roc_points["point"] = [(ev.edge["fpr"], ev.edge["tpr"])]
    if curve and _scores_every_edge(c):
        ev.curve = run_curve(folder, c, scores, device, prompts, dtype, offload)
    return ev


def problem_for(c: Circuit, device: str = "cpu", prompts: str = "discovery", dtype: str | None = None,
                offload: str | None = None):
    """Rebuild the run's problem (model, task with its n_examples and seed, metric, ablation),
    on its discovery or (`prompts="heldout"`) its held-out prompts, at `dtype` (None: the run's own, from circuit.json, else the
    device's default)."""
    from subcircuit.evaluation.heldout import run_prompts
    from subcircuit.methods import make_problem

    loaded, g, task, metric = run_prompts(c, device, prompts, dtype=dtype, offload=offload)
    torch.manual_seed(int(c.params.get("seed", 0)))
    return make_problem(loaded.model, g, task, metric, c.ablation)


def run_curve(folder: Path, c: Circuit, scores: torch.Tensor, device: str = "cpu",
              prompts: str = "heldout", dtype: str | None = None,
              offload: str | None = None) -> dict[str, Any]:
    """CPR/CMD of a run's scores on its held-out prompts (its discovery prompts when it has none,
    or with `prompts="discovery"`), cached in folder/evaluation.json."""
    from subcircuit.evaluation.curves import FRACTIONS, cpr_cmd

    cache = folder / EVAL_FILE
    if cache.exists():
        try:
            d = json.loads(cache.read_text())
            if d.get("fractions") == list(FRACTIONS) and d.get("prompts", "discovery") == prompts:
                return d
        except (json.JSONDecodeError, OSError):
            log.warning("ignoring unreadable %s", cache)
    if prompts == "heldout" and not c.results.get("n_examples_heldout"):
        prompts = "discovery"  # a run made without held-out prompts
    problem = problem_for(c, device, prompts, dtype, offload)
    res = cpr_cmd(problem, scores)
    d = {"fractions": list(FRACTIONS), "prompts": prompts, **res.to_dict()}
    atomic_write_text(cache, json.dumps(d, indent=1, default=lambda x: None))
    return d


# ------------------------------------------------------------------------------------- compare


def compare_runs(paths: list[str | Path], against: str | None = None, curves: bool = True,
                 plots: str | Path | None = None, device: str = "cpu",
                 dtype: str | None = None) -> tuple[list[RunEvaluation], str, list[Path]]:
    """Evaluate several runs; return (evaluations, markdown table, written PNG paths)."""
    evs = [evaluate_run(f, against, curves, device, dtype=dtype) for f in run_folders(paths)]
    table = markdown_table(evs, against)
    written = [] if plots is None else write_plots(evs, Path(plots), against)
    return evs, table, written


TABLE_COLS = ("run", "method", "n_edges", "fraction", "faithfulness", "faithfulness_heldout", "cpr", "cmd", "edge_tpr", "edge_fpr",
              "node_tpr", "node_fpr", "auc_edge", "auc_node")


def markdown_table(evs: list[RunEvaluation], against: str | None = None) -> str:
    rows = [e.row() for e in evs]
    cols = [c for c in TABLE_COLS if any(c in r for r in rows)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    acdc = acdc_groups(evs)
    for key, group in acdc.items():
        if all(e.edge for e in group):
            auc_e, auc_n = acdc_auc(group, circuit_graph(group[0].circuit), against)
            lines.append("")
            lines.append(f"ACDC over {len(group)} thresholds ({key}) against {group[0].reference}: "
                         f"edge AUC {fmt(auc_e)}, "
                         f"node AUC {fmt(auc_n)}")
    return "\n".join(lines) + "\n"


def acdc_groups(evs: list[RunEvaluation]) -> dict[str, list[RunEvaluation]]:
    groups: dict[str, list[RunEvaluation]] = {}
    for e in evs:
        c = e.circuit
        if not ranks_edges(c):
            groups.setdefault(f"{c.model}/{c.task}/{c.metric}/{c.ablation}", []).append(e)
    return groups


def acdc_auc(group: list[RunEvaluation], g: Graph, against: str | None) -> tuple[float, float]:
    """Pareto AUC (edge, node) of a set of ACDC runs (one per τ) against their reference."""
    ref = resolve_against(group[0].circuit, against, g)
    if ref is None:
        return math.nan, math.nan
    _, ref_e = ref
    inc = node_incidence(g)
    keeps = [_flat(e.circuit, g)[0] for e in group]
    auc_e, _ = auc_of_circuits(keeps, ref_e)
    auc_n, _ = auc_of_circuits([nodes_of(k, inc) for k in keeps], nodes_of(ref_e, inc))
    return auc_e, auc_n


def write_plots(evs: list[RunEvaluation], out: Path, against: str | None) -> list[Path]:
    """faithfulness.png (faithfulness vs edge fraction) and, with a reference, roc.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for e in evs:
        if e.curve:
            cc = e.curve["cpr_curve"]
            ys = [math.nan if f is None else f for f in cc["faithfulness"]]
            ax.plot(cc["fractions"], ys, marker="o", label=f"{e.circuit.method} (CPR {e.curve['cpr']:.3f})")
    pts = [(e.row()["fraction"], e.row()["faithfulness"]) for e in evs if not ranks_edges(e.circuit)]
    pts = [(x, y) for x, y in pts if y is not None]
    if pts:
        ax.scatter(*zip(*sorted(pts), strict=True), color="k", marker="x", label="one run each (acdc)", zorder=3)
    ax.set_xscale("log")
    ax.set_xlabel("fraction of edges in the circuit")
    ax.set_ylabel("faithfulness")
    ax.axhline(1, color="grey", lw=0.5)
    ax.legend(fontsize=7)
    fig.tight_layout()
    written.append(out / "faithfulness.png")
    fig.savefig(written[-1], dpi=120)
    plt.close(fig)
    if any(e.edge for e in evs):
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        for e in evs:
            if "edge" in e.roc_points:
                xs, ys = zip(*e.roc_points["edge"], strict=True)
                ax.step(xs, ys, where="post", label=f"{e.label} (AUC {e.auc_edge:.3f})")
        for key, group in acdc_groups(evs).items():
            g = circuit_graph(group[0].circuit)
            keeps = [_flat(x.circuit, g)[0] for x in group if x.edge]
            ref = resolve_against(group[0].circuit, against, g)
            if keeps and ref is not None:
                auc, front = auc_of_circuits(keeps, ref[1])
                xs, ys = zip(*front, strict=True)
                ax.step(xs, ys, where="post", marker="o", label=f"acdc Pareto ({key.split('/')[1]}, AUC {auc:.3f})")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.5, ls="--")
        ax.set_xlabel("false positive rate (edges)")
        ax.set_ylabel("true positive rate (edges)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(out / "roc.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)
    return written


__all__ = ["RunEvaluation", "compare_runs", "evaluate_run", "markdown_table", "run_folders", "write_plots",
           "ranking_roc"]
