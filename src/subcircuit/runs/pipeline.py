"""The one pipeline every run goes through: a session (model, task, graph, problem) and runs in it.

`open_session(model, task, options)` does the work that runs with the same model, task, prompts,
metric, ablation and granularity share: before loading, the device check and the memory
estimate (`runs.memory`; refused unless `force`); then the model, the task for its tokenizer,
the metric, the graph and the `Problem` (the ablation and the full model's logits).

`run_in_session(session, options, out)` makes one circuit in it:

1. the registered method runs with a `Context`: progress, the seed, the run folder `out` for its
   checkpoint files (ACDC's trace, a training checkpoint) with the header that identifies the
   run (`runs.options.run_header`), whether to resume from them, and the session's cache;
2. a score method's circuit is chosen from its scores by the run's `SelectOptions`
   (`methods.selection.select_circuit`); a method that selects its circuit (ACDC, Edge Pruning)
   returns it;
3. the scores and the metrics are checked (a NaN or infinite value stops the run with one line
   instead of writing a silently wrong circuit);
4. faithfulness: the metric of the circuit, against the full and the empty graph, which are
   measured once per session (`Session.baseline`), on the discovery prompts and on the
   session's held-out prompts (`Session.heldout`: `--n-eval`, disjoint from the discovery
   prompts, `tasks.split`; `evaluation.heldout`);
5. the `Circuit` (with every option of the run, the seed and the versions, so the same options
   give the same circuit.json apart from `timings_s`), written to `out/circuit.json`.

`discover` is a session with one run; a sweep is a session with many, so a sweep's run and a
`discover` run with the same options give the same circuit.json. The session's cache holds the
work runs can share: ACDC's finished traces and EAP-IG candidate scores (`methods.acdc`), and
the result of a score method, which does not depend on how its circuit is chosen (a sweep over
sizes runs the method once).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import platform
import time
from dataclasses import dataclass, field
from functools import cached_property
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from subcircuit.circuit import Circuit, edge_records
from subcircuit.errors import UserError
from subcircuit.evaluation.faithfulness import Baseline, baseline, measure
from subcircuit.evaluation.heldout import HeldOut
from subcircuit.graph import Graph, build_graph
from subcircuit.methods import (
    Context,
    MethodResult,
    Problem,
    ProgressFn,
    make_problem,
    no_progress,
    select_circuit,
)
from subcircuit.methods.defaults import bad_combination, ranking_for, recommended, resolve_metric
from subcircuit.methods.selection import check_select
from subcircuit.models import LoadedModel, dtype_name, load
from subcircuit.positional import PositionalGraph, positional_graph
from subcircuit.runs.memory import run_budget
from subcircuit.runs.options import RUN_FIELDS, DiscoverOptions, run_header
from subcircuit.tasks import get_metric, get_task
from subcircuit.tasks.base import Task
from subcircuit.tasks.spans import single_span
from subcircuit.tasks.split import heldout_task

log = logging.getLogger(__name__)

__all__ = ["Session", "check_results", "check_scores", "open_session", "result_key", "run_in_session", "versions"]

# run-level fields every run of a session shares with it (the method may differ)
SESSION_FIELDS = tuple(f for f in RUN_FIELDS if f not in ("method", "force"))


@dataclass(eq=False)
class Session:
    """What the runs of one model, task, metric, ablation and granularity share."""

    loaded: LoadedModel
    task: Task
    metric_name: str
    graph: Graph
    problem: Problem
    options: DiscoverOptions  # the options the session was opened with
    model_name: str  # as the run's header names it: the name or path given, else the model's name
    task_name: str
    load_s: float = 0.0  # seconds to load the model (0 when it was given loaded)
    opened: float = field(default_factory=time.perf_counter)  # when opening began (perf_counter)
    cache: dict[Any, Any] = field(default_factory=dict)  # the runs' reusable work (Context.cache)
    runs: int = 0  # runs made so far
    heldout: HeldOut | None = None  # the held-out evaluation prompts (None: --n-eval 0 or none left)
    metric_by_default: bool = False  # the metric is the method's recommended one (no --metric given)

    @cached_property
    def baseline(self) -> Baseline:
        """m(N) and m(∅), measured on first use."""
        return baseline(self.problem)


def versions() -> dict[str, str]:
    """Versions recorded in circuit.json: subcircuit, torch, transformers, python."""
    out = {"torch": torch.__version__.split("+")[0]}
    for pkg in ("subcircuit", "transformers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    out["python"] = platform.python_version()
    return out


def open_session(model: str | Path | LoadedModel, task: str | Path, options: DiscoverOptions) -> Session:
    """Load (after the device and memory checks), build the task, metric, graph and problem."""
    t0 = time.perf_counter()
    if not isinstance(model, LoadedModel):  # before loading: the device, then the memory estimate
        from subcircuit.models.loading import check_device
        from subcircuit.runs.memory import check_memory

        check_device(options.device)
        est = check_memory(model, task, options.n_examples, options.method, options.granularity, options.device,
                           options.force, options.method_options, options.dtype, options.offload)
        reserve = est.activations if est is not None else 0
    loaded = model if isinstance(model, LoadedModel) else load(model, options.device, options.dtype, options.offload,
                                                               reserve)
    if dtype_name(loaded.model.dtype) != options.dtype:
        raise UserError(f"the model given is {dtype_name(loaded.model.dtype)} but the run asks for --dtype "
                        f"{options.dtype}; load it at that dtype (subcircuit.models.load(..., dtype=...)) or "
                        f"give dtype={dtype_name(loaded.model.dtype)!r}")
    load_s = time.perf_counter() - t0
    task_obj = get_task(task, loaded, options.n_examples, options.seed)
    metric_name, by_default = run_metric(task, task_obj, options)
    metric = get_metric(metric_name)
    graph = build_graph(loaded.cfg, options.granularity)
    if options.positions == "spans":
        task_obj, graph = positional_problem(task_obj, graph)
    if options.select is not None:
        check_select(graph, options.select)  # before any work
    torch.manual_seed(options.seed)
    problem = make_problem(loaded.model, graph, task_obj, metric, options.ablation)
    name = str(model) if isinstance(model, str | Path) else loaded.name
    heldout = None
    eval_task = heldout_task(task, loaded, task_obj, options.n_eval, options.seed)
    if eval_task is not None:
        heldout = HeldOut(loaded.model, graph, eval_task, metric, options.ablation)
    return Session(loaded, task_obj, metric_name, graph, problem, options, name, str(task), load_s, t0,
                   heldout=heldout, metric_by_default=by_default)


def run_metric(task: str | Path, task_obj: Task, options: DiscoverOptions) -> tuple[str, bool]:
    """(the run's metric name, whether it is the method's default rather than the user's choice):
    `options.metric`, else the metric the method's authors use on this task (`methods.defaults`)."""
    return resolve_metric(options.method, options.metric, _natural_metric(task, task_obj), task_obj.metric)


def _natural_metric(task: str | Path, task_obj: Task) -> str | None:
    """The metric the task's paper reports (a built-in task's `natural_metric`; a file's own)."""
    from subcircuit.tasks import TASKS

    spec = TASKS.get(str(task))
    return spec.natural_metric if spec is not None else task_obj.metric


def resolve_select(options: DiscoverOptions, metric: str) -> tuple[Any, list[str]]:
    """(the run's selection with the method's recommended ranking under `metric` filled in, the
    choices taken from the method's defaults)."""
    sel = options.select
    if sel is None or sel.ranking is not None:
        return sel, []
    from dataclasses import replace

    return replace(sel, ranking=ranking_for(options.method, metric)), ["ranking"]


def positional_problem(task: Task, graph: Graph) -> tuple[Task, Graph]:
    """The task (with one span `all` when it has no span schema) and its positional graph."""
    if task.span_ids is None:
        names, ids = single_span(task.name, tuple(task.clean.shape))
        task = dataclasses.replace(task, span_names=names, span_ids=ids)
    return task, positional_graph(graph, task.span_names, task.metric_spans)


def span_example(task: Task, loaded: LoadedModel) -> list[list[str]]:
    """The first prompt as [span, token text] pairs, up to the metric's token (for the report)."""
    tok = getattr(loaded, "tokenizer", None)
    ids, spans = task.clean[0].tolist(), task.span_ids[0].tolist()  # type: ignore[union-attr]
    n = int(task.positions[0]) + 1
    return [[task.span_names[s], tok.decode([t]) if tok is not None else f"{t} "] for t, s in zip(ids[:n], spans[:n],
                                                                                                  strict=True)]


def check_scores(scores: torch.Tensor, graph: Graph, method: str) -> None:
    """A UserError naming the first edge whose score is NaN or infinite (never write those)."""
    bad = (~torch.isfinite(scores.detach().float().cpu())).nonzero().flatten()
    if len(bad):
        i = int(bad[0])
        r, s = graph.edge_index[i].tolist()
        receiver, sender = graph.receivers[r].name, graph.senders[s].name
        raise UserError(f"{method}: the score of edge {graph.edges[i]} (receiver {receiver!r}, sender {sender!r}) is "
                        f"{float(scores.flatten()[i])} ({len(bad)} non-finite scores); the patched model's "
                        "metric is not finite, so no circuit is written")


def check_results(results: dict[str, Any], method: str) -> None:
    """A UserError when the full, circuit or empty graph's metric is NaN or infinite."""
    for key in ("metric_full_model", "metric_circuit", "metric_empty_circuit"):
        v = results.get(key)
        if isinstance(v, float) and not math.isfinite(v):
            raise UserError(f"{method}: {key} is {v}; the patched model's metric is not finite, so no circuit is "
                            "written (check the model, the ablation and the metric)")


def result_key(options: DiscoverOptions) -> tuple[Any, ...]:
    """Where a session keeps a score method's `MethodResult`: it depends on the method and its
    options only (not on the selection), so the runs of a size sweep share it."""
    return ("result", options.method, options.method_options)


def _method_result(session: Session, options: DiscoverOptions, ctx: Context) -> MethodResult:
    """The method's result; a score method's from the session's cache when it holds it. A score
    method's scores are also kept under ("scores", method, options) (flat [n_edges]), where
    ACDC's `--candidates` looks for EAP-IG's."""
    spec = options.spec
    if spec.selects_circuit:
        return spec.fn(session.problem, options.method_options, ctx)
    key = result_key(options)
    res = session.cache.get(key)
    if res is None:
        res = spec.fn(session.problem, options.method_options, ctx)
        session.cache[key] = res
        session.cache.setdefault(("scores", options.method, options.method_options), res.scores)
    return res


def _check_session(session: Session, options: DiscoverOptions) -> None:
    differ = [f for f in SESSION_FIELDS if getattr(options, f) != getattr(session.options, f)]
    if differ:
        raise ValueError(f"a run in this session must have the session's {', '.join(differ)}")


def run_in_session(session: Session, options: DiscoverOptions, out: str | Path | None = None, resume: bool = False,
                   progress: ProgressFn = no_progress, model_name: str | None = None,
                   task_name: str | None = None) -> Circuit:
    """One run in `session` (see the module docstring); with `out`, its folder (checkpoint files,
    circuit.json). `resume`: the method continues from its checkpoint in `out` if there is one.
    `model_name`, `task_name`: how the run's header names them (default: the session's). The
    first run of a session counts the session's opening (loading) in its timings."""
    _check_session(session, options)
    graph = session.graph
    t1 = time.perf_counter()
    if options.select is not None:
        check_select(graph, options.select)
    out_dir = Path(out) if out is not None else None
    header = run_header(options, model_name or session.model_name, task_name or session.task_name)
    torch.manual_seed(options.seed)
    b, p = session.problem.task.clean.shape
    budget, _ = run_budget(session.loaded.model, b, p, options.method, options.granularity, options.method_options,
                           options.device)
    ctx = Context(progress, options.seed, out_dir, header, resume, session.cache, budget)
    res = _method_result(session, options, ctx)
    scores, keep, params = res.scores, res.in_circuit, dict(res.params)
    info: dict[str, Any] = {}
    select, by_default = resolve_select(options, session.metric_name)
    if session.metric_by_default:
        by_default = ["metric", *by_default]
    warning = bad_combination(options.method, session.metric_name, None if select is None else select.ranking)
    if warning and session.runs == 0:  # once per session (not again for each run of a sweep or bootstrap)
        log.warning("%s", warning)
    if keep is None:
        assert select is not None
        keep, chosen, info = select_circuit(graph, scores, select)
        params.update(chosen)
    info.update(res.info)
    t_method = time.perf_counter() - t1
    check_scores(scores, graph, options.method)
    params.update(seed=options.seed, n_examples=session.task.n)
    if isinstance(graph, PositionalGraph):
        params["span_example"] = span_example(session.task, session.loaded)
    if by_default:
        params["defaults"] = {"chosen": by_default, "source": recommended(options.method).source}
    mask = graph.from_flat(keep.float())
    results: dict[str, Any] = measure(session.problem, mask, session.baseline)
    check_results(results, options.method)
    if session.heldout is not None:
        results.update(session.heldout.measure(mask))
    results.update(n_edges_total=graph.n_edges, n_edges_in_circuit=int(keep.sum()))
    results.update({k: v for k, v in info.items() if isinstance(v, int | float | list)})
    now = time.perf_counter()
    if session.runs == 0:
        timings = {"load": round(session.load_s, 3), "method": round(t_method, 3),
                   "total": round(now - session.opened, 3)}
    else:
        timings = {"method": round(t_method, 3), "total": round(now - t1, 3)}
    circuit = Circuit(
        model=session.loaded.name, task=session.task_name, method=options.method, granularity=options.granularity,
        ablation=options.ablation, metric=session.metric_name, params=params,
        edges=edge_records(graph.edges, scores, keep), results=results, timings_s=timings, versions=versions(),
        options=options.flat(), dtype=dtype_name(session.loaded.model.dtype),
        spans=list(graph.spans) if isinstance(graph, PositionalGraph) else None,
    )
    session.runs += 1
    if out_dir is not None:
        circuit.save(out_dir)
    return circuit
