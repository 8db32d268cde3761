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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from subcircuit.errors import UserError
from subcircuit.models.config import ModelConfig
from subcircuit.models.families import family_for, from_hf, from_state_dict
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


def load_ours(folder: str | Path, name: str | None = None, dtype: torch.dtype = torch.float32) -> LoadedModel:
    """Load a model written by `save`, at `dtype`: built at that dtype, then each tensor read from
    the safetensors file and cast into place one at a time (host memory: about the model's size
    at `dtype`, never a float32 copy of it)."""
    folder = Path(folder)
    payload = json.loads((folder / OUR_CONFIG).read_text())
    model = Transformer(ModelConfig.from_dict(payload["config"]), dtype=dtype)
    params = dict(model.named_parameters())
    with safe_open(str(folder / OUR_WEIGHTS), framework="pt") as f:
        keys = list(f.keys())
        missing, unexpected = set(params) - set(keys), set(keys) - set(params)
        if missing or unexpected:
            raise ValueError(f"{folder / OUR_WEIGHTS}: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
        for k in keys:
            t = f.get_tensor(k)
            if t.shape != params[k].shape:
                raise ValueError(f"{folder / OUR_WEIGHTS}: {k} has shape {tuple(t.shape)}, expected "
                                 f"{tuple(params[k].shape)}")
            params[k].data = t.to(dtype)
    model.requires_grad_(False).eval()
    return LoadedModel(name or folder.name, model, None, str(folder), payload.get("meta", {}))


class SafetensorsDict(Mapping[str, torch.Tensor]):
    """The tensors of a transformers checkpoint's safetensors files (`model.safetensors` or the
    shards of `model.safetensors.index.json`), read one at a time when asked for: a converter
    that reads this streams the checkpoint into place with about one tensor in flight."""

    def __init__(self, folder: Path) -> None:
        index = folder / "model.safetensors.index.json"
        if index.exists():
            weight_map = json.loads(index.read_text())["weight_map"]
            self.where = {k: folder / v for k, v in weight_map.items()}
        else:
            with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
                self.where = {k: folder / "model.safetensors" for k in f.keys()}

    def __getitem__(self, k: str) -> torch.Tensor:
        with safe_open(str(self.where[k]), framework="pt") as f:
            return f.get_tensor(k)

    def __iter__(self):
        return iter(self.where)

    def __len__(self) -> int:
        return len(self.where)


def _streamable(folder: Path) -> bool:
    return (folder / "model.safetensors").exists() or (folder / "model.safetensors.index.json").exists()


def _stream_folder(folder: Path, dtype: torch.dtype) -> Transformer | None:
    """Our model straight from a transformers folder's safetensors, without building transformers'
    model (None when its tensor names are not the ones the converter reads: the caller then goes
    through transformers)."""
    from transformers import AutoConfig

    hf_cfg = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    try:
        return from_state_dict(hf_cfg, SafetensorsDict(folder), dtype)
    except KeyError as e:
        log.info("%s: tensor %s not found under transformers' names; loading through transformers", folder, e)
        return None


# ------------------------------------------------------------------------------ transformers


def _hf_load(path_or_id: str, local_only: bool, dtype: torch.dtype = torch.float32, **kw: Any) -> tuple[Any, Any]:
    import sys

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    if bars and not sys.stderr.isatty():  # no "Loading weights" bar on a non-terminal stderr
        hf_logging.disable_progress_bar()
    try:
        hf = AutoModelForCausalLM.from_pretrained(path_or_id, local_files_only=local_only, dtype=dtype, **kw)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    try:
        tok = AutoTokenizer.from_pretrained(path_or_id, local_files_only=local_only, **kw)
    except (OSError, ValueError, TypeError):
        tok = None
    return hf, tok


def from_transformers(hf_model: Any, tokenizer: Any = None, name: str | None = None,
                      dtype: torch.dtype = torch.float32) -> LoadedModel:
    """Wrap an already loaded transformers causal LM."""
    name = name or getattr(hf_model.config, "_name_or_path", "") or hf_model.config.model_type
    return LoadedModel(name, from_hf(hf_model, dtype), tokenizer, "transformers object")


def load_folder(folder: str | Path, name: str | None = None, dtype: torch.dtype = torch.float32) -> LoadedModel:
    """A local folder: our format or a transformers checkpoint (its safetensors streamed into our
    layout at `dtype` when their names are the usual ones, else through transformers at `dtype`)."""
    folder = Path(folder)
    if (folder / OUR_CONFIG).exists():
        return load_ours(folder, name, dtype)
    if not (folder / "config.json").exists():
        raise UserError(f"model folder {str(folder)!r} has neither config.json nor {OUR_CONFIG}")
    try:
        model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    except (ValueError, AttributeError) as e:
        raise UserError(f"{str(folder / 'config.json')!r} is not a JSON object with a model_type") from e
    family_for(str(model_type))  # an unsupported family fails here, before any weights are read
    model = _stream_folder(folder, dtype) if _streamable(folder) else None
    if model is not None:
        return LoadedModel(name or folder.name, model, _tokenizer(str(folder), True), str(folder))
    hf, tok = _hf_load(str(folder), local_only=True, dtype=dtype)
    return LoadedModel(name or folder.name, from_hf(hf, dtype), tok, str(folder))


def _tokenizer(path_or_id: str, local_only: bool) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path_or_id, local_files_only=local_only)
    except (OSError, ValueError, TypeError):
        return None


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


def load_hub(model_id: str, name: str | None = None, dtype: torch.dtype = torch.float32) -> LoadedModel:
    """A Hugging Face Hub id: the local HF cache first, then the network."""
    try:
        hf, tok = _hf_load(model_id, local_only=True, dtype=dtype)
    except (OSError, ValueError):
        try:
            if not _hub_resolves():
                raise OSError(f"cannot resolve the Hub's address {_hub_host()!r} (no network?)")
            with _quiet_hub():
                hf, tok = _hf_load(model_id, local_only=False, dtype=dtype)
        except (OSError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(
                f"model {model_id!r} is not available offline and the Hugging Face Hub could not be reached "
                f"({first[:160]}); use a short name from `subcircuit models` or a local folder"
            ) from e
    return LoadedModel(name or model_id, from_hf(hf, dtype), tok, f"hub:{model_id}")


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
