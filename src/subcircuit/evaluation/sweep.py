"""Sweeps: one method over a list of thresholds τ or circuit sizes, one folder per run.

    out/
      tau-0.001/circuit.json   (ACDC)       or   edges-50/circuit.json   (score-based methods)
      ...
      summary.json, summary.md

A method that selects its circuit itself at a threshold (`MethodSpec.selects_circuit` and a
`threshold` option: ACDC) sweeps thresholds: it runs once per τ, every run with the same
`Context.cache`, so ACDC's runs reuse each other's work (a run at τ replays the trace of the
run with the nearest τ already done until their first differing decision,
`subcircuit.methods.acdc`) and a sweep of ten thresholds costs a little more than one run.
Every other method sweeps sizes: it runs once (with every method option given); each size is
its top-k edges. The model, task, graph and ablation are built once, the full and empty graphs
are measured once, and every circuit's metric runs in one batch.

Interruption: each run's `circuit.json` is written (atomically) as soon as that run is done, and
each ACDC run keeps its trace in its folder after every receiver (`tau-X/acdc-trace.json`); a
score method's scores are kept in `scores.safetensors` once computed. `sweep.json` records the
sweep's options. `resume=True` (`subcircuit sweep ... --resume`) keeps the finished runs, resumes
an interrupted ACDC run from its trace, redoes the rest and gives the same files as an
uninterrupted sweep (apart from timings); different options are refused. A folder that already
holds a sweep is refused unless `resume` or `overwrite`.

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
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from subcircuit.circuit import Circuit, edge_records
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
from subcircuit.files import atomic_write_text, check_header, load_state, save_state
from subcircuit.graph import build_graph
from subcircuit.methods import METHODS, Context, MethodSpec, Problem, ProgressFn, make_problem, no_progress
from subcircuit.methods.selection import select_top

log = logging.getLogger(__name__)

DEFAULT_THRESHOLDS: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
SWEEP_FILE = "sweep.json"
SCORES_FILE = "scores.safetensors"


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


def sweeps_thresholds(spec: MethodSpec) -> bool:
    """Whether a method sweeps thresholds (it selects its circuit at a `threshold` option) rather
    than sizes (its scores' top-k)."""
    return spec.selects_circuit and "threshold" in {f.name for f in fields(spec.options)}


def _check_thresholds(thresholds: Sequence[float]) -> None:
    for tau in thresholds:
        if not isinstance(tau, int | float) or math.isnan(tau) or tau < 0:
            raise UserError(f"threshold {tau} is invalid; expected a number >= 0")


def threshold_runs(problem: Problem, spec: MethodSpec, options: Any, thresholds: Sequence[float],
                   progress: ProgressFn = no_progress, out: Path | None = None,
                   header: dict[str, Any] | None = None, resume: bool = False, seed: int = 0,
                   on_done=None, cache: dict[Any, Any] | None = None) -> list[Run]:
    """The method at each τ (its `options` with `threshold` replaced), in increasing τ, all with one
    `Context.cache` (ACDC replays the done run with the nearest τ).

    With `out`, each run keeps its checkpoint files in `out/tau-X/` (ACDC: its trace, after every
    receiver) under the sweep's header plus its τ; with `resume`, a run whose checkpoint is there
    continues from it (a finished ACDC run costs no patched forward pass, an interrupted one continues
    where it stopped). `on_done(run)` is called after each run."""
    _check_thresholds(thresholds)
    cache = {} if cache is None else cache
    runs = []
    for tau in sorted(set(float(t) for t in thresholds)):
        name = run_folder_name(threshold=tau)
        ctx = Context(progress, seed, None if out is None else out / name, {**(header or {}), "threshold": tau},
                      resume, cache)
        t0 = time.perf_counter()
        res = spec.fn(problem, replace(options, threshold=tau), ctx)
        assert res.in_circuit is not None, f"{spec.name} selects its circuit but returned none"
        log.info("τ=%g: %d edges (%.1f s)", tau, int(res.in_circuit.sum()), time.perf_counter() - t0)
        run = Run(name, dict(res.params), res.in_circuit, res.scores.cpu(),
                  {"n_trials": res.info.get("n_trials"), "seconds": round(time.perf_counter() - t0, 3)})
        runs.append(run)
        if on_done is not None:
            on_done(run)
    return runs


def score_runs(problem: Problem, spec: MethodSpec, options: Any, sizes: Sequence[int] | None,
               progress: ProgressFn = no_progress, out: Path | None = None, header: dict[str, Any] | None = None,
               resume: bool = False, seed: int = 0, cache: dict[Any, Any] | None = None) -> list[Run]:
    """Run a score-based method once (with all its `options`); one circuit per size (top-k edges).
    With `out`, the scores are kept in `out/scores.safetensors` (and, with `resume`, read back
    instead of recomputed)."""
    from subcircuit.discover import check_scores

    n = problem.graph.n_edges
    for k in sizes or ():
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
            raise UserError(f"--sizes: {k!r} is invalid; expected circuit sizes 1..{n} (the graph's edges)")
    path = None if out is None else out / SCORES_FILE
    if resume and path is not None and path.exists():
        tensors, meta = load_state(path)
        check_header(path, meta.get("header"), header)
        scores, params, info = tensors["scores"], meta["params"], meta["info"]
    else:
        res = spec.fn(problem, options, Context(progress, seed, cache={} if cache is None else cache))
        check_scores(res.scores, problem.graph, spec.name)
        scores, params = res.scores.float(), dict(res.params)
        info = {k: v for k, v in res.info.items() if isinstance(v, int | float | str | list | dict)}
        if path is not None:
            save_state(path, {"scores": scores}, {"header": header, "params": params,
                                                  "info": json.loads(json.dumps(info, default=str))})
    if not sizes:
        from subcircuit.evaluation.curves import FRACTIONS

        sizes = sorted({max(1, int(f * n)) for f in FRACTIONS})
    return [Run(run_folder_name(edges=k), {"edges": k, **params}, select_top(scores, k), scores, dict(info))
            for k in sorted(set(sizes))]


@dataclass(frozen=True)
class SweepResult:
    out: Path
    circuits: dict[str, Circuit]
    summary: dict[str, Any]


def _reference_rows(problem: Problem, runs: list[Run], model: str, task: str,
                    by_threshold: bool) -> dict[str, Any] | None:
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
    if by_threshold:  # Pareto points over τ
        auc_e, _ = auc_of_circuits([r.keep for r in runs], ref_e)
        auc_n, _ = auc_of_circuits([nodes_of(r.keep, inc) for r in runs], ref_n)
    else:  # the score ranking
        auc_e, _ = auc_of_ranking(runs[0].scores, ref_e)
        auc_n, _ = auc_of_ranking(node_scores(runs[0].scores, inc), ref_n)
    return {"reference": name, "auc_edge": auc_e, "auc_node": auc_n, "runs": per_run}


def sweep(model, task, options, thresholds: Sequence[float] | None = None, sizes: Sequence[int] | None = None,
          out: str | Path = "sweep", progress: ProgressFn = no_progress, resume: bool = False,
          overwrite: bool = False, force: bool = False) -> SweepResult:
    """Run `options.method` over thresholds (ACDC) or sizes (score methods); write one folder per run
    and summary.json / summary.md into `out`. `options` is a `discover.DiscoverOptions`: every
    method option in it reaches the method (the threshold or size comes from the sweep).

    `resume`: keep the finished runs already in `out` and finish the others (same options only);
    `overwrite`: replace a sweep already in `out` (otherwise refused); `force`: run even if the
    memory estimate exceeds the free memory."""
    from dataclasses import asdict

    from subcircuit.circuit import circuit_mask, load_circuit, scores_tensor
    from subcircuit.discover import check_results, method_options, run_header, versions
    from subcircuit.memory import check_memory
    from subcircuit.models import LoadedModel, load
    from subcircuit.models.loading import check_device
    from subcircuit.tasks import get_metric, get_task

    options.validate()
    spec, method_opts, select = method_options(options)
    by_threshold = sweeps_thresholds(spec)
    if by_threshold and sizes:
        raise UserError(f"{spec.name.upper()} sweeps thresholds (--thresholds), not sizes")
    if not by_threshold and thresholds:
        raise UserError(f"{options.method} sweeps sizes (--sizes), not thresholds")
    for name in ("threshold", "edges"):
        if getattr(method_opts, name, None) is not None or getattr(select, name, None) is not None:
            raise UserError(f"--{name} is not an option of a sweep (give --thresholds or --sizes)")
    if select is not None and (select.sparsity is not None or select.selection != "top" or select.prune):
        raise UserError("a sweep's circuits are the top-k edges of each size (no --sparsity, --selection, --prune)")
    out = Path(out)
    if by_threshold:
        thresholds = list(thresholds or DEFAULT_THRESHOLDS)
        _check_thresholds(thresholds)
    model_name = str(model) if isinstance(model, str | Path) else model.name
    header = {**run_header(options, model_name, str(task)),
              "thresholds": sorted(set(float(t) for t in thresholds or ())), "sizes": sorted(set(sizes or ()))}
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
    elif resume:
        log.warning("nothing to resume in %s; starting afresh", out)
        resume = False
    if not isinstance(model, LoadedModel):
        check_device(options.device)
        check_memory(model, task, options.n_examples, options.method, options.granularity, options.device,
                     force or options.force)
    t0 = time.perf_counter()
    loaded = model if isinstance(model, LoadedModel) else load(model, options.device)
    task_obj = get_task(task, loaded, options.n_examples, options.seed)
    metric_name = options.metric or task_obj.metric or "kl"
    graph = build_graph(loaded.cfg, options.granularity)
    torch.manual_seed(options.seed)
    problem = make_problem(loaded.model, graph, task_obj, get_metric(metric_name), options.ablation)
    if overwrite and not resume:
        for f in (SCORES_FILE, "summary.json", "summary.md"):
            (out / f).unlink(missing_ok=True)
        files = {"circuit.json", *(f for m in METHODS.values() for f in m.checkpoint_files)}
        for d in [*out.glob("tau-*"), *out.glob("edges-*")]:  # the replaced sweep's runs
            for f in files:
                (d / f).unlink(missing_ok=True)
    atomic_write_text(sweep_file, json.dumps({"header": header}, indent=1))
    base = baseline(problem)
    check_results({"metric_full_model": base.full, "metric_empty_circuit": base.empty}, options.method)
    circuits: dict[str, Circuit] = {}

    def finished(r: Run) -> Circuit | None:
        """The run's circuit.json when resuming and it is there and complete."""
        path = out / r.name / "circuit.json"
        if not (resume and path.exists()):
            return None
        c = load_circuit(path, graph)
        if c.params.get("threshold", c.params.get("edges")) != r.param.get("threshold", r.param.get("edges")):
            raise UserError(f"cannot resume: {path} is from another run ({c.params})")
        return c

    def write(r: Run) -> None:
        c = finished(r)
        if c is None:
            (v,), (f,) = faithfulness_many(problem, graph.from_flat(r.keep.float())[None], base)
            results = {"n_edges_total": graph.n_edges, "n_edges_in_circuit": int(r.keep.sum()),
                       "metric_full_model": base.full, "metric_circuit": v, "metric_empty_circuit": base.empty,
                       "faithfulness": f}
            check_results(results, options.method)
            c = Circuit(model=loaded.name, task=str(task), method=options.method, granularity=options.granularity,
                        ablation=options.ablation, metric=metric_name,
                        params={**r.param, "seed": options.seed, "n_examples": task_obj.n},
                        edges=edge_records(graph.edges, r.scores, r.keep), results=results,
                        timings_s={"total": r.info.get("seconds", 0.0)}, versions=versions(),
                        options=asdict(options))
            c.save(out / r.name / "circuit.json")
        circuits[r.name] = c

    cache: dict[Any, Any] = {}  # the session's reusable work (ACDC: finished traces)
    if by_threshold:
        runs = threshold_runs(problem, spec, method_opts, thresholds, progress, out, header, resume, options.seed,
                              on_done=write, cache=cache)
    else:
        runs = score_runs(problem, spec, method_opts, sizes, progress, out, header, resume, options.seed, cache)
        for r in runs:
            write(r)
    runs = [Run(r.name, r.param, graph.to_flat(circuit_mask(circuits[r.name], graph) != 0),
                scores_tensor(circuits[r.name], graph), r.info) for r in runs]
    rows = []
    for r in runs:
        res = circuits[r.name].results
        rows.append({"run": r.name, **{k: v for k, v in r.param.items() if k in ("threshold", "edges")},
                     "n_edges": int(r.keep.sum()), "metric_circuit": res["metric_circuit"],
                     "faithfulness": res["faithfulness"]})
    ref = _reference_rows(problem, runs, loaded.name, str(task), by_threshold)
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
