"""Llama-style decoders (Llama, Mistral, Qwen2, Qwen3, SmolLM2): rotary, RMSNorm, gated SiLU MLP,
grouped-query attention; Qwen3 adds an RMSNorm of each head's query and key.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from subcircuit.errors import UserError
from subcircuit.models.config import ModelConfig
from subcircuit.models.families.base import QK_NORMS, Family, decoder_weights, rotary_decoder
from subcircuit.models.transformer import Transformer


def _llama_config(c: Any) -> ModelConfig:
    if getattr(c, "hidden_act", "silu") != "silu":
        raise UserError(f"activation {c.hidden_act!r} is not supported for Llama-style models; supported: 'silu'")
    qk = "head" if c.model_type == "qwen3" else "none"  # Qwen3: RMSNorm of each head's query and key
    return rotary_decoder(c, "llama", qk_norm=qk)


def _llama_weights(m: Transformer, sd: dict[str, Tensor]) -> None:
    norms = {"ln1_w": "input_layernorm", "ln2_w": "post_attention_layernorm"}
    decoder_weights(m, sd, norms | (QK_NORMS if m.cfg.qk_norm != "none" else {}))


FAMILY = Family("llama", ("llama", "mistral", "qwen2", "qwen3"), _llama_config, _llama_weights)
