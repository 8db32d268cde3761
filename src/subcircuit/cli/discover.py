"""`subcircuit discover`: find the circuit of a task in a model; writes DIR/circuit.json (and the
report). `--resume DIR` finishes an interrupted run from its checkpoint (the run's options are
read back from it, so no other option but `--device` and `--force` may be given); `--overwrite`
replaces a finished run.

The method options (`--threshold`, `--edges`, `--abs`, `--ig-steps`, ...) are generated from the
options dataclasses of the registered methods (`_method_flags.registry_flags`); a flag the chosen
method does not take is refused with one line (exit 2).

Progress: a rich bar on a terminal, otherwise a plain line on stderr every ~30 s (`_progress`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from subcircuit.cli._method_flags import given_values, refuse_unused, registry_flags, registry_order
from subcircuit.cli._options import (
    AblationOpt,
    BootstrapOpt,
    DeviceOpt,
    DtypeOpt,
    ForceOpt,
    GranularityOpt,
    NEvalOpt,
    NExamplesOpt,
    OffloadOpt,
    PositionsOpt,
    SeedOpt,
)
from subcircuit.cli._output import out
from subcircuit.cli._progress import edge_progress
from subcircuit.errors import UserError

# the command's own options that --resume DIR takes from the run's checkpoint instead
RESUME_TAKES = ("model", "task", "out_dir", "method", "metric", "ablation", "granularity", "n_examples", "seed",
                "overwrite", "positions")


def method_flags() -> Sequence[Any]:
    """The generated flags of `discover` (`method_flags_command` calls this when it parses)."""
    return registry_flags()


def given_own(ctx: typer.Context, names: Sequence[str]) -> list[str]:
    """The flags of the command's own options among `names` that were given on the command line."""
    by_name = {p.name: p for p in ctx.command.params}
    return [by_name[n].opts[0] for n in names
            if (src := ctx.get_parameter_source(n)) is not None and src.name == "COMMANDLINE"]


def refuse_with_resume(ctx: typer.Context, given: dict[str, Any], flags: Sequence[Any]) -> None:
    """--resume DIR reads the run's options from DIR: any option that would change them is refused."""
    by_name = {f.name: f.flag for f in flags}
    bad = given_own(ctx, RESUME_TAKES) + [by_name[n] for n in given]
    if bad:
        raise UserError(f"--resume takes the run's options from its checkpoint; {', '.join(bad)} cannot be "
                        "given with it (only --device, --force)")


def discover(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Short name, local folder or Hugging Face id.")] = None,
    task: Annotated[str | None, typer.Option("--task", "-t", help="Built-in task name or a task file (JSONL).")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (circuit.json ...).")] = None,
    method: Annotated[str, typer.Option("--method", help="acdc, eap, eap-ig, edge-pruning, hisp, sp, node-patching, random.")] = "acdc",
    metric: Annotated[str | None, typer.Option("--metric", help="kl, logit-diff, prob-diff, nll (default: the task's).")] = None,
    ablation: AblationOpt = "corrupted",
    granularity: GranularityOpt = "heads-qkv",
    positions: PositionsOpt = None,
    n_examples: NExamplesOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = None,
    offload: OffloadOpt = None,
    resume: Annotated[Path | None, typer.Option("--resume", help="Resume the interrupted run in this folder.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a run already in --out.")] = False,
    force: ForceOpt = False,
    n_eval: NEvalOpt = None,
    bootstrap: BootstrapOpt = None,
) -> None:
    """Find the circuit of a task in a model; writes DIR/circuit.json."""
    from subcircuit.methods import get_method
    from subcircuit.runs.discover import RUN_FILES, holds_run, options_from_trace
    from subcircuit.runs.discover import discover as run_discover
    from subcircuit.runs.options import DiscoverOptions

    flags = method_flags()
    given = given_values(ctx, flags)
    if resume is not None:
        refuse_with_resume(ctx, given, flags)
        out_dir = resume
        opts, model, task = options_from_trace(resume, device, force)
        if n_eval is not None:  # not part of the run's header: it does not change the circuit
            opts = opts.updated(n_eval=n_eval)
    else:
        if model is None or task is None or out_dir is None:
            missing = [n for n, v in (("--model", model), ("--task", task), ("--out", out_dir)) if v is None]
            raise UserError(f"missing option(s) {', '.join(missing)} (or give --resume DIR)")
        get_method(method)  # an unknown method first, then the flags it does not take
        refuse_unused(given, flags, method, registry_order(method))
        opts = DiscoverOptions.build(method, metric=metric, ablation=ablation, granularity=granularity,
                                     n_examples=n_examples, seed=seed, device=device, force=force, dtype=dtype,
                                     offload=offload, positions=positions,
                                     n_eval=n_eval, **given)
        if holds_run(out_dir):
            if not overwrite:
                raise UserError(f"output folder {str(out_dir)!r} already holds a run; use --overwrite or --resume")
            for f in RUN_FILES:
                (out_dir / f).unlink(missing_ok=True)
    with edge_progress("discover", "edges tried") as report:
        circuit = run_discover(model, task, opts, out=out_dir, resume=resume is not None, progress=report,
                               bootstrap=bootstrap)
    r = circuit.results
    c = out()
    c.print(f"[bold]{circuit.method}[/] on {circuit.model} / {circuit.task} ({circuit.granularity}, "
            f"{circuit.ablation} ablation, metric {circuit.metric}): "
            f"{r['n_edges_in_circuit']} of {r['n_edges_total']} edges")
    faith = r.get("faithfulness")
    c.print(f"metric: full model {r['metric_full_model']:.4g}, circuit {r['metric_circuit']:.4g}, "
            f"empty {r['metric_empty_circuit']:.4g}; faithfulness {'n/a' if faith is None else f'{faith:.3f}'}")
    held = r.get("faithfulness_heldout")
    if "n_examples_heldout" in r:
        c.print(f"held-out ({r['n_examples_heldout']} prompts): circuit {r['metric_circuit_heldout']:.4g}; "
                f"faithfulness {'n/a' if held is None else f'{held:.3f}'}")
    bs = r.get("bootstrap")
    if isinstance(bs, dict):
        from subcircuit.evaluation.tables import fmt

        core = bs["stable_core"]
        c.print(f"bootstrap ({bs['n_reruns']} reruns): size {fmt(bs['size_mean'], 4)} "
                f"[{', '.join(fmt(x, 4) for x in bs['size_interval'] or [])}], held-out faithfulness "
                f"{fmt(bs['faithfulness_heldout_mean'], 3)} [{', '.join(fmt(x, 3) for x in bs['faithfulness_heldout_interval'] or [])}], "
                f"Jaccard {fmt(bs['jaccard_mean'], 3)}; stable core (>= 90%): {core['n_edges']} edges, "
                f"faithfulness {fmt(core['faithfulness'], 3)}, held-out {fmt(core.get('faithfulness_heldout'), 3)}")
    if "threshold" in circuit.params:
        c.print(f"threshold τ = {circuit.params['threshold']:.4g}; time {circuit.timings_s['total']:.1f} s")
    c.print(f"wrote {out_dir / 'circuit.json'}")
    if (out_dir / "report.html").exists():
        c.print(f"wrote {out_dir / 'circuit.svg'} and {out_dir / 'report.html'}")
