"""`subcircuit demo`: the bundled SmolLM2-135M at work, then ACDC on the models with known circuits
and the IOI circuit of SmolLM2 (offline). The library (`subcircuit.runs.demo`) returns data; this
module prints it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from subcircuit.cli._options import DeviceOpt
from subcircuit.cli._output import fmt_params, out, status


def demo(
    prompts: Annotated[int, typer.Option("--prompts", "-n", help="How many IOI prompts to run (1..10).")] = 4,
    device: DeviceOpt = "cpu",
    runs_dir: Annotated[Path, typer.Option("--runs", help="Where the demo writes its runs.")] = Path("runs"),
    ioi: Annotated[bool, typer.Option("--ioi/--no-ioi", help="Also find SmolLM2's IOI circuit (EAP-IG, ACDC).")] = True,
) -> None:
    """Load the bundled SmolLM2-135M and show Indirect Object Identification at work (offline)."""
    from subcircuit.runs import demo as demo_lib

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


def heldout_cell(res: dict[str, Any]) -> str:
    """'0.912 (64)': held-out faithfulness and the number of held-out prompts ('—' without)."""
    if "n_examples_heldout" not in res:
        return "—"
    f = res.get("faithfulness_heldout")
    return f"{'n/a' if f is None else f'{f:.3f}'} ({res['n_examples_heldout']})"


def print_discovery(runs: list[Any]) -> None:
    """A table of the demo's ACDC runs, then each circuit's edges."""
    c = out()
    c.print()
    c.print("[bold]ACDC on the models with known circuits[/] (circuit.json in each folder)")
    table = Table()
    for col in ("run", "edges kept", "faithfulness", "held-out", "matches the known circuit", "time", "folder"):
        table.add_column(col)
    for r in runs:
        res = r.circuit.results
        faith = res.get("faithfulness")
        match = "—" if r.reference is None else ("yes, exactly" if set(r.reference) == set(r.circuit.in_circuit)
                                                 else f"no ({len(set(r.reference) ^ set(r.circuit.in_circuit))} differ)")
        table.add_row(r.label, f"{res['n_edges_in_circuit']} / {res['n_edges_total']}",
                      "n/a" if faith is None else f"{faith:.3f}", heldout_cell(res), match, f"{r.seconds:.1f} s",
                      str(r.folder))
    c.print(table)
    for r in runs:
        c.print(f"[bold]{r.label}[/]: " + ", ".join(r.circuit.in_circuit))


def print_demo_summary(runs: list[Any], index: Path) -> None:
    """The demo's summary: every run with its size, faithfulness and labelled heads; then where
    each report is."""
    from subcircuit.report.svg import short_label
    from subcircuit.runs.demo import head_labels

    c = out()
    c.print()
    c.print("[bold]Summary[/] (each run folder holds circuit.json, circuit.svg, report.html, roles.json)")
    table = Table()
    for col in ("run", "edges kept", "faithfulness", "held-out", "labelled heads (roles measured on the model)",
                "time"):
        table.add_column(col)
    for r in runs:
        res = r.circuit.results
        faith = res.get("faithfulness")
        labels = [f"{h} {short_label(lab)}" for h, lab in head_labels(r.folder).items()]
        shown = ", ".join(labels[:5]) + (f" (+{len(labels) - 5})" if len(labels) > 5 else "")
        table.add_row(r.label, f"{res['n_edges_in_circuit']} / {res['n_edges_total']}",
                      "n/a" if faith is None else f"{faith:.3f}", heldout_cell(res), escape(shown or "—"),
                      f"{r.seconds:.1f} s")
    c.print(table)
    c.print("Reports (open in a browser; they work offline):")
    for r in runs:
        c.print(f"  {r.folder / 'report.html'}", markup=False)
    c.print(f"All runs: {index}", markup=False)


def print_demo(r: Any) -> None:
    """Print a `subcircuit.runs.demo.DemoResult`."""
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
