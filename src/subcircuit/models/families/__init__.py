"""Family converters: transformers config + state dict -> `ModelConfig` + our weight layout.

One module per family (`gpt2`, `neox`, `llama`, `gemma`, `olmo`); each defines a `FAMILY`: a
function from the transformers config to a `ModelConfig`, and a function that fills a
`Transformer` from the transformers state dict. The pieces they share are in `base`. Adding a
family is one module and one line in `FAMILIES` below (see docs/adding-a-model.md); the
forward pass itself is shared and is only told about new features through `ModelConfig`.
"""

from __future__ import annotations

from typing import Any

import torch

from subcircuit.errors import UserError
from subcircuit.models.families import gemma, gpt2, llama, neox, olmo
from subcircuit.models.families.base import Family
from subcircuit.models.transformer import Transformer

FAMILIES: dict[str, Family] = {f.name: f for f in (gpt2.FAMILY, neox.FAMILY, llama.FAMILY, gemma.FAMILY, olmo.FAMILY)}


def family_for(model_type: str) -> Family:
    """The family converting a transformers `model_type`; a one-line UserError naming the supported ones."""
    for f in FAMILIES.values():
        if model_type in f.model_types:
            return f
    supported = sorted(t for f in FAMILIES.values() for t in f.model_types)
    raise UserError(f"model_type {model_type!r} is not supported; supported: {', '.join(supported)}")


def from_hf(hf_model: Any, dtype: torch.dtype = torch.float32) -> Transformer:
    """Convert a loaded transformers causal LM into our `Transformer` (weights are copied)."""
    fam = family_for(hf_model.config.model_type)
    cfg = fam.config(hf_model.config)
    model = Transformer(cfg)
    sd = {k: v.detach().to(dtype) for k, v in hf_model.state_dict().items()}
    with torch.no_grad():
        fam.weights(model, sd)
    model = model.to(dtype)
    model.requires_grad_(False)
    return model.eval()


__all__ = ["FAMILIES", "Family", "family_for", "from_hf"]
