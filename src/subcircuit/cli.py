"""The `subcircuit` command line: thin wiring of the library (parse, call, print).

Every command is a small function that parses its options, calls one library function and prints
the result with rich. Errors are handled in one place, `run_cli`:

- `UserError` (bad input)            -> one line `error: <message>` on stderr, exit code 2
- click/typer usage errors           -> one line `error: <message> ...` on stderr, exit code 2
- anything else (a bug, a crash)     -> one line `error: <Type>: <message> (run with --debug ...)`,
                                        exit code 1
- `--debug` (anywhere on the line)   -> the traceback is printed as well

Adding a command: write `@app.command()` with options from the `*Opt` aliases below (so names
and help texts stay the same across commands), import the library lazily inside the function
(keeps `subcircuit --help` fast) and print with `out()`; raise `UserError` for bad input.
Progress bars (`progress()`) and spinners (`status()`) switch themselves off when stderr is not a
terminal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from subcircuit.errors import UserError

log = logging.getLogger("subcircuit.cli")

app = typer.Typer(
    name="subcircuit",
    help="Find circuits in transformer language models (ACDC and faster relatives).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# ------------------------------------------------------------------------------ shared options
# Reuse these in new commands so every command spells an option the same way.

ModelOpt = Annotated[
    str,
    typer.Option("--model", "-m", help="Short name (see `subcircuit models`), local folder or Hugging Face id."),
]
TaskOpt = Annotated[
    str, typer.Option("--task", "-t", help="Built-in task name (see `subcircuit tasks`) or a task file (JSONL).")
]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu or cuda.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (datasets, sampling).")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]
AblationOpt = Annotated[str, typer.Option("--ablation", help="corrupted, mean or zero.")]
GranularityOpt = Annotated[str, typer.Option("--granularity", help="heads-qkv, heads or layers.")]
NExamplesOpt = Annotated[int | None, typer.Option("--n-examples", help="Number of prompts.")]
AbsOpt = Annotated[bool, typer.Option("--abs", help="ACDC: compare |Δmetric| with τ.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Run even if the memory estimate exceeds the free memory.")]


# ------------------------------------------------------------------------------ output helpers


def is_tty() -> bool:
    """Whether stderr is an interactive terminal (progress bars and spinners only then)."""
    return sys.stderr.isatty()


def out() -> Console:
    """A rich console on stdout (results: tables, numbers). Not a terminal: 160 columns (or
    $COLUMNS), so tables written to files and pipes are not squeezed into 80."""
    columns = os.environ.get("COLUMNS", "")
    width = None if sys.stdout.isatty() else int(columns) if columns.isdigit() else 160
    return Console(highlight=False, width=width)


def err() -> Console:
    """A rich console on stderr (status lines, errors)."""
    return Console(stderr=True, highlight=False)


def progress(**kw: Any) -> Progress:
    """A rich progress bar on stderr, disabled when stderr is not a terminal."""
    return Progress(console=err(), disable=not is_tty(), transient=True, **kw)


@contextlib.contextmanager
def status(message: str) -> Iterator[None]:
    """A spinner while a slow step runs when stderr is a terminal; otherwise the message is only
    logged (INFO, shown with -v), so that stderr of a non-interactive run holds just errors."""
    if is_tty():
        with err().status(message):
            yield
    else:
        log.info(message)
        yield


def fmt_params(n: int) -> str:
    """134515008 -> '134.5M'; 0 (unknown) -> '?'."""
    if n <= 0:
        return "?"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


# ------------------------------------------------------------------------------ global options


@dataclass
class CliState:
    """Global options, shared by `run_cli` (error handling) and the commands (via ctx.obj)."""

    debug: bool = False
    verbose: int = 0


_HANDLER_MARK = "_subcircuit_cli_handler"


def teardown_logging() -> None:
    """Remove the handler `setup_logging` added (so in-process runs leave no state behind)."""
    root = logging.getLogger("subcircuit")
    for h in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(h)
    root.setLevel(logging.NOTSET)


def setup_logging(verbose: int) -> None:
    """Log `subcircuit.*` to stderr: warnings by default, -v info, -vv debug (also transformers')."""
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    teardown_logging()
    root = logging.getLogger("subcircuit")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level)
    # transformers / huggingface_hub read these when first imported (commands import them lazily)
    if verbose < 2:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if not is_tty():
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TQDM_DISABLE", "1")


