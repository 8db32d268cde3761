"""Reading and writing models: our own format, transformers folders, the Hugging Face Hub.

Weights, configs and tokenizers come from transformers; the forward pass is ours
(`subcircuit.models.transformer`). Our own format (`save` / `load_ours`) is a
`subcircuit_model.json` (the `ModelConfig` and free-form meta) beside a `model.safetensors` (no
pickles): the toy and tracr models ship in it, and converted models are cached in it. A Hub id
needs the network unless it is in the local Hugging Face cache; offline it fails with one line
naming the model. Short names and `load(spec)`, the one entry point, are in `registry`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from subcircuit.errors import UserError
from subcircuit.models.config import ModelConfig
from subcircuit.models.families import family_for, from_hf
from subcircuit.models.transformer import Transformer

log = logging.getLogger(__name__)

OUR_CONFIG = "subcircuit_model.json"
OUR_WEIGHTS = "model.safetensors"


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model ready for circuit discovery: our forward pass plus its tokenizer (None for
    models that work on raw token ids, like the toy and tracr models)."""

    name: str
    model: Transformer
    tokenizer: Any = None
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def cfg(self) -> ModelConfig:
        return self.model.cfg


def cache_dir() -> Path:
    """Where converted models are cached (`$SUBCIRCUIT_CACHE`, default ~/.cache/subcircuit)."""
    return Path(os.environ.get("SUBCIRCUIT_CACHE", Path.home() / ".cache" / "subcircuit"))


def data_dir() -> Path:
    """Files shipped inside the package (toy models, reference circuits)."""
    return Path(__file__).resolve().parent.parent / "data"


# ------------------------------------------------------------------------------ our own format


def save(model: Transformer, folder: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write `model` as `subcircuit_model.json` + `model.safetensors` (no pickles)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"config": model.cfg.to_dict(), "meta": meta or {}}
    (folder / OUR_CONFIG).write_text(json.dumps(payload, indent=2, sort_keys=True))
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, folder / OUR_WEIGHTS)
    return folder


def load_ours(folder: str | Path, name: str | None = None) -> LoadedModel:
    """Load a model written by `save`."""
    folder = Path(folder)
    payload = json.loads((folder / OUR_CONFIG).read_text())
    model = Transformer(ModelConfig.from_dict(payload["config"]))
    model.load_state_dict(load_file(folder / OUR_WEIGHTS))
    model.requires_grad_(False).eval()
    return LoadedModel(name or folder.name, model, None, str(folder), payload.get("meta", {}))


# ------------------------------------------------------------------------------ transformers


def _hf_load(path_or_id: str, local_only: bool, **kw: Any) -> tuple[Any, Any]:
    import sys

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    if bars and not sys.stderr.isatty():  # no "Loading weights" bar on a non-terminal stderr
        hf_logging.disable_progress_bar()
    try:
        hf = AutoModelForCausalLM.from_pretrained(path_or_id, local_files_only=local_only, dtype=torch.float32, **kw)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    try:
        tok = AutoTokenizer.from_pretrained(path_or_id, local_files_only=local_only, **kw)
    except (OSError, ValueError, TypeError):
        tok = None
    return hf, tok


def from_transformers(hf_model: Any, tokenizer: Any = None, name: str | None = None) -> LoadedModel:
    """Wrap an already loaded transformers causal LM."""
    name = name or getattr(hf_model.config, "_name_or_path", "") or hf_model.config.model_type
    return LoadedModel(name, from_hf(hf_model), tokenizer, "transformers object")


def load_folder(folder: str | Path, name: str | None = None) -> LoadedModel:
    """A local folder: our format or a transformers checkpoint."""
    folder = Path(folder)
    if (folder / OUR_CONFIG).exists():
        return load_ours(folder, name)
    if not (folder / "config.json").exists():
        raise UserError(f"model folder {str(folder)!r} has neither config.json nor {OUR_CONFIG}")
    try:
        model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    except (ValueError, AttributeError) as e:
        raise UserError(f"{str(folder / 'config.json')!r} is not a JSON object with a model_type") from e
    family_for(str(model_type))  # an unsupported family fails here, before any weights are read
    hf, tok = _hf_load(str(folder), local_only=True)
    return LoadedModel(name or folder.name, from_hf(hf), tok, str(folder))


def _hub_host() -> str:
    from urllib.parse import urlparse

    return urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"


def _hub_resolves() -> bool:
    """Whether the Hub's host name resolves: without it, fail at once instead of after ~30 s of
    huggingface_hub's retries."""
    import socket

    try:
        socket.getaddrinfo(_hub_host(), 443)
        return True
    except (OSError, UnicodeError):
        return False


@contextlib.contextmanager
def _quiet_hub():
    """Hide huggingface_hub's per-retry warnings (one stderr line each) while it tries the network:
    a failure becomes one UserError line; with -vv (subcircuit logging at DEBUG) they are shown."""
    hub = logging.getLogger("huggingface_hub")
    before = hub.level
    if not log.isEnabledFor(logging.DEBUG):
        hub.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub.setLevel(before)


def load_hub(model_id: str, name: str | None = None) -> LoadedModel:
    """A Hugging Face Hub id: the local HF cache first, then the network."""
    try:
        hf, tok = _hf_load(model_id, local_only=True)
    except (OSError, ValueError):
        try:
            if not _hub_resolves():
                raise OSError(f"cannot resolve the Hub's address {_hub_host()!r} (no network?)")
            with _quiet_hub():
                hf, tok = _hf_load(model_id, local_only=False)
        except (OSError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(
                f"model {model_id!r} is not available offline and the Hugging Face Hub could not be reached "
                f"({first[:160]}); use a short name from `subcircuit models` or a local folder"
            ) from e
    return LoadedModel(name or model_id, from_hf(hf), tok, f"hub:{model_id}")


def check_device(device: str | torch.device) -> torch.device:
    """Validate a device name; `cuda` without a GPU is a user error."""
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise UserError(f"unknown device {str(device)!r}; valid: cpu, cuda, cuda:N") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {str(device)!r} was asked for but no CUDA GPU is available; use --device cpu")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"unknown device {str(device)!r}; valid: cpu, cuda, cuda:N")
    return dev
