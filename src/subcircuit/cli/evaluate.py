"""`subcircuit evaluate`, `compare` and `sweep`: how good a run is (faithfulness, curves, ROC/AUC
against a reference circuit), several runs side by side, and many runs of one method over
thresholds or sizes (one folder per run plus summary.json/summary.md; the method options are
generated from the registry, as for `discover`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from subcircuit.cli._method_flags import given_values, refuse_unused, registry_flags, registry_order
from subcircuit.cli._options import (
    AblationOpt,
    AgainstOpt,
    DeviceOpt,
    DtypeOpt,
    ForceOpt,
    GranularityOpt,
    NEvalOpt,
    NExamplesOpt,
    OffloadOpt,
    OutOpt,
    RunDirArg,
    SeedOpt,
    number_list,
)
from subcircuit.cli._output import out, status
from subcircuit.cli._progress import edge_progress
from subcircuit.errors import UserError


def evaluate(
    run_dir: RunDirArg,
    against: AgainstOpt = None,
    curve: Annotated[bool, typer.Option("--curve", help="Also measure the faithfulness curve, CPR and CMD "
                                                        "(re-runs the task; score-based methods).")] = False,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = None,
    offload: OffloadOpt = None,
    prompts: Annotated[str, typer.Option("--prompts", help="heldout (the run's held-out prompts, measured now if the "
                                                           "run has none recorded) or discovery.")] = "heldout",
    n_eval: NEvalOpt = None,
) -> None:
    """Faithfulness of a run (on its held-out prompts unless --prompts discovery) and, against a
    reference circuit, edge/node TPR and FPR."""
    from subcircuit.errors import UserError
    from subcircuit.evaluation.compare import evaluate_run
    from subcircuit.evaluation.tables import fmt

    if prompts not in ("heldout", "discovery"):
        raise UserError(f"--prompts {prompts!r} is invalid; valid: heldout, discovery")
    with status(f"evaluating {run_dir} ..."):
        ev = evaluate_run(run_dir, against, curve, device, prompts, dtype, offload)
        held = dict(ev.circuit.results)
        if prompts == "heldout" and (n_eval is not None or "n_examples_heldout" not in held):
            from subcircuit.evaluation.heldout import measure_run

            held.update(measure_run(ev.circuit, device, n_eval, dtype, offload))
    c, r = ev.circuit, ev.circuit.results
    o = out()
    o.print(f"[bold]{c.method}[/] on {c.model} / {c.task} ({c.granularity}, {c.ablation} ablation, metric "
            f"{c.metric}): {ev.n_edges} of {r.get('n_edges_total', len(c.edges))} edges")
    o.print(f"metric: full model {fmt(r.get('metric_full_model'))}, circuit {fmt(r.get('metric_circuit'))}, "
            f"empty {fmt(r.get('metric_empty_circuit'))}; faithfulness {fmt(r.get('faithfulness'), 3)} "
            f"(the {c.params.get('n_examples', '?')} discovery prompts)")
    if prompts == "heldout":
        o.print(f"held-out ({held['n_examples_heldout']} prompts): full model {fmt(held['metric_full_model_heldout'])}, "
                f"circuit {fmt(held['metric_circuit_heldout'])}, empty {fmt(held['metric_empty_circuit_heldout'])}; "
                f"faithfulness {fmt(held['faithfulness_heldout'], 3)}")
    if ev.curve:
        o.print(f"CPR {ev.curve['cpr']:.4f} (higher is better), CMD {ev.curve['cmd']:.4f} (lower is better)")
    if ev.edge is None:
        o.print("no reference circuit for this model and task (give --against DIR2 or a reference name)")
        return
    o.print(f"against {escape(ev.reference)}:")
    for level, rr in (("edges", ev.edge), ("nodes", ev.node)):
        o.print(f"  {level}: TPR {fmt(rr['tpr'], 3)}, FPR {fmt(rr['fpr'], 3)} "
                f"(TP {rr['tp']}, FP {rr['fp']}, FN {rr['fn']}, TN {rr['tn']})")
    if ev.auc_edge is not None:
        o.print(f"  ROC AUC of the score ranking: edges {ev.auc_edge:.3f}, nodes {ev.auc_node:.3f}")


def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run folders (or sweep folders: all their runs).")],
    against: AgainstOpt = None,
    plots: Annotated[Path | None, typer.Option("--plots", help="Folder for faithfulness.png and roc.png "
                                                               "(default: the first folder's parent).")] = None,
    curves: Annotated[bool, typer.Option("--curves/--no-curves", help="Measure faithfulness curves, CPR, CMD "
                                                                      "(re-runs the task).")] = True,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = None,
) -> None:
    """Compare runs: a markdown table (faithfulness, CPR/CMD, TPR/FPR, AUC) and PNG plots."""
    from subcircuit.evaluation.compare import compare_runs

    plot_dir = plots if plots is not None else (run_dirs[0].parent if run_dirs else Path("."))
    with status("evaluating runs ..."):
        _, table, written = compare_runs(list(run_dirs), against, curves, plot_dir, device, dtype)
    o = out()
    o.print(table, markup=False, highlight=False)
    for p in written:
        o.print(f"wrote {p}", markup=False)


def sweep_flags() -> Sequence[Any]:
    """The generated flags of `sweep`: every method option but the selection's (each run's τ or
    size comes from the sweep, its circuit is the top k)."""
    return registry_flags(selection=False)


def sweep(
    ctx: typer.Context,
    out_dir: OutOpt,
    plan_arg: Annotated[Path | None, typer.Argument(metavar="PLAN", help="A plan file (TOML or YAML): a grid of "
                                                    "runs (docs/sweeps.md); same as --plan.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Short name (see `subcircuit models`), local "
                                              "folder or Hugging Face id (without a plan).")] = None,
    task: Annotated[str | None, typer.Option("--task", "-t", help="Built-in task name or a task file (JSONL) "
                                             "(without a plan).")] = None,
    method: Annotated[str, typer.Option("--method", help="acdc (sweeps --thresholds) or another method "
                                                         "(sweeps --sizes).")] = "acdc",
    thresholds: Annotated[str | None, typer.Option("--thresholds", help="Comma-separated τ values "
                                                                        "(default 1e-4 … 1).")] = None,
    sizes: Annotated[str | None, typer.Option("--sizes", help="Comma-separated circuit sizes in edges "
                                                              "(default: MIB's edge fractions).")] = None,
    metric: Annotated[str | None, typer.Option("--metric", help="kl, logit-diff, prob-diff, nll, ...")] = None,
    ablation: AblationOpt = "corrupted",
    granularity: GranularityOpt = "heads-qkv",
    n_examples: NExamplesOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = None,
    offload: OffloadOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="Keep the finished runs in --out, finish the others.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a sweep already in --out.")] = False,
    force: ForceOpt = False,
    plan: Annotated[Path | None, typer.Option("--plan", help="A plan file (TOML or YAML): a grid of models, "
                                              "tasks, methods and options (docs/sweeps.md).")] = None,
    backend: Annotated[str, typer.Option("--backend", help="local (this machine) or ray (a Ray cluster).")] = "local",
    address: Annotated[str | None, typer.Option("--address", help="Ray cluster address (`ray start --head` prints "
                                                "it; auto: the local one); none starts a local Ray.")] = None,
    n_eval: NEvalOpt = None,
    files: Annotated[str, typer.Option("--files", help="Ray: shared (workers write into --out on shared "
                                       "storage) or driver (results sent back and written here).")] = "shared",
) -> int | None:
    """Run a method over several thresholds or sizes, or the runs of a plan file, on this machine or a
    Ray cluster: one folder per run plus sweep.json and summary.md."""
    from subcircuit.methods import get_method
    from subcircuit.runs.options import DiscoverOptions
    from subcircuit.runs.sweep import sweep as run_sweep

    flags = sweep_flags()
    given = given_values(ctx, flags)
    if plan is not None and plan_arg is not None and plan != plan_arg:
        raise UserError("give the plan once (PLAN or --plan)")
    plan = plan or plan_arg
    if backend not in ("local", "ray"):
        raise UserError(f"unknown backend {backend!r}; valid: local, ray")
    if plan is not None or backend == "ray":
        from subcircuit.cli.plans import plan_of_flags, run_plan_command
        from subcircuit.runs.plan import plan_from_dict, read_plan

        if resume or overwrite:
            raise UserError("a plan resumes by itself (finished runs are skipped); no --resume or --overwrite")
        if plan is not None:
            if model is not None or task is not None or given or thresholds or sizes:
                raise UserError("--plan takes models, tasks, methods and their options from the plan file; "
                                "drop --model, --task, --thresholds, --sizes and method options")
            runs = read_plan(plan)
        else:
            if model is None or task is None:
                raise UserError("--model and --task are needed (or give a plan file)")
            get_method(method)
            refuse_unused(given, flags, method, registry_order(method, selection=False))
            run = {"metric": metric, "ablation": ablation, "granularity": granularity, "n_examples": n_examples,
                   "seed": seed, "device": device}
            runs = plan_from_dict(plan_of_flags(model, task, method, number_list(thresholds, float, "--thresholds"),
                                                number_list(sizes, int, "--sizes"), run, given), "flags")
        return run_plan_command(runs, out_dir, backend, address, files)
    if address is not None:
        raise UserError("--address is for --backend ray")
    if model is None or task is None:
        raise UserError("--model and --task are needed (or give a plan file)")
    get_method(method)
    refuse_unused(given, flags, method, registry_order(method, selection=False))
    opts = DiscoverOptions.build(method, metric=metric, ablation=ablation, granularity=granularity,
                                 n_examples=n_examples, seed=seed, device=device, dtype=dtype,
                                 offload=offload, n_eval=n_eval, **given)
    with edge_progress("sweep", "sweep") as report:
        res = run_sweep(model, task, opts, number_list(thresholds, float, "--thresholds"),
                        number_list(sizes, int, "--sizes"), out_dir, report, resume=resume, overwrite=overwrite,
                        force=force)
    o = out()
    o.print((out_dir / "summary.md").read_text(), markup=False, highlight=False)
    o.print(f"wrote {len(res.circuits)} runs and {out_dir / 'summary.json'}", markup=False)
    return None
