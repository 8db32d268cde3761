"""Sweeps: one method over a list of thresholds τ or circuit sizes, one folder per run.

    out/
      tau-0.001/circuit.json   (ACDC)       or   edges-50/circuit.json   (score-based methods)
      ...
      sweep.json, summary.json, summary.md

Every run of a sweep is a run of `runs.pipeline` in ONE session (the model, task, graph and
ablation are built once, the full and empty graphs measured once), with the sweep's options
and its own τ or size, so it gives the same circuit.json as `discover` with those options.

A method that selects its circuit itself at a threshold (`MethodSpec.selects_circuit` and a
`threshold` option: ACDC) sweeps thresholds: it runs once per τ, in increasing τ, and the
session's cache lets ACDC's runs reuse each other's work (a run at τ replays the trace of the
run with the nearest τ already done until their first differing decision,
`subcircuit.methods.acdc`), so a sweep of ten thresholds costs a little more than one run.
Every other method sweeps sizes (`--edges k` of each run): a score method runs once (its result
is kept in the session) and each size is its top-k edges; a method that selects its circuit at
a size (Edge Pruning) runs once per size.

Interruption: each run's `circuit.json` is written (atomically) as soon as that run is done,
each run keeps its method's checkpoint files in its folder (ACDC: `tau-X/acdc-trace.json`, after
every receiver), and a score method's result is kept in `scores.safetensors` once computed.
`sweep.json` records the sweep's options. `resume=True` (`subcircuit sweep ... --resume`) keeps
the finished runs, resumes an interrupted run from its checkpoint, redoes the rest and gives the
same files as an uninterrupted sweep (apart from timings); different options are refused. A
folder that already holds a sweep is refused unless `resume` or `overwrite`.

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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from subcircuit.circuit import Circuit, circuit_mask, load_circuit, scores_tensor
from subcircuit.errors import UserError
from subcircuit.evaluation.reference import canonical_name, load_reference
from subcircuit.evaluation.roc import (
    auc_of_circuits,
    auc_of_ranking,
    node_incidence,
    node_scores,
    nodes_of,
    rates,
)
from subcircuit.evaluation.tables import fmt
from subcircuit.files import atomic_write_text, check_header, load_state, save_state
from subcircuit.graph import Graph
from subcircuit.methods import (
    METHODS,
    MethodResult,
    MethodSpec,
    ProgressFn,
    SelectOptions,
    no_progress,
    option_fields,
)
from subcircuit.runs.options import DiscoverOptions, run_header
from subcircuit.runs.pipeline import Session, check_results, open_session, result_key, run_in_session

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_THRESHOLDS", "SCORES_FILE", "SWEEP_FILE", "SweepResult", "run_folder_name", "summary_markdown",
           "sweep", "sweeps_thresholds"]

DEFAULT_THRESHOLDS: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
SWEEP_FILE = "sweep.json"
SCORES_FILE = "scores.safetensors"
RUN_FOLDERS = ("tau-*", "edges-*")


@dataclass(frozen=True)
class SweepResult:
    out: Path
    circuits: dict[str, Circuit]
    summary: dict[str, Any]


def run_folder_name(threshold: float | None = None, edges: int | None = None) -> str:
    return f"tau-{threshold:g}" if threshold is not None else f"edges-{edges}"


def sweeps_thresholds(spec: MethodSpec) -> bool:
    """Whether a method sweeps thresholds (it selects its circuit at a `threshold` option) rather
    than sizes (`--edges k`)."""
    return spec.selects_circuit and "threshold" in {f.name for f in option_fields(spec.options)}


def _check_thresholds(thresholds: Sequence[float]) -> None:
    for tau in thresholds:
        if not isinstance(tau, int | float) or math.isnan(tau) or tau < 0:
            raise UserError(f"threshold {tau} is invalid; expected a number >= 0")


def _check_options(options: DiscoverOptions, by_threshold: bool, thresholds, sizes) -> None:
    """Refuse what a sweep cannot take: the other kind of sweep, a τ or size of its own (the sweep
    gives each run's), and another way of choosing the circuits than the top k."""
    spec = options.spec
    if by_threshold and sizes:
        raise UserError(f"{spec.name.upper()} sweeps thresholds (--thresholds), not sizes")
    if not by_threshold and thresholds:
        raise UserError(f"{spec.name} sweeps sizes (--sizes), not thresholds")
    if not by_threshold and spec.selects_circuit and "edges" not in {f.name for f in option_fields(spec.options)}:
        raise UserError(f"{spec.name} has neither a threshold nor a size to sweep")
    given = options.given()
    for name in ("threshold", "edges"):
        if name in given:
            raise UserError(f"--{name} is not an option of a sweep (give --thresholds or --sizes)")
    selection = {f.name for f in option_fields(SelectOptions)}
    if any(name in selection for name in given):
        raise UserError("a sweep's circuits are the top-k edges of each size (no --sparsity, --selection, --prune)")


def _plan(options: DiscoverOptions, by_threshold: bool, thresholds, sizes, n_edges: int
          ) -> list[tuple[str, float | int, DiscoverOptions]]:
    """(folder name, τ or size, the run's options) of every run, in increasing τ or size."""
    if by_threshold:
        return [(run_folder_name(threshold=t), t, options.updated(threshold=t))
                for t in sorted(set(float(t) for t in thresholds))]
    for k in sizes or ():
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n_edges:
            raise UserError(f"--sizes: {k!r} is invalid; expected circuit sizes 1..{n_edges} (the graph's edges)")
    if not sizes:
        from subcircuit.evaluation.curves import FRACTIONS

        sizes = sorted({max(1, int(f * n_edges)) for f in FRACTIONS})
    return [(run_folder_name(edges=k), k, options.updated(edges=k)) for k in sorted(set(sizes))]


def _reference_rows(graph: Graph, runs: dict[str, tuple[torch.Tensor, torch.Tensor]], model: str, task: str,
                    by_threshold: bool) -> dict[str, Any] | None:
    """Edge/node TPR and FPR per run ({name: (keep, scores)}), and the sweep's AUCs, against the
    canonical reference."""
    name = canonical_name(model, task)
    if name is None:
        return None
    ref = load_reference(name, graph)
    inc = node_incidence(graph)
    ref_e, ref_n = ref.edge_mask, nodes_of(ref.edge_mask, inc)
    per_run = {r: {"edge": rates(keep, ref_e).to_dict(), "node": rates(nodes_of(keep, inc), ref_n).to_dict()}
               for r, (keep, _) in runs.items()}
    if by_threshold:  # Pareto points over τ
        auc_e, _ = auc_of_circuits([keep for keep, _ in runs.values()], ref_e)
        auc_n, _ = auc_of_circuits([nodes_of(keep, inc) for keep, _ in runs.values()], ref_n)
    else:  # the score ranking
        scores = next(iter(runs.values()))[1]
        auc_e, _ = auc_of_ranking(scores, ref_e)
        auc_n, _ = auc_of_ranking(node_scores(scores, inc), ref_n)
    return {"reference": name, "auc_edge": auc_e, "auc_node": auc_n, "runs": per_run}


def _open(out: Path, header: dict[str, Any], resume: bool, overwrite: bool) -> bool:
    """Check the sweep folder against `resume`/`overwrite`; whether the sweep resumes."""
    sweep_file = out / SWEEP_FILE
    held = sweep_file.exists() or (out / "summary.json").exists()
    if held and not (resume or overwrite):
        raise UserError(f"output folder {str(out)!r} already holds a sweep; use --overwrite or --resume")
    if resume and sweep_file.exists():
        try:
            saved = json.loads(sweep_file.read_text())["header"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UserError(f"cannot resume: {sweep_file} is damaged ({e})") from e
        if saved != header:
            diff = sorted(k for k in set(saved) | set(header) if saved.get(k) != header.get(k))
            raise UserError(f"cannot resume the sweep in {str(out)!r}: its options differ ({', '.join(diff)})")
        return True
    if resume:
        log.warning("nothing to resume in %s; starting afresh", out)
    return False


def _clear(out: Path) -> None:
    """Remove a replaced sweep's files (`overwrite`)."""
    for f in (SCORES_FILE, "summary.json", "summary.md"):
        (out / f).unlink(missing_ok=True)
    files = {"circuit.json", *(f for m in METHODS.values() for f in m.checkpoint_files)}
    for d in [p for pattern in RUN_FOLDERS for p in out.glob(pattern)]:
        for f in files:
            (d / f).unlink(missing_ok=True)


def _load_scores(session: Session, options: DiscoverOptions, path: Path, header: dict[str, Any]) -> None:
    """Put a score method's result kept in `scores.safetensors` into the session."""
    tensors, meta = load_state(path)
    check_header(path, meta.get("header"), header)
    session.cache[result_key(options)] = MethodResult(tensors["scores"], None, dict(meta["params"]),
                                                      dict(meta["info"]))


def _save_scores(session: Session, options: DiscoverOptions, path: Path, header: dict[str, Any]) -> None:
    res = session.cache.get(result_key(options))
    if res is None:
        return
    info = {k: v for k, v in res.info.items() if isinstance(v, int | float | str | list | dict)}
    save_state(path, {"scores": res.scores.float()}, {"header": header, "params": dict(res.params),
                                                      "info": json.loads(json.dumps(info, default=str))})


def sweep(model, task, options: DiscoverOptions, thresholds: Sequence[float] | None = None,
          sizes: Sequence[int] | None = None, out: str | Path = "sweep", progress: ProgressFn = no_progress,
          resume: bool = False, overwrite: bool = False, force: bool = False) -> SweepResult:
    """Run `options.method` over thresholds (ACDC) or sizes (the others); write one folder per run
    and summary.json / summary.md into `out`. Every option in `options` reaches every run (the
    threshold or size comes from the sweep).

    `resume`: keep the finished runs already in `out` and finish the others (same options only);
    `overwrite`: replace a sweep already in `out` (otherwise refused); `force`: run even if the
    memory estimate exceeds the free memory."""
    spec = options.spec
    by_threshold = sweeps_thresholds(spec)
    _check_options(options, by_threshold, thresholds, sizes)
    if by_threshold:
        thresholds = list(thresholds or DEFAULT_THRESHOLDS)
        _check_thresholds(thresholds)
    out = Path(out)
    model_name = str(model) if isinstance(model, str | Path) else model.name
    header = {**run_header(options, model_name, str(task)),
              "thresholds": sorted(set(float(t) for t in thresholds or ())), "sizes": sorted(set(sizes or ()))}
    resume = _open(out, header, resume, overwrite)
    t0 = time.perf_counter()
    session = open_session(model, task, replace(options, force=True) if force else options)
    graph = session.graph
    plan = _plan(options, by_threshold, thresholds, sizes, graph.n_edges)
    if overwrite and not resume:
        _clear(out)
    atomic_write_text(out / SWEEP_FILE, json.dumps({"header": header}, indent=1))
    check_results({"metric_full_model": session.baseline.full, "metric_empty_circuit": session.baseline.empty},
                  options.method)
    scores_path = out / SCORES_FILE
    if not spec.selects_circuit and resume and scores_path.exists():
        _load_scores(session, options, scores_path, header)
    circuits: dict[str, Circuit] = {}
    for name, value, run_options in plan:
        path = out / name / "circuit.json"
        if resume and path.exists():  # a finished run: kept as it is
            c = load_circuit(path, graph)
            if c.params.get("threshold" if by_threshold else "edges") != value:
                raise UserError(f"cannot resume: {path} is from another run ({c.params})")
        else:
            c = run_in_session(session, run_options, out / name, resume=resume, progress=progress)
            log.info("%s: %d edges (%.1f s)", name, c.results["n_edges_in_circuit"], c.timings_s["total"])
            if not spec.selects_circuit and not scores_path.exists():
                _save_scores(session, run_options, scores_path, header)
        circuits[name] = c
    runs = {name: (graph.to_flat(circuit_mask(c, graph) != 0), scores_tensor(c, graph)) for name, c in circuits.items()}
    rows = []
    for name, c in circuits.items():
        res = c.results
        rows.append({"run": name, **{k: v for k, v in c.params.items() if k in ("threshold", "edges")},
                     "n_edges": int(runs[name][0].sum()), "metric_circuit": res["metric_circuit"],
                     "faithfulness": res["faithfulness"],
                     **({"faithfulness_heldout": res["faithfulness_heldout"]} if "n_examples_heldout" in res else {})})
    ref = _reference_rows(graph, runs, session.loaded.name, str(task), by_threshold)
    if ref is not None:
        for row in rows:
            rr = ref["runs"][row["run"]]
            row.update(edge_tpr=rr["edge"]["tpr"], edge_fpr=rr["edge"]["fpr"],
                       node_tpr=rr["node"]["tpr"], node_fpr=rr["node"]["fpr"])
    base = session.baseline
    summary = {"model": session.loaded.name, "task": str(task), "method": options.method,
               "metric": session.metric_name, "ablation": options.ablation, "granularity": options.granularity,
               "n_edges_total": graph.n_edges, "metric_full_model": base.full, "metric_empty_circuit": base.empty,
               "runs": rows,
               "reference": None if ref is None else {k: ref[k] for k in ("reference", "auc_edge", "auc_node")},
               "seconds": round(time.perf_counter() - t0, 2)}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, allow_nan=False, default=_none_nan))
    atomic_write_text(out / "summary.md", summary_markdown(summary))
    return SweepResult(out, circuits, summary)


def _none_nan(x: Any) -> Any:
    raise TypeError(f"not serializable: {x!r}")


def summary_markdown(summary: dict[str, Any]) -> str:
    """The sweep summary as a markdown table."""
    rows = summary["runs"]
    cols = [c for c in ("run", "threshold", "edges", "n_edges", "metric_circuit", "faithfulness",
                        "faithfulness_heldout", "edge_tpr",
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
