"""OLMo and OLMo 2. OLMo: LayerNorm without weights and an optional clamp of q, k, v. OLMo 2: no
input norms, norms after attention and MLP, and an RMSNorm over the whole q and k projections.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from subcircuit.errors import UserError
from subcircuit.models.config import ModelConfig
from subcircuit.models.families.base import QK_NORMS, Family, decoder_weights, rotary_decoder
from subcircuit.models.transformer import Transformer


def _olmo_config(c: Any) -> ModelConfig:
    t = c.model_type
    if getattr(c, "hidden_act", "silu") != "silu":
        raise UserError(f"activation {c.hidden_act!r} is not supported for {t}; supported: 'silu'")
    if t == "olmo":  # LayerNorm without weights (eps 1e-5), optional clamp of q, k, v
        return rotary_decoder(c, "olmo", norm="layernorm", norm_eps=1e-5, qkv_clip=getattr(c, "clip_qkv", None))
    if getattr(c, "attention_bias", False):
        raise UserError(f"{t} with attention_bias=True is not supported (the output bias sits inside the post-norm)")
    # OLMo 2: no input norms; norms after attention and MLP; RMSNorm of the whole q and k projections
    return rotary_decoder(c, "olmo", pre_norms=False, post_norms=True, qk_norm="all")


def _olmo_weights(m: Transformer, sd: dict[str, Tensor]) -> None:
    norms = {}
    if m.cfg.post_norms:
        norms = {"attn_post_w": "post_attention_layernorm", "mlp_post_w": "post_feedforward_layernorm", **QK_NORMS}
    decoder_weights(m, sd, norms)


FAMILY = Family("olmo", ("olmo", "olmo2"), _olmo_config, _olmo_weights)
