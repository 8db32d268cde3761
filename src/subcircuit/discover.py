"""`discover`: one call from (model, task, method, options) to a `Circuit`.

This is the pipeline behind `subcircuit discover`: load the model and build the task for its
tokenizer, build the graph and the ablation, run the registered method, select the circuit,
measure the metric on the full model, the circuit and the empty graph (faithfulness), and
write `circuit.json`. ACDC runs keep their trace in `DIR/acdc-trace.json` after every receiver,
and the gate-training methods (edge-pruning, sp) their whole training state in
`DIR/training-checkpoint.safetensors` every few steps, so an interrupted run resumes
(`resume=True`, `subcircuit discover --resume DIR`) with the identical circuit.

Before loading, the run's memory is estimated and compared with the free memory
(`subcircuit.memory`; refused unless `options.force`). Every circuit records the full options, the seed
and the versions of subcircuit, torch, transformers and Python, so the same command gives the
same `circuit.json` apart from `timings_s`. A non-finite metric or score stops the run with a
one-line error instead of writing a silently wrong circuit.
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from subcircuit.circuit import Circuit, atomic_write_text, edge_records
from subcircuit.errors import UserError
from subcircuit.evaluation.faithfulness import measure
from subcircuit.graph import build_graph
from subcircuit.methods import get_method, make_problem
from subcircuit.methods.acdc import Trial, acdc_fast, acdc_reference
from subcircuit.methods.base import Problem, ProgressFn, _no_progress
from subcircuit.models.loading import LoadedModel, load
from subcircuit.patching import ABLATIONS
from subcircuit.tasks import get_metric, get_task

log = logging.getLogger(__name__)
TRACE_FILE = "acdc-trace.json"
CHECKPOINT_FILE = "training-checkpoint.safetensors"
RUN_FILES = ("circuit.json", TRACE_FILE, CHECKPOINT_FILE)  # a folder holding any of these holds a run
CHECKPOINT_EVERY = 10  # gate-training steps between checkpoints


@dataclass(frozen=True)
class DiscoverOptions:
    """Options of one discovery run (the CLI flags of `subcircuit discover`)."""

    method: str = "acdc"
    threshold: float | None = None  # ACDC τ (default 0.01 unless `edges` is given)
    edges: int | None = None  # target circuit size
    metric: str | None = None  # default: the task's default metric (kl for most)
    ablation: str = "corrupted"
    granularity: str = "heads-qkv"
    n_examples: int | None = None
    seed: int = 0
    device: str = "cpu"
    abs_value: bool = False
    sparsity: float | None = None  # score methods / edge-pruning: fraction of edges removed
    candidates: int | None = None  # ACDC: try only the top-K edges by EAP-IG
    ig_steps: int = 5  # EAP-IG interpolation steps (also for --candidates)
    ig: str = "inputs"  # EAP-IG variant: inputs | activations
    selection: str = "top"  # score methods: top | greedy
    prune: bool = False  # score methods: drop edges not on a path input -> logits
    train_steps: int | None = None  # edge-pruning / sp optimisation steps (None: the method's default)
    force: bool = False  # run even if the memory estimate exceeds the free memory (`--force`)

    def validate(self) -> None:
        if self.threshold is not None and (not isinstance(self.threshold, int | float) or math.isnan(self.threshold)
                                           or self.threshold < 0):
            raise UserError(f"--threshold {self.threshold!r} is invalid; expected a number >= 0")
        if self.threshold is not None and self.edges is not None:
            raise UserError("give either --threshold or --edges, not both")
        if self.edges is not None and self.edges < 1:
            raise UserError(f"--edges {self.edges} is invalid; expected at least 1")
        if self.sparsity is not None and (self.edges is not None or self.threshold is not None):
            raise UserError("give only one of --sparsity, --edges, --threshold")
        if self.sparsity is not None and not 0 <= self.sparsity < 1:
            raise UserError(f"--sparsity {self.sparsity} is invalid; expected 0 <= S < 1")
        if self.candidates is not None and (self.method != "acdc" or self.candidates < 1):
            raise UserError(f"--candidates {self.candidates} is invalid; it needs --method acdc and K >= 1")
        if self.train_steps is not None and self.train_steps < 1:
            raise UserError(f"--train-steps {self.train_steps} is invalid; expected at least 1")
        if self.n_examples is not None and self.n_examples < 1:
            raise UserError(f"--n-examples {self.n_examples} is invalid; expected at least 1")
        if self.ig_steps < 1:
            raise UserError(f"--ig-steps {self.ig_steps} is invalid; expected at least 1")
        if self.ig not in ("inputs", "activations"):
            from subcircuit.errors import unknown

            raise unknown("EAP-IG variant", self.ig, ("inputs", "activations"))
        if self.selection not in ("top", "greedy"):
            from subcircuit.errors import unknown

            raise unknown("selection", self.selection, ("top", "greedy"))
        if self.ablation not in ABLATIONS:
            from subcircuit.errors import unknown

            raise unknown("ablation", self.ablation, ABLATIONS)
        get_method(self.method)


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


def run_header(options: DiscoverOptions, model: str, task: str) -> dict[str, Any]:
    """What identifies a run for resuming: every option but the device, the model and the task."""
    header = {k: v for k, v in asdict(options).items() if k not in ("device", "force")}
    header.update(model=model, task=task)
    return header


def holds_run(folder: str | Path) -> bool:
    """Whether `folder` holds a run (finished or interrupted)."""
    return any((Path(folder) / f).exists() for f in RUN_FILES)


def check_scores(scores: torch.Tensor, graph, method: str) -> None:
    """A UserError naming the first edge whose score is NaN or infinite (never write those)."""
    bad = (~torch.isfinite(scores.detach().float().cpu())).nonzero().flatten()
    if len(bad):
        name = graph.edges[int(bad[0])]
        sender, receiver = name.split("->")
        raise UserError(f"{method}: the score of edge {name} (receiver {receiver!r}, sender {sender!r}) is "
                        f"{float(scores.flatten()[int(bad[0])])} ({len(bad)} non-finite scores); the patched model's "
                        "metric is not finite, so no circuit is written")


def check_results(results: dict[str, Any], method: str) -> None:
    """A UserError when the full, circuit or empty graph's metric is NaN or infinite."""
    for key in ("metric_full_model", "metric_circuit", "metric_empty_circuit"):
        v = results.get(key)
        if isinstance(v, float) and not math.isfinite(v):
            raise UserError(f"{method}: {key} is {v}; the patched model's metric is not finite, so no circuit is "
                            "written (check the model, the ablation and the metric)")


