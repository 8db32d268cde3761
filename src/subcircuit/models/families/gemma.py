"""Gemma, Gemma 2, Gemma 3 (text): Llama's layout with scaled embeddings and RMSNorm weights
stored as w - 1; Gemma 2/3 add post-norms, attention/final soft-caps, sliding-window layers
(Gemma 3: with their own rotary base) and a query pre-attention scalar; Gemma 3 q/k norms.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from subcircuit.errors import UserError
from subcircuit.models.config import ModelConfig
from subcircuit.models.families.base import QK_NORMS, Family, activation, decoder_weights, rotary_decoder
from subcircuit.models.transformer import Transformer


def _gemma_config(c: Any) -> ModelConfig:
    t = c.model_type
    if getattr(c, "use_bidirectional_attention", False):
        raise UserError(f"{t} with use_bidirectional_attention=True is not supported (only causal models)")
    v2 = t in ("gemma2", "gemma3_text")
    if v2 and getattr(c, "attention_bias", False):
        raise UserError(f"{t} with attention_bias=True is not supported (the output bias sits inside the post-norm)")
    return rotary_decoder(
        c,
        "gemma",
        act=activation(c.hidden_activation if v2 else c.hidden_act, t),  # what each modeling file reads
        embed_scale=float(c.hidden_size**0.5),
        attn_scale=float(c.query_pre_attn_scalar) ** -0.5 if v2 else None,
        post_norms=v2,
        qk_norm="head" if t == "gemma3_text" else "none",
        # transformers' Gemma 3 attention never applies attn_logit_softcapping; Gemma 2's does.
        attn_softcap=getattr(c, "attn_logit_softcapping", None) if t == "gemma2" else None,
        final_softcap=getattr(c, "final_logit_softcapping", None),
    )


def _gemma_weights(m: Transformer, sd: dict[str, Tensor]) -> None:
    if m.cfg.post_norms:  # Gemma 2/3: norms before and after both attention and MLP
        norms = {
            "ln1_w": "input_layernorm", "attn_post_w": "post_attention_layernorm",
            "ln2_w": "pre_feedforward_layernorm", "mlp_post_w": "post_feedforward_layernorm",
        }
    else:  # Gemma: Llama's layout
        norms = {"ln1_w": "input_layernorm", "ln2_w": "post_attention_layernorm"}
    decoder_weights(m, sd, norms | (QK_NORMS if m.cfg.qk_norm != "none" else {}), norm_offset=1.0)


FAMILY = Family("gemma", ("gemma", "gemma2", "gemma3_text"), _gemma_config, _gemma_weights)
