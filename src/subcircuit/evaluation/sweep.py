"""Sweeps: one method over a list of ACDC thresholds τ or circuit sizes, one folder per run.

    out/
      tau-0.001/circuit.json   (ACDC)       or   edges-50/circuit.json   (score-based methods)
      ...
      summary.json, summary.md

ACDC runs reuse each other's work: a run at τ replays the trace of the run with the nearest
τ already done until their first differing decision (`subcircuit.methods.acdc`), so a sweep of
ten thresholds costs a little more than one run. A score-based method runs once; each size is its
top-k edges. The model, task, graph and ablation are built once, the full and empty graphs are
measured once, and every circuit's metric runs in one batch.

The summary lists, per run: the parameter, the circuit size, the metric and faithfulness, and —
when the model/task has a shipped reference circuit — edge and node TPR/FPR, with the ROC AUC over
the whole sweep (ACDC: Pareto points over τ; score methods: the score ranking).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from subcircuit.circuit import Circuit, atomic_write_text, edge_records
from subcircuit.errors import UserError
from subcircuit.evaluation.faithfulness import baseline, faithfulness_many
from subcircuit.evaluation.reference import canonical_name, load_reference
from subcircuit.evaluation.roc import (
    auc_of_circuits,
    auc_of_ranking,
    node_incidence,
    node_scores,
    nodes_of,
    rates,
)
from subcircuit.graph import build_graph
from subcircuit.methods import get_method, make_problem
from subcircuit.methods.acdc import acdc_fast
from subcircuit.methods.base import Problem, ProgressFn, _no_progress
from subcircuit.selection import select_top

log = logging.getLogger(__name__)

DEFAULT_THRESHOLDS: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)


@dataclass(frozen=True)
class Run:
    """One circuit of a sweep: its folder name, the swept parameter, and edge membership [n_edges]."""

    name: str
    param: dict[str, Any]
    keep: torch.Tensor
    scores: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)


def run_folder_name(threshold: float | None = None, edges: int | None = None) -> str:
    return f"tau-{threshold:g}" if threshold is not None else f"edges-{edges}"


def acdc_runs(problem: Problem, thresholds: Sequence[float], abs_value: bool = False,
              progress: ProgressFn = _no_progress) -> list[Run]:
    """ACDC at each τ, each run replaying the trace of the done run with the nearest τ."""
    g = problem.graph
    done: dict[float, Any] = {}
    runs = []
    for tau in sorted(set(float(t) for t in thresholds)):
        if tau < 0 or math.isnan(tau):
            raise UserError(f"threshold {tau} is invalid; expected a number >= 0")
        near = min(done, key=lambda t: abs(math.log(t + 1e-12) - math.log(tau + 1e-12)), default=None)
        t0 = time.perf_counter()
        st = acdc_fast(problem, tau, abs_value, trace=None if near is None else done[near].trace, progress=progress)
        done[tau] = st
        log.info("τ=%g: %d edges (%.1f s)", tau, int(st.mask.sum()), time.perf_counter() - t0)
        runs.append(Run(run_folder_name(threshold=tau), {"threshold": tau, "abs": abs_value},
                        g.to_flat(st.mask.cpu() != 0), g.to_flat(st.scores.cpu()),
                        {"n_trials": len(st.trace), "seconds": round(time.perf_counter() - t0, 3)}))
    return runs


def score_runs(problem: Problem, method: str, sizes: Sequence[int] | None,
               progress: ProgressFn = _no_progress) -> list[Run]:
    """Run a score-based method once; one circuit per size (top-k edges)."""
    res = get_method(method).fn(problem, progress=progress)
    n = problem.graph.n_edges
    if not sizes:
        from subcircuit.evaluation.curves import FRACTIONS

        sizes = sorted({max(1, int(f * n)) for f in FRACTIONS})
    return [Run(run_folder_name(edges=k), {"edges": k, **res.params}, select_top(res.scores, k), res.scores.float(),
                dict(res.info)) for k in sorted(set(sizes))]


@dataclass(frozen=True)
class SweepResult:
    out: Path
    circuits: dict[str, Circuit]
    summary: dict[str, Any]


def _reference_rows(problem: Problem, runs: list[Run], model: str, task: str, method: str) -> dict[str, Any] | None:
    """Edge/node TPR and FPR per run, and the sweep's AUCs, against the canonical reference."""
    name = canonical_name(model, task)
    if name is None:
        return None
    g = problem.graph
    ref = load_reference(name, g)
    inc = node_incidence(g)
    ref_e, ref_n = ref.edge_mask, nodes_of(ref.edge_mask, inc)
    per_run = {r.name: {"edge": rates(r.keep, ref_e).to_dict(), "node": rates(nodes_of(r.keep, inc), ref_n).to_dict()}
               for r in runs}
    if method == "acdc":
        auc_e, _ = auc_of_circuits([r.keep for r in runs], ref_e)
        auc_n, _ = auc_of_circuits([nodes_of(r.keep, inc) for r in runs], ref_n)
    else:
        auc_e, _ = auc_of_ranking(runs[0].scores, ref_e)
        auc_n, _ = auc_of_ranking(node_scores(runs[0].scores, inc), ref_n)
    return {"reference": name, "auc_edge": auc_e, "auc_node": auc_n, "runs": per_run}