def _trace_path(out: Path | None) -> Path | None:
    return None if out is None else out / TRACE_FILE


def _save_trace(path: Path, header: dict[str, Any], trace: list[Trial]) -> None:
    rows = [[t.receiver, t.sender, t.loss, t.removed] for t in trace]
    atomic_write_text(path, json.dumps({"header": header, "trials": rows}))


def _read_checkpoint(path: Path, header: dict[str, Any]) -> dict[str, Any]:
    """An ACDC checkpoint file, checked against the run's options."""
    try:
        d = json.loads(path.read_text())
        if d["header"] != header:
            diff = sorted(k for k in set(header) | set(d["header"]) if header.get(k) != d["header"].get(k))
            raise UserError(f"cannot resume from {path}: the run's options differ ({', '.join(diff)})")
        return d
    except (KeyError, ValueError, TypeError) as e:
        if isinstance(e, UserError):
            raise
        raise UserError(f"cannot resume: {path} is damaged ({e})") from e


def _trials(rows: Any, path: Path) -> list[Trial]:
    try:
        return [Trial(int(r), int(s), float(loss), bool(rm)) for r, s, loss, rm in rows]
    except (ValueError, TypeError) as e:
        raise UserError(f"cannot resume: {path} is damaged ({e})") from e


def _load_trace(path: Path, header: dict[str, Any]) -> list[Trial]:
    return _trials(_read_checkpoint(path, header).get("trials"), path)  # missing: damaged


