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

import logging
import math
import platform
import time
from dataclasses import asdict, dataclass, fields
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from subcircuit.circuit import Circuit, edge_records
from subcircuit.errors import UserError
from subcircuit.evaluation.faithfulness import measure
from subcircuit.files import read_header
from subcircuit.graph import build_graph
from subcircuit.methods import METHODS, Context, MethodSpec, ProgressFn, get_method, make_problem, no_progress
from subcircuit.methods.acdc import TRACE_FILE, read_trace_header, scores_key
from subcircuit.methods.base import build_options, refuse_unknown
from subcircuit.methods.selection import SelectOptions, check_select, select_circuit
from subcircuit.methods.training import CHECKPOINT_FILE
from subcircuit.models import LoadedModel, load
from subcircuit.patching import ABLATIONS
from subcircuit.tasks import get_metric, get_task

log = logging.getLogger(__name__)
# a folder holding any of these holds a run: circuit.json, or a method's checkpoint file
RUN_FILES = ("circuit.json", *sorted({f for spec in METHODS.values() for f in spec.checkpoint_files}))
RUN_FIELDS = ("method", "metric", "ablation", "granularity", "n_examples", "seed", "device", "force")


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


def method_options(options: DiscoverOptions) -> tuple[MethodSpec, Any, SelectOptions | None]:
    """(spec, the method's options, the selection of a score method's circuit or None) from the flat
    options: every field that is not a run-level one and not at its default goes to the method's
    options or, for a score method, to its `SelectOptions`. A field the method does not take ->
    UserError naming the flag (one line)."""
    spec = get_method(options.method)
    defaults = {f.name: f.default for f in fields(DiscoverOptions)}
    given = {k: v for k, v in asdict(options).items() if k not in RUN_FIELDS and v != defaults[k]}
    if spec.selects_circuit:
        return spec, build_options(spec.options, given, spec.name), None
    refuse_unknown(given, (spec.options, SelectOptions), spec.name)
    select_names = {f.name for f in fields(SelectOptions)}
    select = SelectOptions(**{k: v for k, v in given.items() if k in select_names})
    opts = build_options(spec.options, {k: v for k, v in given.items() if k not in select_names}, spec.name)
    return spec, opts, select


def options_from_trace(folder: str | Path, device: str = "cpu",
                       force: bool = False) -> tuple[DiscoverOptions, str, str]:
    """(options, model, task) of the interrupted run in `folder`: from the header of its ACDC trace
    or of its training checkpoint (edge-pruning, sp)."""
    folder = Path(folder)
    path = folder / TRACE_FILE
    if path.exists():
        header = read_trace_header(path)
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


def discover(
    model: str | LoadedModel,
    task: str | Path,
    options: DiscoverOptions = DiscoverOptions(),
    out: str | Path | None = None,
    resume: bool = False,
    progress: ProgressFn = no_progress,
    report: bool = True,
    candidate_scores: torch.Tensor | None = None,
) -> Circuit:
    """Run a discovery method and return (and with `out`, write) the circuit; with `out` and
    `report`, also its head roles, `circuit.svg` and `report.html` (`subcircuit.report`).

    `candidate_scores` [n_edges]: EAP-IG scores already computed for the same model, task, prompts
    and EAP-IG options (e.g. an `eap-ig` run's circuit.json); `--candidates` then selects from them
    instead of running EAP-IG again."""
    options.validate()
    spec, method_opts, select = method_options(options)
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
    if select is not None:
        check_select(graph, select)  # before any work
    torch.manual_seed(options.seed)
    problem = make_problem(loaded.model, graph, task_obj, metric, options.ablation)
    out_dir = Path(out) if out is not None else None
    t1 = time.perf_counter()
    header = run_header(options, str(model) if isinstance(model, str | Path) else loaded.name, str(task))
    if resume and (out_dir is None or not any((out_dir / f).exists() for f in spec.checkpoint_files)):
        log.warning("nothing to resume in %s; starting afresh", out_dir)
    cache: dict[Any, Any] = {}
    if candidate_scores is not None:
        if tuple(candidate_scores.shape) != (graph.n_edges,):
            raise UserError(f"candidate scores have shape {tuple(candidate_scores.shape)}; expected ({graph.n_edges},)")
        cache[scores_key(options.ig_steps, options.ig)] = candidate_scores
    ctx = Context(progress, options.seed, out_dir, header, resume, cache)
    res = spec.fn(problem, method_opts, ctx)
    scores, keep, params = res.scores, res.in_circuit, dict(res.params)
    info: dict[str, Any] = {}
    if keep is None:
        keep, chosen, info = select_circuit(graph, scores, select or SelectOptions())
        params.update(chosen)
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
            from subcircuit.runs.report import report_run

            report_run(out_dir, circuit, loaded=loaded, task=task_obj)
    return circuit
