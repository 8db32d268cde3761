"""Family converters: transformers config + state dict -> `ModelConfig` + our weight layout.

Adding a family is one entry in `FAMILIES`: a function from the transformers config to a
`ModelConfig`, and a function that fills a `Transformer` from the transformers state dict.
See docs/adding-a-model.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from subcircuit.errors import UserError
from subcircuit.models.config import ModelConfig
from subcircuit.models.transformer import Transformer


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]
    config: Callable[[Any], ModelConfig]
    weights: Callable[[Transformer, dict[str, Tensor]], None]


def _get(hf_cfg: Any, *names: str, default: Any = None) -> Any:
    for n in names:
        v = getattr(hf_cfg, n, None)
        if v is not None:
            return v
    return default


def _rope_theta(hf_cfg: Any) -> float:
    params = getattr(hf_cfg, "rope_parameters", None) or {}
    if isinstance(params, dict) and "full_attention" in params:  # per-layer-type parameters
        params = params["full_attention"]
    kind = params.get("rope_type", "default")
    if kind != "default":
        raise UserError(f"rope_type {kind!r} is not supported yet; supported: 'default'")
    return float(params.get("rope_theta", _get(hf_cfg, "rope_theta", default=10000.0)))


# ---------------------------------------------------------------- GPT-2 (and attention-only variants)


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


# ---------------------------------------------------------------- Llama-style (Llama, Mistral, Qwen2, SmolLM2)


def _llama_config(c: Any) -> ModelConfig:
    if getattr(c, "hidden_act", "silu") != "silu":
        raise UserError(f"activation {c.hidden_act!r} is not supported for Llama-style models; supported: 'silu'")
    window = None
    if getattr(c, "model_type", "") == "mistral" or getattr(c, "use_sliding_window", False):
        window = getattr(c, "sliding_window", None)
    return ModelConfig(
        family="llama",
        n_layers=c.num_hidden_layers,
        d_model=c.hidden_size,
        n_heads=c.num_attention_heads,
        n_kv_heads=_get(c, "num_key_value_heads", default=c.num_attention_heads),
        d_head=_get(c, "head_dim", default=c.hidden_size // c.num_attention_heads),
        d_mlp=c.intermediate_size,
        vocab_size=c.vocab_size,
        n_ctx=_get(c, "max_position_embeddings", default=2048),
        norm="rmsnorm",
        norm_eps=c.rms_norm_eps,
        positional="rotary",
        rope_theta=_rope_theta(c),
        mlp="gated",
        act="silu",
        sliding_window=window,
    )


def _linear(sd: dict[str, Tensor], key: str, n: int, E: int) -> tuple[Tensor, Tensor | None]:
    """nn.Linear weight [n*e, d] -> [n d e], bias [n*e] -> [n e]."""
    W = sd[key + ".weight"]
    d = W.shape[1]
    bias = sd.get(key + ".bias")
    return W.reshape(n, E, d).permute(0, 2, 1).contiguous(), None if bias is None else bias.reshape(n, E)


def _llama_weights(m: Transformer, sd: dict[str, Tensor]) -> None:
    cfg = m.cfg
    H, K, D, E = cfg.n_heads, cfg.kv_heads, cfg.d_model, cfg.d_head
    m.W_E.data = sd["model.embed_tokens.weight"]
    for i, b in enumerate(m.blocks):
        h = f"model.layers.{i}."
        b.ln1_w.data = sd[h + "input_layernorm.weight"]
        for name, n, Wn, bn in (("q", H, "W_Q", "b_Q"), ("k", K, "W_K", "b_K"), ("v", K, "W_V", "b_V")):
            W, bias = _linear(sd, f"{h}self_attn.{name}_proj", n, E)
            getattr(b, Wn).data = W
            if bias is not None:
                getattr(b, bn).data = bias
        Wo = sd[h + "self_attn.o_proj.weight"]  # [d h*e]
        b.W_O.data = Wo.T.reshape(H, E, D).contiguous()
        if h + "self_attn.o_proj.bias" in sd:
            b.b_O.data = sd[h + "self_attn.o_proj.bias"]
        b.ln2_w.data = sd[h + "post_attention_layernorm.weight"]
        b.W_gate.data = sd[h + "mlp.gate_proj.weight"].T.contiguous()
        b.W_in.data = sd[h + "mlp.up_proj.weight"].T.contiguous()
        b.W_out.data = sd[h + "mlp.down_proj.weight"].T.contiguous()
        for hf, ours in (("up_proj", "b_in"), ("down_proj", "b_out")):
            if f"{h}mlp.{hf}.bias" in sd:
                getattr(b, ours).data = sd[f"{h}mlp.{hf}.bias"]
    m.lnf_w.data = sd["model.norm.weight"]
    m.W_U.data = sd.get("lm_head.weight", sd["model.embed_tokens.weight"]).T.contiguous()


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("gpt2", ("gpt2",), _gpt2_config, _gpt2_weights),
        Family("llama", ("llama", "mistral", "qwen2"), _llama_config, _llama_weights),
    )
}


def family_for(model_type: str) -> Family:
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