def _save_search(path: Path, header: dict[str, Any], runs: dict[float, list[Trial]]) -> None:
    """The checkpoint of an `--edges N` search: every run's trace, keyed by τ (repr, exact)."""
    search = {repr(tau): [[t.receiver, t.sender, t.loss, t.removed] for t in tr] for tau, tr in runs.items()}
    atomic_write_text(path, json.dumps({"header": header, "trials": [], "search": search}))


def _load_search(path: Path, header: dict[str, Any]) -> dict[float, list[Trial]]:
    search = _read_checkpoint(path, header).get("search", {})
    if not isinstance(search, dict):
        raise UserError(f"cannot resume: {path} is damaged (search is not a mapping)")
    try:
        return {float(tau): _trials(rows, path) for tau, rows in search.items()}
    except ValueError as e:
        raise UserError(f"cannot resume: {path} is damaged ({e})") from e


def options_from_trace(folder: str | Path, device: str = "cpu",
                       force: bool = False) -> tuple[DiscoverOptions, str, str]:
    """(options, model, task) of the interrupted run in `folder`: from the header of its ACDC trace
    or of its training checkpoint (edge-pruning, sp)."""
    from subcircuit.checkpoint import read_header

    folder = Path(folder)
    path = folder / TRACE_FILE
    if path.exists():
        try:
            header = dict(json.loads(path.read_text())["header"])
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"cannot resume: {path} is damaged ({e})") from e
    elif (folder / CHECKPOINT_FILE).exists():
        path = folder / CHECKPOINT_FILE
        header = read_header(path)
        header.pop("train", None)
    else:
        raise UserError(f"nothing to resume in {str(folder)!r}: no {TRACE_FILE} or {CHECKPOINT_FILE}")
    try:
        model, task = header.pop("model"), header.pop("task")
        return DiscoverOptions(**header, device=device, force=force), model, task
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"cannot resume: {path} is damaged ({e})") from e


def run_acdc(problem: Problem, threshold: float, abs_value: bool = False, trace: list[Trial] | None = None,
             progress: ProgressFn = _no_progress, checkpoint=None, reference: bool = False, initial_mask=None):
    fn = acdc_reference if reference else acdc_fast
    return fn(problem, threshold, abs_value, trace=trace, progress=progress, on_receiver=checkpoint,
              initial_mask=initial_mask)


def acdc_for_size(problem: Problem, n_edges: int, abs_value: bool = False, progress: ProgressFn = _no_progress,
                  max_runs: int = 12, initial_mask=None, saved: dict[float, list[Trial]] | None = None,
                  checkpoint: Callable[[dict[float, list[Trial]]], None] | None = None):
    """The largest ACDC circuit with at most `n_edges` edges, searching τ on a log scale.

    Each run replays the trace of the run with the nearest τ until their decisions diverge, so
    later runs cost a fraction of the first. `checkpoint({τ: trace})` is called after every
    receiver of every run with the traces so far (the current run's partial); passing them back
    as `saved` resumes the search where it stopped (the τ sequence is deterministic, and a run
    with its own trace replays it without forward passes). Returns (state, τ, runs: [(τ, size)])."""
    if n_edges > problem.graph.n_edges:
        raise UserError(f"--edges {n_edges} is larger than the graph ({problem.graph.n_edges} edges)")
    runs: dict[float, Any] = {}
    saved = saved or {}

    def run(tau: float):
        near = min(runs, key=lambda t: abs(math.log(t) - math.log(tau)), default=None)
        trace = saved.get(tau, None if near is None else runs[near].trace)

        def on_receiver(st) -> None:
            if checkpoint is not None:
                checkpoint({**{t: r.trace for t, r in runs.items()}, tau: st.trace})

        st = acdc_fast(problem, tau, abs_value, trace=trace, progress=progress, on_receiver=on_receiver,
                       initial_mask=initial_mask)
        runs[tau] = st
        return int(st.mask.sum())

    lo, hi = None, None  # lo: size > n (τ too small); hi: size <= n
    tau = 1e-3
    for _ in range(max_runs):
        size = run(tau)
        if size <= n_edges:
            hi = tau
            if lo is not None:
                break
            tau /= 10
        else:
            lo = tau
            if hi is not None:
                break
            tau *= 10
        if tau < 1e-9 or tau > 1e6:
            break
    for _ in range(max_runs):
        if lo is None or hi is None or hi / lo < 1.05:
            break
        mid = math.sqrt(lo * hi)
        if run(mid) <= n_edges:
            hi = mid
        else:
            lo = mid
    if hi is None:
        raise UserError(f"no threshold gives a circuit of at most {n_edges} edges")
    return runs[hi], hi, sorted((t, int(s.mask.sum())) for t, s in runs.items())


