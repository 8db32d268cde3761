"""Training checkpoints: the complete state of a gate-training run (Edge Pruning, Subnetwork
Probing) in one safetensors file, written atomically, so an interrupted run resumes to exactly the
result of an uninterrupted one.

A checkpoint holds everything the next step depends on:

- the learned tensors (log α, the Lagrange multipliers),
- each optimizer's state (Adam's step counts and moment estimates),
- the noise generator's state (`torch.Generator.get_state()`, a uint8 tensor),
- the step reached and the loss history,
- a header: the run's options (model, task, method, seed, steps, ...). Resuming with different
  options is an error naming the options that differ, never a silent mix of two runs.

Tensors go to safetensors (no pickles); the step, history and header go to the file's string
metadata as JSON. The file is written to a temporary name and renamed, so a kill at any moment
leaves either the previous checkpoint or the new one, never half of one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from subcircuit.files import check_header, load_state, read_header, save_state  # noqa: F401  (moved)


@dataclass(frozen=True)
class TrainingCheckpoint:
    """Where and how often a training run saves its state, and whether it resumes from it.

    `header` identifies the run (its options); a saved checkpoint whose header differs is refused."""

    path: Path
    header: dict[str, Any] = field(default_factory=dict)
    every: int = 10
    resume: bool = False


def optimizer_tensors(opt: torch.optim.Optimizer, prefix: str) -> dict[str, Tensor]:
    """An optimizer's per-parameter state as flat named tensors (`prefix.<param>.<key>`)."""
    out = {}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            out[f"{prefix}.{i}.{k}"] = v if isinstance(v, Tensor) else torch.tensor(v)
    return out


def restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, Tensor], prefix: str) -> None:
    """Load the state saved by `optimizer_tensors` into `opt` (built with the same arguments)."""
    sd = opt.state_dict()
    state: dict[int, dict[str, Tensor]] = {}
    for name, v in tensors.items():
        if name.startswith(prefix + "."):
            i, k = name[len(prefix) + 1:].split(".", 1)
            state.setdefault(int(i), {})[k] = v
    sd["state"] = state
    opt.load_state_dict(sd)
