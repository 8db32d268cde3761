"""Models: our forward pass over transformers' weights, with every component's output separate.

- `config`: `ModelConfig`, the one description of every supported architecture;
- `block`, `transformer`, `attention`, `norms`: the weights and the forward pass, as component
  functions (`embed`, `attention`, `post_attention`, `mlp`, `unembed`) that the plain forward
  (`Transformer.run`), the patched forwards and the role measurements all compose;
- `families/`: one converter per family (GPT-2, GPT-NeoX, Llama, Gemma, OLMo) from transformers;
- `loading` (our format, transformers folders, the Hub), `gguf` (the bundled SmolLM2),
  `registry` (short names and `load`), `dtypes` (`--dtype`), `placement` (layers over several
devices, `--offload cpu`), `tracr/` (compiled RASP models with known circuits).
"""

from subcircuit.models import micro as _micro  # noqa: F401  (registers micro-induction, micro-pointer)
from subcircuit.models import tracr as _tracr  # noqa: F401  (registers tracr-reverse, tracr-proportion)
from subcircuit.models.config import ModelConfig
from subcircuit.models.dtypes import DTYPES, dtype_name, resolve_dtype
from subcircuit.models.families import FAMILIES, family_for, from_hf
from subcircuit.models.loading import LoadedModel, save
from subcircuit.models.placement import auto_place, place, placement, plan
from subcircuit.models.registry import MODELS, ModelEntry, load, register
from subcircuit.models.transformer import Run, Transformer

__all__ = [
    "DTYPES",
    "FAMILIES",
    "MODELS",
    "LoadedModel",
    "ModelConfig",
    "ModelEntry",
    "Run",
    "Transformer",
    "auto_place",
    "dtype_name",
    "family_for",
    "from_hf",
    "load",
    "place",
    "placement",
    "plan",
    "register",
    "resolve_dtype",
    "save",
]