@app.callback()
def _global_options(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logging (-v info, -vv debug).")] = 0,
) -> None:
    """Find circuits in transformer language models (ACDC and faster relatives)."""
    state = ctx.ensure_object(CliState)
    state.debug = state.debug or debug
    state.verbose = verbose
    setup_logging(verbose)


# ------------------------------------------------------------------------------ commands


@app.command()
def models() -> None:
    """List the models known by short name, with sizes and whether each is available offline now."""
    from subcircuit.models import MODELS

    table = Table()
    table.add_column("name", no_wrap=True, style="bold")
    table.add_column("description")
    table.add_column("parameters", justify="right", no_wrap=True)
    table.add_column("source")
    table.add_column("offline now", no_wrap=True)
    for entry in MODELS.values():
        ok = _safe_available(entry)
        table.add_row(entry.name, entry.description, fmt_params(entry.n_params), entry.source, "yes" if ok else "no")
    out().print(table)


def _safe_available(entry: Any) -> bool:
    """`entry.available()`, treating a failing check as 'not available' (logged)."""
    try:
        return bool(entry.available())
    except Exception as e:  # noqa: BLE001 - a broken availability check must not break the listing
        log.warning("availability check for %s failed: %s", entry.name, e)
        return False


@app.command()
def tasks() -> None:
    """List the built-in tasks (clean/corrupted prompt pairs and a metric)."""
    try:
        from subcircuit.tasks import list_tasks
    except ImportError as e:
        out().print(f"no built-in tasks yet: subcircuit.tasks.list_tasks() is not available ({e})")
        return
    table = Table()
    table.add_column("name", no_wrap=True, style="bold")
    table.add_column("description")
    table.add_column("default model", no_wrap=True)
    table.add_column("metric", no_wrap=True)
    table.add_column("examples", justify="right", no_wrap=True)
    table.add_column("default model does it (measured)")
    for info in list_tasks():
        table.add_row(
            str(getattr(info, "name", info)),
            str(getattr(info, "description", "")),
            str(getattr(info, "default_model", "")),
            str(getattr(info, "default_metric", "")),
            str(getattr(info, "default_n", "")),
            _works_text(getattr(info, "works", None), str(getattr(info, "performance", ""))),
        )
    out().print(table)


def _works_text(works: bool | None, performance: str) -> str:
    """'yes: <numbers>', 'NO: <numbers>' or the bare performance text when there is no criterion."""
    label = {True: "yes: ", False: "NO: ", None: ""}[works]
    return f"{label}{performance}".strip() or "?"


@app.command()
def demo(
    prompts: Annotated[int, typer.Option("--prompts", "-n", help="How many IOI prompts to run (1..10).")] = 4,
    device: DeviceOpt = "cpu",
    runs_dir: Annotated[Path, typer.Option("--runs", help="Where the demo writes its runs.")] = Path("runs"),
    ioi: Annotated[bool, typer.Option("--ioi/--no-ioi", help="Also find SmolLM2's IOI circuit (EAP-IG, ACDC).")] = True,
) -> None:
    """Load the bundled SmolLM2-135M and show Indirect Object Identification at work (offline)."""
    from subcircuit import demo as demo_lib

    with status(f"loading {demo_lib.DEMO_MODEL} (the first load dequantizes the bundled GGUF, ~20 s) ..."):
        result = demo_lib.run_demo(n_prompts=prompts, device=device)
    print_demo(result)
    with status("running ACDC on the models with known circuits ..."):
        runs = demo_lib.run_discovery_demo(out=str(runs_dir), device=device)
    print_discovery(runs)
    if ioi:
        with status(f"IOI circuit of {demo_lib.DEMO_MODEL}: EAP-IG, then ACDC on its top candidates ..."):
            ioi_runs = demo_lib.run_ioi_demo(out=str(runs_dir), device=device)
        runs = runs + ioi_runs
    print_demo_summary(runs, demo_lib.write_index(str(runs_dir), runs))


