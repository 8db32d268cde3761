"""`subcircuit discover`: find the circuit of a task in a model; writes DIR/circuit.json (and the
report). `--resume DIR` finishes an interrupted run from its checkpoint (the run's options are
read back from it); `--overwrite` replaces a finished run.

Progress: a rich bar on a terminal, otherwise a plain line on stderr every ~30 s (`_progress`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from subcircuit.cli._options import (
    AblationOpt,
    AbsOpt,
    DeviceOpt,
    ForceOpt,
    GranularityOpt,
    NExamplesOpt,
    SeedOpt,
)
from subcircuit.cli._output import out
from subcircuit.cli._progress import edge_progress
from subcircuit.errors import UserError


def discover(
    model: Annotated[str | None, typer.Option("--model", "-m", help="Short name, local folder or Hugging Face id.")] = None,
    task: Annotated[str | None, typer.Option("--task", "-t", help="Built-in task name or a task file (JSONL).")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (circuit.json ...).")] = None,
    method: Annotated[str, typer.Option("--method", help="acdc, eap, eap-ig, edge-pruning, hisp, sp, node-patching, random.")] = "acdc",
    threshold: Annotated[float | None, typer.Option("--threshold", help="ACDC's τ (default 0.01).")] = None,
    edges: Annotated[int | None, typer.Option("--edges", help="Target circuit size (ACDC searches τ).")] = None,
    metric: Annotated[str | None, typer.Option("--metric", help="kl, logit-diff, prob-diff, nll (default: the task's).")] = None,
    ablation: AblationOpt = "corrupted",
    granularity: GranularityOpt = "heads-qkv",
    n_examples: NExamplesOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "cpu",
    abs_value: AbsOpt = False,
    resume: Annotated[Path | None, typer.Option("--resume", help="Resume the interrupted run in this folder.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a run already in --out.")] = False,
    sparsity: Annotated[float | None, typer.Option("--sparsity", help="Fraction of edges removed (score methods, edge-pruning).")] = None,
    candidates: Annotated[int | None, typer.Option("--candidates", help="ACDC: try only the top K edges by EAP-IG.")] = None,
    ig_steps: Annotated[int, typer.Option("--ig-steps", help="EAP-IG interpolation steps.")] = 5,
    ig: Annotated[str, typer.Option("--ig", help="EAP-IG variant: inputs or activations.")] = "inputs",
    selection: Annotated[str, typer.Option("--selection", help="Score methods: top or greedy (grow from the logits).")] = "top",
    prune: Annotated[bool, typer.Option("--prune", help="Score methods: drop edges not on a path input -> logits.")] = False,
    train_steps: Annotated[int | None, typer.Option("--train-steps", help="edge-pruning / sp optimisation steps.")] = None,
    force: ForceOpt = False,
) -> None:
    """Find the circuit of a task in a model; writes DIR/circuit.json."""
    from subcircuit.discover import RUN_FILES, DiscoverOptions, holds_run, options_from_trace
    from subcircuit.discover import discover as run_discover

    if resume is not None:
        out_dir = resume
        opts, model, task = options_from_trace(resume, device, force)
    else:
        if model is None or task is None or out_dir is None:
            missing = [n for n, v in (("--model", model), ("--task", task), ("--out", out_dir)) if v is None]
            raise UserError(f"missing option(s) {', '.join(missing)} (or give --resume DIR)")
        if holds_run(out_dir):
            if not overwrite:
                raise UserError(f"output folder {str(out_dir)!r} already holds a run; use --overwrite or --resume")
            for f in RUN_FILES:
                (out_dir / f).unlink(missing_ok=True)
        opts = DiscoverOptions(method=method, threshold=threshold, edges=edges, metric=metric, ablation=ablation,
                               granularity=granularity, n_examples=n_examples, seed=seed, device=device,
                               abs_value=abs_value, sparsity=sparsity, candidates=candidates, ig_steps=ig_steps,
                               ig=ig, selection=selection, prune=prune, train_steps=train_steps, force=force)
    with edge_progress("discover", "edges tried") as report:
        circuit = run_discover(model, task, opts, out=out_dir, resume=resume is not None, progress=report)
    r = circuit.results
    c = out()
    c.print(f"[bold]{circuit.method}[/] on {circuit.model} / {circuit.task} ({circuit.granularity}, "
            f"{circuit.ablation} ablation, metric {circuit.metric}): "
            f"{r['n_edges_in_circuit']} of {r['n_edges_total']} edges")
    faith = r.get("faithfulness")
    c.print(f"metric: full model {r['metric_full_model']:.4g}, circuit {r['metric_circuit']:.4g}, "
            f"empty {r['metric_empty_circuit']:.4g}; faithfulness {'n/a' if faith is None else f'{faith:.3f}'}")
    if "threshold" in circuit.params:
        c.print(f"threshold τ = {circuit.params['threshold']:.4g}; time {circuit.timings_s['total']:.1f} s")
    c.print(f"wrote {out_dir / 'circuit.json'}")
    if (out_dir / "report.html").exists():
        c.print(f"wrote {out_dir / 'circuit.svg'} and {out_dir / 'report.html'}")
