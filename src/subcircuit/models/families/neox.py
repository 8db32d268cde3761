"""GPT-NeoX / Pythia: rotary (often partial), LayerNorm, fused query_key_value rows per head,
and the parallel attention + MLP block (`use_parallel_residual`).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from subcircuit.models.config import ModelConfig
from subcircuit.models.families.base import Family, activation, rope_fields
from subcircuit.models.transformer import Transformer


def _neox_config(c: Any) -> ModelConfig:
    return ModelConfig(
        family="gpt_neox",
        n_layers=c.num_hidden_layers,
        d_model=c.hidden_size,
        n_heads=c.num_attention_heads,
        d_head=c.hidden_size // c.num_attention_heads,
        d_mlp=c.intermediate_size,
        vocab_size=c.vocab_size,
        n_ctx=c.max_position_embeddings,
        norm="layernorm",
        norm_eps=c.layer_norm_eps,
        positional="rotary",
        act=activation(c.hidden_act, "gpt_neox"),
        parallel_attn_mlp=bool(c.use_parallel_residual),
        **{k: v for k, v in rope_fields(c).items() if k != "local_rope_theta"},
    )


def _neox_weights(m: Transformer, sd: dict[str, Tensor]) -> None:
    cfg = m.cfg
    H, D, E = cfg.n_heads, cfg.d_model, cfg.d_head
    p = "gpt_neox."
    m.W_E.data = sd[p + "embed_in.weight"]
    for i, b in enumerate(m.blocks):
        h = f"{p}layers.{i}."
        b.ln1_w.data, b.ln1_b.data = sd[h + "input_layernorm.weight"], sd[h + "input_layernorm.bias"]
        b.ln2_w.data, b.ln2_b.data = sd[h + "post_attention_layernorm.weight"], sd[h + "post_attention_layernorm.bias"]
        W = sd[h + "attention.query_key_value.weight"].view(H, 3, E, D)  # fused rows: head, then q/k/v
        bias = sd.get(h + "attention.query_key_value.bias")
        for j, (Wn, bn) in enumerate((("W_Q", "b_Q"), ("W_K", "b_K"), ("W_V", "b_V"))):
            getattr(b, Wn).data = W[:, j].permute(0, 2, 1).contiguous()  # [h d e]
            if bias is not None:
                getattr(b, bn).data = bias.view(H, 3, E)[:, j].clone()
        b.W_O.data = sd[h + "attention.dense.weight"].T.reshape(H, E, D).contiguous()
        if h + "attention.dense.bias" in sd:
            b.b_O.data = sd[h + "attention.dense.bias"]
        b.W_in.data = sd[h + "mlp.dense_h_to_4h.weight"].T.contiguous()
        b.b_in.data = sd[h + "mlp.dense_h_to_4h.bias"]
        b.W_out.data = sd[h + "mlp.dense_4h_to_h.weight"].T.contiguous()
        b.b_out.data = sd[h + "mlp.dense_4h_to_h.bias"]
    m.lnf_w.data, m.lnf_b.data = sd[p + "final_layer_norm.weight"], sd[p + "final_layer_norm.bias"]
    head = sd.get("lm_head.weight", sd.get("embed_out.weight", sd[p + "embed_in.weight"]))
    m.W_U.data = head.T.contiguous()


FAMILY = Family("gpt_neox", ("gpt_neox",), _neox_config, _neox_weights)
