"""`subcircuit benchmark ground-truth` and `subcircuit benchmark paper`: methods scored against known circuits.

- `ground-truth`: every registered method on every shipped model whose circuit is known
  (`evaluation.ground_truth_suite.SUITE`): edge and node ROC AUC, recovery at the true size;
- `paper`: the ACDC paper's ROC setup on GPT-2 small, IOI and Greater-Than
  (`evaluation.paper_benchmark`).

Both print the tables in the terminal and write `results.json`, `results.md` and `roc.png` to `--out`.
"""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from subcircuit.cli._options import DeviceOpt, NExamplesOpt, SeedOpt, number_list
from subcircuit.cli._output import out, status

log = logging.getLogger(__name__)

app = typer.Typer(name="benchmark", help="Score the methods against known circuits (ROC AUC, recovery).",
                  no_args_is_help=True)

ModelsOpt = Annotated[str | None, typer.Option("--models", help="Comma-separated suite models (default: all).")]
MethodsOpt = Annotated[str | None, typer.Option("--methods", help="Comma-separated methods (default: all registered; "
                                                                  "paper: acdc,hisp,sp).")]
ThresholdsOpt = Annotated[str | None, typer.Option("--thresholds", help="Comma-separated ACDC thresholds τ "
                                                                        "(default: the built-in grid).")]
BenchOutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Output folder for results.json, results.md "
                                                                      "and roc.png (default: none written).")]


def _command_line() -> str:
    return "subcircuit " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else ""


def print_result(result: dict[str, Any], title: str) -> None:
    """One rich table: a row per model, a column per method, 'edge AUC / node AUC / recovery'."""
    from rich.table import Table

    from subcircuit.evaluation.benchmark_output import fmt_value, score_table

    table = score_table(result)
    t = Table(title=f"{title}: edge AUC/node AUC/recovery at the true size", title_justify="left")
    t.add_column("model")
    for m in result["methods"]:
        t.add_column(m, justify="right")
    for row in result["models"]:
        cells = []
        for m in result["methods"]:
            s = table.get((row, m))
            cells.append("—" if s is None else
                         f"{fmt_value(s.auc_edge, 2)}/{fmt_value(s.auc_node, 2)}/{fmt_value(s.recovery, 2)}")
        t.add_row(row, *cells)
    out().print(t)


def _finish(result: dict[str, Any], title: str, out_dir: Path | None) -> None:
    from subcircuit.evaluation.benchmark_output import write_outputs

    print_result(result, title)
    if out_dir is not None:
        written = write_outputs(result, out_dir, _command_line())
        out().print("wrote " + ", ".join(str(p) for p in written))


def ground_truth(
    models: ModelsOpt = None,
    methods: MethodsOpt = None,
    thresholds: ThresholdsOpt = None,
    n_examples: NExamplesOpt = None,
    seed: SeedOpt = 0,
    out_dir: BenchOutOpt = None,
) -> None:
    """Every method on every model with a known circuit: edge/node ROC AUC and recovery at the true size."""
    from subcircuit.evaluation.ground_truth_suite import ACDC_TAUS, run_suite

    taus = number_list(thresholds, float, "--thresholds") or list(ACDC_TAUS)
    with status("benchmarking the methods on the models with known circuits ..."):
        result = run_suite(_names(models), _names(methods), n_examples, taus, seed, progress=log.info)
    _finish(result, "ground truth", out_dir)


def paper(
    model: Annotated[str, typer.Option("--model", "-m", help="gpt2 (needs its weights in the Hugging Face cache), "
                                                              "or a folder with a 12 x 12 GPT-2-shaped model.")] = "gpt2",
    tasks: Annotated[str | None, typer.Option("--tasks", help="Comma-separated: ioi, greater-than (default: both).")]
    = None,
    methods: MethodsOpt = None,
    thresholds: ThresholdsOpt = None,
    n_examples: NExamplesOpt = None,
    seed: SeedOpt = 0,
    out_dir: BenchOutOpt = None,
    device: DeviceOpt = "cpu",
) -> None:
    """The ACDC paper's ROC evaluation on GPT-2 small (IOI, Greater-Than; KL, corrupted ablation)."""
    from subcircuit.evaluation.paper_benchmark import (
        PAPER_METHODS,
        PAPER_N_EXAMPLES,
        PAPER_TASKS,
        PAPER_TAUS,
        run_paper,
    )

    taus = number_list(thresholds, float, "--thresholds") or list(PAPER_TAUS)
    with status(f"benchmarking on {model} ..."):
        result = run_paper(model, _names(tasks) or list(PAPER_TASKS), _names(methods) or list(PAPER_METHODS),
                           n_examples or PAPER_N_EXAMPLES, taus, seed, progress=log.info, device=device)
    _finish(result, "ACDC paper setup", out_dir)


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [t.strip() for t in text.split(",") if t.strip()] or None


app.command("ground-truth")(ground_truth)
app.command("paper")(paper)