def print_discovery(runs: list[Any]) -> None:
    """A table of the demo's ACDC runs, then each circuit's edges."""
    c = out()
    c.print()
    c.print("[bold]ACDC on the models with known circuits[/] (circuit.json in each folder)")
    table = Table()
    for col in ("run", "edges kept", "faithfulness", "matches the known circuit", "time", "folder"):
        table.add_column(col)
    for r in runs:
        res = r.circuit.results
        faith = res.get("faithfulness")
        match = "—" if r.reference is None else ("yes, exactly" if set(r.reference) == set(r.circuit.in_circuit)
                                                 else f"no ({len(set(r.reference) ^ set(r.circuit.in_circuit))} differ)")
        table.add_row(r.label, f"{res['n_edges_in_circuit']} / {res['n_edges_total']}",
                      "n/a" if faith is None else f"{faith:.3f}", match, f"{r.seconds:.1f} s", str(r.folder))
    c.print(table)
    for r in runs:
        c.print(f"[bold]{r.label}[/]: " + ", ".join(r.circuit.in_circuit))


def print_demo_summary(runs: list[Any], index: Path) -> None:
    """The demo's summary: every run with its size, faithfulness and labelled heads; then where
    each report is."""
    from subcircuit.demo import head_labels
    from subcircuit.report.svg import short_label

    c = out()
    c.print()
    c.print("[bold]Summary[/] (each run folder holds circuit.json, circuit.svg, report.html, roles.json)")
    table = Table()
    for col in ("run", "edges kept", "faithfulness", "labelled heads (roles measured on the model)", "time"):
        table.add_column(col)
    for r in runs:
        res = r.circuit.results
        faith = res.get("faithfulness")
        labels = [f"{h} {short_label(lab)}" for h, lab in head_labels(r.folder).items()]
        shown = ", ".join(labels[:5]) + (f" (+{len(labels) - 5})" if len(labels) > 5 else "")
        table.add_row(r.label, f"{res['n_edges_in_circuit']} / {res['n_edges_total']}",
                      "n/a" if faith is None else f"{faith:.3f}", escape(shown or "—"), f"{r.seconds:.1f} s")
    c.print(table)
    c.print("Reports (open in a browser; they work offline):")
    for r in runs:
        c.print(f"  {r.folder / 'report.html'}", markup=False)
    c.print(f"All runs: {index}", markup=False)


def print_demo(r: Any) -> None:
    """Print a `subcircuit.demo.DemoResult`."""
    from subcircuit.models.loading import cache_dir

    c = out()
    c.print(f"[bold]subcircuit demo[/] — {r.model} ({fmt_params(r.n_params)} parameters), our forward pass")
    how = f"first load: dequantized the GGUF, cached in {cache_dir()}" if r.load_was_first else "from the cache"
    c.print(f"load: {r.load_s:.1f} s ({how}); cached load: {r.cached_load_s:.1f} s")
    c.print(f"one forward pass at batch {r.batch} × {r.seq} tokens: {r.forward_s:.2f} s")
    c.print()
    c.print("Indirect Object Identification: the model should complete with the indirect object (IO), not the")
    c.print("subject (S). logit diff = logit(' IO') − logit(' S') at the last position; > 0 means it does.")
    for p in r.results:
        c.print()
        c.print(f"[bold]{escape(p.prompt.text)}[/] …")
        c.print(f"  IO {p.prompt.io!r} vs S {p.prompt.s!r}: logit diff [bold]{p.logit_diff:+.2f}[/]")
        top = "  ".join(f"{escape(repr(t))} {q:.3f}" for t, q in p.top)
        c.print(f"  top-5: {top}")
    c.print()
    c.print(f"mean logit diff IO − S over {len(r.results)} prompts: [bold]{r.mean_logit_diff:+.2f}[/]")


@app.command()
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
    import time as _time

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
    with progress() as bar:
        job = bar.add_task("edges tried", total=None)
        last = [0.0]

        def report(done: int, total: int, what: str) -> None:
            bar.update(job, completed=done, total=total, description=f"edges tried · {what}")
            now = _time.monotonic()
            if not is_tty() and now - last[0] > 10:
                last[0] = now
                log.info("edges tried %d/%d (receiver %s)", done, total, what)

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


