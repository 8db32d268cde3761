"""Options shared by several commands, so that every command spells an option the same way.

Use these `Annotated` aliases in a new command (`model: ModelOpt`, `device: DeviceOpt = "cpu"`);
the names and help texts are part of the command line's contract (DESIGN.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from subcircuit.errors import UserError

ModelOpt = Annotated[
    str,
    typer.Option("--model", "-m", help="Short name (see `subcircuit models`), local folder or Hugging Face id."),
]
TaskOpt = Annotated[
    str, typer.Option("--task", "-t", help="Built-in task name (see `subcircuit tasks`) or a task file (JSONL).")
]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu or cuda.")]
DtypeOpt = Annotated[str | None, typer.Option("--dtype", help="float32, bfloat16 or float16 (default: float32 on "
                                                             "CPU, bfloat16 on CUDA).")]
OffloadOpt = Annotated[str | None, typer.Option("--offload", help="cpu: layers that do not fit on the GPUs stay in "
                                                                 "host memory.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (datasets, sampling).")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]
AblationOpt = Annotated[str, typer.Option("--ablation", help="corrupted, mean or zero.")]
GranularityOpt = Annotated[str, typer.Option("--granularity", help="heads-qkv, heads or layers.")]
PositionsOpt = Annotated[
    str | None, typer.Option("--positions", help="spans: a position-aware graph, every edge once per prompt span "
                                                 "(docs/positions.md).")
]
NExamplesOpt = Annotated[int | None, typer.Option("--n-examples", help="Number of prompts.")]
NEvalOpt = Annotated[int | None, typer.Option("--n-eval", help="Held-out evaluation prompts, none of them among the "
                                                             "discovery prompts (default 64; 0: none).")]
BootstrapOpt = Annotated[int | None, typer.Option("--bootstrap", help="Rerun the method on B resampled discovery sets: "
                                                                      "edge frequencies, intervals, stable core.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Run even if the memory estimate exceeds the free memory.")]
RunDirArg = Annotated[Path, typer.Argument(help="Run folder holding circuit.json.")]
AgainstOpt = Annotated[
    str | None,
    typer.Option("--against", help="canonical (the shipped reference circuit of the run's model/task), a reference "
                                    "name, or another run folder. Default: canonical when one exists."),
]


def number_list(text: str | None, kind: type, option: str) -> list | None:
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