def sweep(model, task, options, thresholds: Sequence[float] | None = None, sizes: Sequence[int] | None = None,
          out: str | Path = "sweep", progress: ProgressFn = _no_progress) -> SweepResult:
    """Run `options.method` over thresholds (ACDC) or sizes (score methods); write one folder per run
    and summary.json / summary.md into `out`. `options` is a `discover.DiscoverOptions`."""
    from subcircuit.discover import versions
    from subcircuit.models.loading import LoadedModel, load
    from subcircuit.tasks import get_metric, get_task

    options.validate()
    if options.method == "acdc" and sizes:
        raise UserError("ACDC sweeps thresholds (--thresholds), not sizes")
    if options.method != "acdc" and thresholds:
        raise UserError(f"{options.method} sweeps sizes (--sizes), not thresholds")
    out = Path(out)
    t0 = time.perf_counter()
    loaded = model if isinstance(model, LoadedModel) else load(model, options.device)
    task_obj = get_task(task, loaded, options.n_examples, options.seed)
    metric_name = options.metric or task_obj.metric or "kl"
    graph = build_graph(loaded.cfg, options.granularity)
    torch.manual_seed(options.seed)
    problem = make_problem(loaded.model, graph, task_obj, get_metric(metric_name), options.ablation)
    if options.method == "acdc":
        runs = acdc_runs(problem, thresholds or DEFAULT_THRESHOLDS, options.abs_value, progress)
    else:
        runs = score_runs(problem, options.method, sizes, progress)
    base = baseline(problem)
    values, faith = faithfulness_many(problem, graph.from_flat(torch.stack([r.keep.float() for r in runs])), base)
    circuits: dict[str, Circuit] = {}
    rows = []
    for r, v, f in zip(runs, values, faith, strict=True):
        results = {"n_edges_total": graph.n_edges, "n_edges_in_circuit": int(r.keep.sum()),
                   "metric_full_model": base.full, "metric_circuit": v, "metric_empty_circuit": base.empty,
                   "faithfulness": f}
        c = Circuit(model=loaded.name, task=str(task), method=options.method, granularity=options.granularity,
                    ablation=options.ablation, metric=metric_name,
                    params={**r.param, "seed": options.seed, "n_examples": task_obj.n},
                    edges=edge_records(graph.edges, r.scores, r.keep), results=results,
                    timings_s={"total": r.info.get("seconds", 0.0)}, versions=versions())
        c.save(out / r.name / "circuit.json")
        circuits[r.name] = c
        rows.append({"run": r.name, **{k: v for k, v in r.param.items() if k in ("threshold", "edges")},
                     "n_edges": int(r.keep.sum()), "metric_circuit": v, "faithfulness": f})
    ref = _reference_rows(problem, runs, loaded.name, str(task), options.method)
    if ref is not None:
        for row in rows:
            rr = ref["runs"][row["run"]]
            row.update(edge_tpr=rr["edge"]["tpr"], edge_fpr=rr["edge"]["fpr"],
                       node_tpr=rr["node"]["tpr"], node_fpr=rr["node"]["fpr"])
    summary = {"model": loaded.name, "task": str(task), "method": options.method, "metric": metric_name,
               "ablation": options.ablation, "granularity": options.granularity, "n_edges_total": graph.n_edges,
               "metric_full_model": base.full, "metric_empty_circuit": base.empty, "runs": rows,
               "reference": None if ref is None else {k: ref[k] for k in ("reference", "auc_edge", "auc_node")},
               "seconds": round(time.perf_counter() - t0, 2)}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, allow_nan=False, default=_none_nan))
    atomic_write_text(out / "summary.md", summary_markdown(summary))
    return SweepResult(out, circuits, summary)


def _none_nan(x: Any) -> Any:
    raise TypeError(f"not serializable: {x!r}")


def fmt(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, float):
        return f"{x + 0.0:.{digits}g}"  # + 0.0: no "-0"
    return str(x)


def summary_markdown(summary: dict[str, Any]) -> str:
    """The sweep summary as a markdown table."""
    rows = summary["runs"]
    cols = [c for c in ("run", "threshold", "edges", "n_edges", "metric_circuit", "faithfulness", "edge_tpr",
                        "edge_fpr", "node_tpr", "node_fpr") if any(c in r for r in rows)]
    head = (f"# Sweep: {summary['method']} on {summary['model']} / {summary['task']}\n\n"
            f"{summary['granularity']}, {summary['ablation']} ablation, metric {summary['metric']}; "
            f"{summary['n_edges_total']} edges; m(N) = {fmt(summary['metric_full_model'])}, "
            f"m(∅) = {fmt(summary['metric_empty_circuit'])}\n\n")
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    ref = summary.get("reference")
    tail = "" if ref is None else (f"\nAgainst reference `{ref['reference']}`: edge AUC {fmt(ref['auc_edge'])}, "
                                   f"node AUC {fmt(ref['auc_node'])}\n")
    return head + "\n".join(lines) + "\n" + tail