def discover(
    model: str | LoadedModel,
    task: str | Path,
    options: DiscoverOptions = DiscoverOptions(),
    out: str | Path | None = None,
    resume: bool = False,
    progress: ProgressFn = _no_progress,
    report: bool = True,
    candidate_scores: torch.Tensor | None = None,
) -> Circuit:
    """Run a discovery method and return (and with `out`, write) the circuit; with `out` and
    `report`, also its head roles, `circuit.svg` and `report.html` (`subcircuit.report`).

    `candidate_scores` [n_edges]: EAP-IG scores already computed for the same model, task, prompts
    and EAP-IG options (e.g. an `eap-ig` run's circuit.json); `--candidates` then selects from them
    instead of running EAP-IG again."""
    options.validate()
    t0 = time.perf_counter()
    if not isinstance(model, LoadedModel):  # before loading: the device, then the memory estimate
        from subcircuit.memory import check_memory
        from subcircuit.models.loading import check_device

        check_device(options.device)
        check_memory(model, task, options.n_examples, options.method, options.granularity, options.device,
                     options.force)
    loaded = model if isinstance(model, LoadedModel) else load(model, options.device)
    t_load = time.perf_counter() - t0
    task_obj = get_task(task, loaded, options.n_examples, options.seed)
    metric_name = options.metric or task_obj.metric or "kl"
    metric = get_metric(metric_name)
    graph = build_graph(loaded.cfg, options.granularity)
    if options.edges is not None and options.edges > graph.n_edges and options.method != "acdc":
        raise UserError(f"--edges {options.edges} is invalid; expected 1..{graph.n_edges}")  # before any work
    torch.manual_seed(options.seed)
    problem = make_problem(loaded.model, graph, task_obj, metric, options.ablation)
    out_dir = Path(out) if out is not None else None
    t1 = time.perf_counter()
    params: dict[str, Any] = {}
    info: dict[str, Any] = {}
    header = run_header(options, str(model) if isinstance(model, str | Path) else loaded.name, str(task))
    if options.method == "acdc":
        tpath = _trace_path(out_dir)
        trace = _load_trace(tpath, header) if resume and tpath is not None and tpath.exists() else None
        if resume and trace is None:
            log.warning("nothing to resume in %s; starting afresh", out_dir)
        checkpoint = None if tpath is None else (lambda st: _save_trace(tpath, header, st.trace))
        initial = None
        if options.candidates is not None:
            from subcircuit.methods.candidates import candidate_mask

            if candidate_scores is not None:
                from subcircuit.selection import select_top

                if tuple(candidate_scores.shape) != (graph.n_edges,):
                    raise UserError(f"candidate scores have shape {tuple(candidate_scores.shape)}; "
                                    f"expected ({graph.n_edges},)")
                ranked = candidate_scores.abs() if options.abs_value else candidate_scores
                initial = graph.from_flat(select_top(ranked, options.candidates).float())
            else:
                initial, _ = candidate_mask(problem, options.candidates, options.abs_value, options.ig_steps,
                                            options.ig, progress)  # deterministic, so a resumed run gets the same
            info["candidates"] = options.candidates
        if options.edges is not None:
            saved = _load_search(tpath, header) if resume and tpath is not None and tpath.exists() else None
            state, tau, runs = acdc_for_size(
                problem, options.edges, options.abs_value, progress, initial_mask=initial, saved=saved,
                checkpoint=None if tpath is None else (lambda traces: _save_search(tpath, header, traces)))
            params = {"threshold": tau, "target_edges": options.edges, "abs": options.abs_value}
            info["tau_search"] = [{"threshold": t, "n_edges": n} for t, n in runs]
        else:
            tau = 0.01 if options.threshold is None else float(options.threshold)
            state = run_acdc(problem, tau, options.abs_value, trace, progress, checkpoint, initial_mask=initial)
            params = {"threshold": tau, "abs": options.abs_value}
        if options.candidates is not None:
            params.update(candidates=options.candidates, ig_steps=options.ig_steps, ig=options.ig)
        scores = graph.to_flat(state.scores)
        keep = graph.to_flat(state.mask.cpu() != 0)
        info.update(n_trials=len(state.trace), n_skipped=state.skipped, forward_configs=state.forward_configs)
    else:
        from subcircuit.methods.edge_pruning import target_edges
        from subcircuit.selection import prune_disconnected, select_greedy, select_threshold, select_top

        spec = get_method(options.method)
        kwargs = method_kwargs(spec.fn, options)
        if out_dir is not None and "checkpoint" in inspect.signature(spec.fn).parameters:
            from subcircuit.checkpoint import TrainingCheckpoint

            kwargs["checkpoint"] = TrainingCheckpoint(out_dir / CHECKPOINT_FILE, header, CHECKPOINT_EVERY, resume)
        res = spec.fn(problem, progress=progress, **kwargs)
        scores = res.scores
        keep = res.in_circuit
        params = dict(res.params)
        if keep is None:
            if options.threshold is not None:
                keep = select_threshold(scores, options.threshold)
                params["threshold"] = options.threshold
            else:
                n = target_edges(graph.n_edges, options.edges, options.sparsity)
                keep = select_greedy(graph, scores, n) if options.selection == "greedy" else select_top(scores, n)
                params.update(edges=n, selection=options.selection)
            if options.prune:
                before = int(keep.sum())
                keep = prune_disconnected(graph, keep)
                params["prune"] = True
                info["n_pruned_disconnected"] = before - int(keep.sum())
        info.update({k: v for k, v in res.info.items() if k != "node_scores"})
    t_method = time.perf_counter() - t1
    check_scores(scores, graph, options.method)
    params.update(seed=options.seed, n_examples=task_obj.n)
    results = measure(problem, graph.from_flat(keep.float()))
    check_results(results, options.method)
    results.update(n_edges_total=graph.n_edges, n_edges_in_circuit=int(keep.sum()))
    results.update({k: v for k, v in info.items() if isinstance(v, int | float | list)})
    circuit = Circuit(
        model=loaded.name, task=str(task), method=options.method, granularity=options.granularity,
        ablation=options.ablation, metric=metric_name, params=params,
        edges=edge_records(graph.edges, scores, keep),
        results=results,
        timings_s={"load": round(t_load, 3), "method": round(t_method, 3),
                   "total": round(time.perf_counter() - t0, 3)},
        versions=versions(),
        options=asdict(options),
    )
    if out_dir is not None:
        circuit.save(out_dir)
        if report:
            from subcircuit.report import write_report

            write_report(out_dir, circuit, loaded=loaded, task=task_obj)
    return circuit


def method_kwargs(fn, options: DiscoverOptions) -> dict[str, Any]:
    """The options a registered score method accepts, by its signature (names differ per method:
    `steps` is EAP-IG's interpolation steps but Edge Pruning's / SP's optimisation steps)."""
    accepted = inspect.signature(fn).parameters
    wanted: dict[str, Any] = {"seed": options.seed, "edges": options.edges, "sparsity": options.sparsity,
                              "ig": options.ig}
    if options.method == "eap-ig":
        wanted["steps"] = options.ig_steps
    elif options.train_steps is not None:
        wanted["steps"] = options.train_steps
    return {k: v for k, v in wanted.items() if k in accepted and v is not None}
