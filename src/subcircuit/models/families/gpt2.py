"""GPT-2 (and attention-only GPT-2-style models): learned positions, LayerNorm, fused c_attn,
Conv1D weights stored as x @ W.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from subcircuit.errors import UserError
from subcircuit.models.config import ModelConfig
from subcircuit.models.families.base import Family
from subcircuit.models.transformer import Transformer


def _gpt2_config(c: Any) -> ModelConfig:
    if getattr(c, "scale_attn_by_inverse_layer_idx", False) or getattr(c, "reorder_and_upcast_attn", False):
        raise UserError("GPT-2 configs with scale_attn_by_inverse_layer_idx/reorder_and_upcast_attn are not supported")
    act = {"gelu_new": "gelu_new", "gelu": "gelu", "relu": "relu", "gelu_pytorch_tanh": "gelu_tanh"}
    if c.activation_function not in act:
        raise UserError(f"GPT-2 activation {c.activation_function!r} is not supported; supported: {sorted(act)}")
    return ModelConfig(
        family="gpt2",
        n_layers=c.n_layer,
        d_model=c.n_embd,
        n_heads=c.n_head,
        d_head=c.n_embd // c.n_head,
        d_mlp=c.n_inner or 4 * c.n_embd,
        vocab_size=c.vocab_size,
        n_ctx=c.n_positions,
        norm="layernorm",
        norm_eps=c.layer_norm_epsilon,
        positional="learned",
        act=act[c.activation_function],
        attn_scale=None if getattr(c, "scale_attn_weights", True) else 1.0,
    )


def _gpt2_weights(m: Transformer, sd: dict[str, Tensor]) -> None:
    cfg = m.cfg
    H, D, E = cfg.n_heads, cfg.d_model, cfg.d_head
    p = "transformer." if "transformer.wte.weight" in sd else ""
    m.W_E.data = sd[f"{p}wte.weight"]
    m.W_pos.data = sd[f"{p}wpe.weight"]
    for i, b in enumerate(m.blocks):
        h = f"{p}h.{i}."
        b.ln1_w.data, b.ln1_b.data = sd[h + "ln_1.weight"], sd[h + "ln_1.bias"]
        W = sd[h + "attn.c_attn.weight"]  # [d 3d], x @ W
        bias = sd[h + "attn.c_attn.bias"]
        for j, (Wn, bn) in enumerate((("W_Q", "b_Q"), ("W_K", "b_K"), ("W_V", "b_V"))):
            getattr(b, Wn).data = W[:, j * D : (j + 1) * D].reshape(D, H, E).permute(1, 0, 2).contiguous()
            getattr(b, bn).data = bias[j * D : (j + 1) * D].reshape(H, E).clone()
        b.W_O.data = sd[h + "attn.c_proj.weight"].reshape(H, E, D).clone()
        b.b_O.data = sd[h + "attn.c_proj.bias"]
        b.ln2_w.data, b.ln2_b.data = sd[h + "ln_2.weight"], sd[h + "ln_2.bias"]
        b.W_in.data, b.b_in.data = sd[h + "mlp.c_fc.weight"], sd[h + "mlp.c_fc.bias"]
        b.W_out.data, b.b_out.data = sd[h + "mlp.c_proj.weight"], sd[h + "mlp.c_proj.bias"]
    m.lnf_w.data, m.lnf_b.data = sd[f"{p}ln_f.weight"], sd[f"{p}ln_f.bias"]
    m.W_U.data = sd.get("lm_head.weight", sd[f"{p}wte.weight"]).T.contiguous()


FAMILY = Family("gpt2", ("gpt2",), _gpt2_config, _gpt2_weights)