# >>> show (owner: report) >>>


@app.command()
def show(
    run_dir: Annotated[Path, typer.Argument(help="Run folder holding circuit.json.")],
    recompute_roles: Annotated[bool, typer.Option("--recompute-roles", help="Measure head roles again (loads "
                                                                            "the model) even if roles.json exists.")] = False,
    no_roles: Annotated[bool, typer.Option("--no-roles", help="Draw without head roles.")] = False,
    device: DeviceOpt = "cpu",
) -> None:
    """(Re)render DIR/circuit.svg and DIR/report.html from DIR/circuit.json (roles from roles.json,
    or measured on the model when it is available)."""
    from subcircuit.report import write_report

    with status(f"rendering {run_dir} ..."):
        files = write_report(run_dir, recompute_roles=recompute_roles, device=device, roles=not no_roles)
    o = out()
    if files.roles_note:
        o.print(files.roles_note, markup=False)
    if files.roles is not None:
        o.print(f"{'used' if files.roles_reused else 'wrote'} {files.roles}", markup=False)
    o.print(f"wrote {files.svg}", markup=False)
    o.print(f"wrote {files.html}", markup=False)


# <<< show <<<

# ------------------------------------------------------------------------------ evaluation
# >>> evaluation commands (evaluate, compare, sweep; owner: evaluation) >>>

AgainstOpt = Annotated[
    str | None,
    typer.Option("--against", help="canonical (the shipped reference circuit of the run's model/task), a reference "
                                    "name, or another run folder. Default: canonical when one exists."),
]


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="Run folder holding circuit.json.")],
    against: AgainstOpt = None,
    curve: Annotated[bool, typer.Option("--curve", help="Also measure the faithfulness curve, CPR and CMD "
                                                        "(re-runs the task; score-based methods).")] = False,
    device: DeviceOpt = "cpu",
) -> None:
    """Faithfulness of a run and, against a reference circuit, edge/node TPR and FPR."""
    from subcircuit.evaluation.compare import evaluate_run
    from subcircuit.evaluation.sweep import fmt

    with status(f"evaluating {run_dir} ..."):
        ev = evaluate_run(run_dir, against, curve, device)
    c, r = ev.circuit, ev.circuit.results
    o = out()
    o.print(f"[bold]{c.method}[/] on {c.model} / {c.task} ({c.granularity}, {c.ablation} ablation, metric "
            f"{c.metric}): {ev.n_edges} of {r.get('n_edges_total', len(c.edges))} edges")
    o.print(f"metric: full model {fmt(r.get('metric_full_model'))}, circuit {fmt(r.get('metric_circuit'))}, "
            f"empty {fmt(r.get('metric_empty_circuit'))}; faithfulness {fmt(r.get('faithfulness'), 3)}")
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


@app.command()
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Run folders (or sweep folders: all their runs).")],
    against: AgainstOpt = None,
    plots: Annotated[Path | None, typer.Option("--plots", help="Folder for faithfulness.png and roc.png "
                                                               "(default: the first folder's parent).")] = None,
    curves: Annotated[bool, typer.Option("--curves/--no-curves", help="Measure faithfulness curves, CPR, CMD "
                                                                      "(re-runs the task).")] = True,
    device: DeviceOpt = "cpu",
) -> None:
    """Compare runs: a markdown table (faithfulness, CPR/CMD, TPR/FPR, AUC) and PNG plots."""
    from subcircuit.evaluation.compare import compare_runs

    plot_dir = plots if plots is not None else (run_dirs[0].parent if run_dirs else Path("."))
    with status("evaluating runs ..."):
        _, table, written = compare_runs(list(run_dirs), against, curves, plot_dir, device)
    o = out()
    o.print(table, markup=False, highlight=False)
    for p in written:
        o.print(f"wrote {p}", markup=False)


