"""`subcircuit tasks` (the listing), `subcircuit tasks generate TEMPLATE --model M --out FILE` and
`subcircuit tasks check FILE --model M`: tasks from templates, and whether the model does them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from subcircuit.cli import info
from subcircuit.cli._options import DeviceOpt, ModelOpt, SeedOpt
from subcircuit.cli._output import out, status

app = typer.Typer(help="List the built-in tasks; generate task files from templates and check them.",
                  invoke_without_command=True, no_args_is_help=False)


@app.callback()
def tasks(ctx: typer.Context) -> None:
    """List the built-in tasks (clean/corrupted prompt pairs and a metric); `generate` and `check`
    make and test your own."""
    if ctx.invoked_subcommand is None:
        info.tasks()


@app.command()
def generate(
    template: Annotated[Path, typer.Argument(help="Task template (TOML; see docs/tasks.md).")],
    model: ModelOpt,
    dest: Annotated[Path, typer.Option("--out", "-o", help="Task file to write (JSONL).")],
    n: Annotated[int, typer.Option("--n", "-n", help="Number of examples.")] = 64,
    seed: SeedOpt = 0,
    device: DeviceOpt = "cpu",
) -> None:
    """Write a JSONL task file from a template: one-token slot fillers for MODEL's tokenizer,
    balanced slot orders, clean/corrupted pairs of equal length."""
    from subcircuit.errors import UserError
    from subcircuit.models import load
    from subcircuit.tasks.templates import generate_examples, read_template, write_task_file

    if n < 1:
        raise UserError(f"--n must be at least 1, not {n}")
    tpl = read_template(template)
    with status(f"loading {model} ..."):
        loaded = load(model, device)
    examples, stats = generate_examples(tpl, loaded.tokenizer, n, seed)
    path = write_task_file(tpl, examples, dest)
    o = out()
    for lst, (kept, total) in stats["kept"].items():
        o.print(f"list {lst}: {kept} of {total} words are one token", markup=False)
    for t, c in stats["orders"].items():
        o.print(f"{c} examples: {t}", markup=False)
    if stats["dropped_pairs"]:
        o.print(f"{stats['dropped_pairs']} pairs dropped (clean and corrupted lengths differ)", markup=False)
    o.print(f"wrote {len(examples)} examples to {path}", markup=False)


@app.command()
def check(
    file: Annotated[Path, typer.Argument(help="Task file (JSONL).")],
    model: ModelOpt,
    n: Annotated[int | None, typer.Option("--n", "-n", help="Use the first N examples.")] = None,
    device: DeviceOpt = "cpu",
) -> None:
    """How well MODEL does a task file before any circuit work: every metric of the full model on
    the clean prompts and on the corrupted ones."""
    from subcircuit.models import load
    from subcircuit.tasks.performance import measure_task_file

    with status(f"loading {model} ..."):
        loaded = load(model, device)
    row = measure_task_file(file, loaded, n)
    table = Table(title=f"{row['task']} on {row['model']} ({row['n']} examples; task metric {row['metric']})")
    table.add_column("metric")
    table.add_column("clean", justify="right")
    table.add_column("corrupted", justify="right")
    s = row["scores"]
    for name in [k for k in s if "@" not in k]:
        table.add_row(name, f"{s[name]:.4f}", f"{s.get(name + '@corrupted', float('nan')):.4f}")
    out().print(table)
