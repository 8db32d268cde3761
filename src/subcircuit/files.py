"""Files written safely: text and tensor state files, written to a temporary name in the same
folder and renamed, so a kill at any moment leaves the previous file or the new one, never half
of one. Tensors go to safetensors (no pickles) with JSON metadata; `check_header` refuses to
mix two runs whose options differ. The lowest layer of the package, beside `errors`."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from subcircuit.errors import UserError

META_KEY = "subcircuit.checkpoint"


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically (creating its folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
