"""Family converters: transformers config + state dict -> `ModelConfig` + our weight layout.

One module per family (`gpt2`, `neox`, `llama`, `gemma`, `olmo`); each defines a `FAMILY`: a
function from the transformers config to a `ModelConfig`, and a function that fills a
`Transformer` from the transformers state dict. The pieces they share are in `base`. Adding a
family is one module and one line in `FAMILIES` below (see docs/adding-a-model.md); the
forward pass itself is shared and is only told about new features through `ModelConfig`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor

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
    return from_state_dict(hf_model.config, {k: v.detach() for k, v in hf_model.state_dict().items()}, dtype)


class CastingDict(Mapping[str, Tensor]):
    """A read-only view of a state dict (or any mapping of tensors, e.g. one read lazily from
    safetensors files) whose tensors come out at `dtype`, one at a time, as the converter asks."""

    def __init__(self, sd: Mapping[str, Tensor], dtype: torch.dtype) -> None:
        self.sd, self.dtype = sd, dtype

    def __getitem__(self, k: str) -> Tensor:
        return self.sd[k].to(self.dtype)

    def __iter__(self) -> Iterator[str]:
        return iter(self.sd)

    def __len__(self) -> int:
        return len(self.sd)

    def __contains__(self, k: object) -> bool:
        return k in self.sd


def from_state_dict(hf_config: Any, sd: Mapping[str, Tensor], dtype: torch.dtype = torch.float32) -> Transformer:
    """Our `Transformer` at `dtype` from a transformers config and state dict (a mapping; a lazy
    one streams the tensors in). Built at `dtype` from the start (zeros that the converter
    replaces tensor by tensor), so a bf16 model never passes through a float32 copy."""
    fam = family_for(hf_config.model_type)
    cfg = fam.config(hf_config)
    model = Transformer(cfg, dtype=dtype)
    with torch.no_grad():
        fam.weights(model, CastingDict(sd, dtype))  # type: ignore[arg-type]
    model = model.to(dtype)
    model.requires_grad_(False)
    return model.eval()


__all__ = ["FAMILIES", "CastingDict", "Family", "family_for", "from_hf", "from_state_dict"]
