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

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from subcircuit.errors import UserError

META_KEY = "subcircuit.checkpoint"


@dataclass(frozen=True)
class TrainingCheckpoint:
    """Where and how often a training run saves its state, and whether it resumes from it.

    `header` identifies the run (its options); a saved checkpoint whose header differs is refused."""

    path: Path
    header: dict[str, Any] = field(default_factory=dict)
    every: int = 10
    resume: bool = False


def save_state(path: str | Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    """Write tensors + JSON metadata to `path` atomically (temporary file in the same folder, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp,
                  metadata={META_KEY: json.dumps(meta, allow_nan=False)})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_state(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(tensors, metadata) of a checkpoint; a UserError if the file is missing or damaged."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {str(path)!r}")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})[META_KEY])
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"cannot resume: checkpoint {path} is damaged ({type(e).__name__}: {e})") from e
    if not isinstance(meta, dict):
        raise UserError(f"cannot resume: checkpoint {path} is damaged (metadata is not an object)")
    return tensors, meta


def read_header(path: str | Path) -> dict[str, Any]:
    """The header of a checkpoint (the run's options), without loading its tensors."""
    path = Path(path)
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})[META_KEY])
        return dict(meta["header"])
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"cannot resume: checkpoint {path} is damaged ({type(e).__name__}: {e})") from e


def check_header(path: Path, saved: dict[str, Any], wanted: dict[str, Any]) -> None:
    """A UserError naming the options that differ between a saved run and the one asked for."""
    if saved != wanted:
        a, b = _flatten(saved if isinstance(saved, dict) else {}), _flatten(wanted)
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k)) or ["header"]
        raise UserError(f"cannot resume from {path}: the run's options differ ({', '.join(diff)})")


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


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