@app.command()
def sweep(
    model: ModelOpt,
    task: TaskOpt,
    out_dir: OutOpt,
    method: Annotated[str, typer.Option("--method", help="acdc (sweeps --thresholds) or a score method "
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
    abs_value: AbsOpt = False,
    resume: Annotated[bool, typer.Option("--resume", help="Keep the finished runs in --out, finish the others.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a sweep already in --out.")] = False,
    force: ForceOpt = False,
) -> None:
    """Run a method over several thresholds or sizes: one folder per run plus summary.json/summary.md."""
    from subcircuit.discover import DiscoverOptions
    from subcircuit.evaluation.sweep import sweep as run_sweep

    opts = DiscoverOptions(method=method, metric=metric, ablation=ablation, granularity=granularity,
                           n_examples=n_examples, seed=seed, device=device, abs_value=abs_value)
    with progress() as bar:
        job = bar.add_task("sweep", total=None)

        def report(done: int, total: int, what: str) -> None:
            bar.update(job, completed=done, total=total, description=f"edges tried · {what}")

        res = run_sweep(model, task, opts, _number_list(thresholds, float, "--thresholds"),
                        _number_list(sizes, int, "--sizes"), out_dir, report, resume=resume, overwrite=overwrite,
                        force=force)
    o = out()
    o.print((out_dir / "summary.md").read_text(), markup=False, highlight=False)
    o.print(f"wrote {len(res.circuits)} runs and {out_dir / 'summary.json'}", markup=False)


def _number_list(text: str | None, kind: type, option: str) -> list | None:
    """'0.1,0.01' -> [0.1, 0.01]; a UserError naming the bad item."""
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        return [kind(t) for t in items]
    except ValueError:
        bad = next(t for t in items if not _parses(t, kind))
        raise UserError(f"{option}: {bad!r} is not a {kind.__name__}") from None


def _parses(t: str, kind: type) -> bool:
    try:
        kind(t)
        return True
    except ValueError:
        return False


# <<< evaluation commands <<<

# ------------------------------------------------------------------------------ entry points


def _one_line(text: str) -> str:
    """The first non-empty line of `text` (messages are printed on exactly one line)."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[0] if lines else ""


def _fail(message: str) -> None:
    print(f"error: {_one_line(message)}", file=sys.stderr, flush=True)


def _pop_debug(args: list[str]) -> tuple[list[str], bool]:
    """Accept `--debug` anywhere on the line (not only before the command), so that re-running a
    failed command with `--debug` appended works. Arguments after `--` are left alone."""
    end = args.index("--") if "--" in args else len(args)
    head = [a for a in args[:end] if a != "--debug"]
    return head + args[end:], len(head) < end


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Run the command line on `argv` (default: sys.argv[1:]) and return the exit code.

    All error handling of the command line lives here (see the module docstring)."""
    args, debug = _pop_debug(list(sys.argv[1:] if argv is None else argv))
    state = CliState(debug=debug or os.environ.get("SUBCIRCUIT_DEBUG", "") not in ("", "0"))
    command = typer.main.get_command(app)
    try:
        rc = command.main(
            args=args,
            prog_name="subcircuit",
            standalone_mode=False,
            obj=state,
        )
    except typer.Abort:
        _fail("aborted")
        return 130
    except typer.TyperException as e:  # click's usage errors: unknown command/option, bad value
        if state.debug:
            traceback.print_exc()
        code = int(getattr(e, "exit_code", 2))
        message = _one_line(e.format_message() if hasattr(e, "format_message") else str(e))
        if message:  # empty for "no arguments": the help was printed already
            _fail(f"{message} (see 'subcircuit --help')" if code == 2 else message)
        return code
    except UserError as e:
        if state.debug:
            traceback.print_exc()
        _fail(str(e))
        return 2
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, exit code 1
        if state.debug:
            traceback.print_exc()
        _fail(f"{type(e).__name__}: {_one_line(str(e))} (run with --debug for the traceback)")
        return 1
    finally:
        teardown_logging()
    if rc == 130:  # typer turns Ctrl-C (KeyboardInterrupt) into a silent exit code 130
        _fail("interrupted")
    return rc if isinstance(rc, int) else 0


def main() -> None:
    """Console-script entry point (`subcircuit`)."""
    sys.exit(run_cli())


if __name__ == "__main__":
    main()
