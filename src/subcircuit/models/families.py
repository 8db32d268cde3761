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


_ROPE_TYPES = ("default", "linear")


def _rope_params(params: Any, where: str) -> tuple[float | None, float]:
    """(theta or None, linear factor) of one rope parameter dict; other rope types are refused."""
    params = params if isinstance(params, dict) else {}
    kind = params.get("rope_type", params.get("type", "default"))
    if kind not in _ROPE_TYPES:
        raise UserError(f"rope_type {kind!r}{where} is not supported yet; supported: {', '.join(_ROPE_TYPES)}")
    factor = float(params.get("factor", 1.0)) if kind == "linear" else 1.0
    theta = params.get("rope_theta")
    return (None if theta is None else float(theta)), factor


def _rope(hf_cfg: Any) -> dict[str, Any]:
    """ModelConfig rotary fields from a transformers config: rope_theta, rope_factor,
    local_rope_theta (Gemma 3: the sliding-window layers' own base) and rotary_dim (partial
    rotary, GPT-NeoX)."""
    params = getattr(hf_cfg, "rope_parameters", None) or {}
    local = None
    if isinstance(params, dict) and "full_attention" in params:  # per-layer-type parameters
        local_theta, local_factor = _rope_params(params.get("sliding_attention"), " (sliding-window layers)")
        if local_factor != 1.0:
            raise UserError(f"linear rope scaling of sliding-window layers (factor {local_factor}) is not supported")
        local = local_theta
        params = params["full_attention"]
    theta, factor = _rope_params(params, "")
    if theta is None:
        theta = float(_get(hf_cfg, "rope_theta", default=10000.0))
    d_head = _d_head(hf_cfg)
    partial = float((params or {}).get("partial_rotary_factor", _get(hf_cfg, "partial_rotary_factor", default=1.0)))
    rotary_dim = None if partial == 1.0 else int(d_head * partial)
    out = {"rope_theta": theta, "rope_factor": factor, "rotary_dim": rotary_dim}
    if local is not None and (local != theta or factor != 1.0):  # the window layers' own rotary
        out["local_rope_theta"] = local
    return out


def _d_head(c: Any) -> int:
    return _get(c, "head_dim", default=c.hidden_size // c.num_attention_heads)


def _windows(c: Any) -> dict[str, Any]:
    """sliding_window and window_layers from a transformers config (`layer_types` where the
    config has it: which layers are `sliding_attention`; Mistral: every layer)."""
    window = getattr(c, "sliding_window", None)
    types = getattr(c, "layer_types", None)
    if types is not None:
        bad = sorted(set(types) - {"full_attention", "sliding_attention"})
        if bad:
            raise UserError(f"layer type(s) {bad} are not supported; supported: full_attention, sliding_attention")
    if window is None or (getattr(c, "use_sliding_window", True) is False):
        return {}
    if types is None or getattr(c, "model_type", "") == "mistral":
        return {"sliding_window": int(window)}
    layers = tuple(i for i, t in enumerate(types) if t == "sliding_attention")
    if not layers:
        return {}
    return {"sliding_window": int(window), "window_layers": None if len(layers) == len(types) else layers}


_ACTS = {"gelu_new": "gelu_new", "gelu": "gelu", "relu": "relu", "gelu_pytorch_tanh": "gelu_tanh", "silu": "silu"}


def _act(name: str, family: str) -> str:
    if name not in _ACTS:
        raise UserError(f"{family} activation {name!r} is not supported; supported: {', '.join(sorted(_ACTS))}")
    return _ACTS[name]


def _rotary_decoder(c: Any, family: str, **features: Any) -> ModelConfig:
    """The fields every rotary decoder (Llama, Gemma, OLMo) shares, plus family `features`."""
    fields: dict[str, Any] = dict(
        family=family,
        n_layers=c.num_hidden_layers,
        d_model=c.hidden_size,
        n_heads=c.num_attention_heads,
        n_kv_heads=_get(c, "num_key_value_heads", default=c.num_attention_heads),
        d_head=_d_head(c),
        d_mlp=c.intermediate_size,
        vocab_size=c.vocab_size,
        n_ctx=_get(c, "max_position_embeddings", default=2048),
        norm="rmsnorm",
        norm_eps=_get(c, "rms_norm_eps", default=1e-6),
        positional="rotary",
        mlp="gated",
        act="silu",
        **_rope(c),
        **_windows(c),
    )
    fields.update(features)
    return ModelConfig(**fields)


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
    qk = "head" if c.model_type == "qwen3" else "none"  # Qwen3: RMSNorm of each head's query and key
    return _rotary_decoder(c, "llama", qk_norm=qk)


def _linear(sd: dict[str, Tensor], key: str, n: int, E: int) -> tuple[Tensor, Tensor | None]:
    """nn.Linear weight [n*e, d] -> [n d e], bias [n*e] -> [n e]."""
    W = sd[key + ".weight"]
    d = W.shape[1]
    bias = sd.get(key + ".bias")
    return W.reshape(n, E, d).permute(0, 2, 1).contiguous(), None if bias is None else bias.reshape(n, E)


def _decoder_weights(m: Transformer, sd: dict[str, Tensor], norms: dict[str, str], norm_offset: float = 0.0) -> None:
    """Copy a Llama-layout state dict (`model.layers.{i}.self_attn.{q,k,v,o}_proj`,
    `mlp.{gate,up,down}_proj`, `model.embed_tokens`, `model.norm`) into `m`. `norms` maps our
    per-block norm weights (`ln1_w`, `ln2_w`, `attn_post_w`, `mlp_post_w`, `q_norm_w`, `k_norm_w`)
    to the layer's transformers key; `norm_offset` is added to every norm weight (Gemma's RMSNorm
    multiplies by 1 + w)."""
    cfg = m.cfg
    H, K, D, E = cfg.n_heads, cfg.kv_heads, cfg.d_model, cfg.d_head
    m.W_E.data = sd["model.embed_tokens.weight"]
    for i, b in enumerate(m.blocks):
        h = f"model.layers.{i}."
        for ours, theirs in norms.items():
            param = getattr(b, ours)
            param.data = sd[h + theirs + ".weight"].reshape(param.shape) + norm_offset
        for name, n, Wn, bn in (("q", H, "W_Q", "b_Q"), ("k", K, "W_K", "b_K"), ("v", K, "W_V", "b_V")):
            W, bias = _linear(sd, f"{h}self_attn.{name}_proj", n, E)
            getattr(b, Wn).data = W
            if bias is not None:
                getattr(b, bn).data = bias
        Wo = sd[h + "self_attn.o_proj.weight"]  # [d h*e]
        b.W_O.data = Wo.T.reshape(H, E, D).contiguous()
        if h + "self_attn.o_proj.bias" in sd:
            b.b_O.data = sd[h + "self_attn.o_proj.bias"]
        b.W_gate.data = sd[h + "mlp.gate_proj.weight"].T.contiguous()
        b.W_in.data = sd[h + "mlp.up_proj.weight"].T.contiguous()
        b.W_out.data = sd[h + "mlp.down_proj.weight"].T.contiguous()
        for hf, ours in (("up_proj", "b_in"), ("down_proj", "b_out")):
            if f"{h}mlp.{hf}.bias" in sd:
                getattr(b, ours).data = sd[f"{h}mlp.{hf}.bias"]
    if "model.norm.weight" in sd:
        m.lnf_w.data = sd["model.norm.weight"] + norm_offset
    m.W_U.data = sd.get("lm_head.weight", sd["model.embed_tokens.weight"]).T.contiguous()


_QK_NORMS = {"q_norm_w": "self_attn.q_norm", "k_norm_w": "self_attn.k_norm"}


def _llama_weights(m: Transformer, sd: dict[str, Tensor]) -> None:
    norms = {"ln1_w": "input_layernorm", "ln2_w": "post_attention_layernorm"}
    _decoder_weights(m, sd, norms | (_QK_NORMS if m.cfg.qk_norm != "none" else {}))


# ---------------------------------------------------------------- Gemma, Gemma 2, Gemma 3 (text)


def _gemma_config(c: Any) -> ModelConfig:
    t = c.model_type
    if getattr(c, "use_bidirectional_attention", False):
        raise UserError(f"{t} with use_bidirectional_attention=True is not supported (only causal models)")
    v2 = t in ("gemma2", "gemma3_text")
    if v2 and getattr(c, "attention_bias", False):
        raise UserError(f"{t} with attention_bias=True is not supported (the output bias sits inside the post-norm)")
    return _rotary_decoder(
        c,
        "gemma",
        act=_act(c.hidden_activation if v2 else c.hidden_act, t),  # what each modeling file reads
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
    _decoder_weights(m, sd, norms | (_QK_NORMS if m.cfg.qk_norm != "none" else {}), norm_offset=1.0)


# ---------------------------------------------------------------- OLMo, OLMo 2


def _olmo_config(c: Any) -> ModelConfig:
    t = c.model_type
    if getattr(c, "hidden_act", "silu") != "silu":
        raise UserError(f"activation {c.hidden_act!r} is not supported for {t}; supported: 'silu'")
    if t == "olmo":  # LayerNorm without weights (eps 1e-5), optional clamp of q, k, v
        return _rotary_decoder(c, "olmo", norm="layernorm", norm_eps=1e-5, qkv_clip=getattr(c, "clip_qkv", None))
    if getattr(c, "attention_bias", False):
        raise UserError(f"{t} with attention_bias=True is not supported (the output bias sits inside the post-norm)")
    # OLMo 2: no input norms; norms after attention and MLP; RMSNorm of the whole q and k projections
    return _rotary_decoder(c, "olmo", pre_norms=False, post_norms=True, qk_norm="all")


def _olmo_weights(m: Transformer, sd: dict[str, Tensor]) -> None:
    norms = {}
    if m.cfg.post_norms:
        norms = {"attn_post_w": "post_attention_layernorm", "mlp_post_w": "post_feedforward_layernorm", **_QK_NORMS}
    _decoder_weights(m, sd, norms)


# ---------------------------------------------------------------- GPT-NeoX / Pythia


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
        act=_act(c.hidden_act, "gpt_neox"),
        parallel_attn_mlp=bool(c.use_parallel_residual),
        **{k: v for k, v in _rope(c).items() if k != "local_rope_theta"},
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


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("gpt2", ("gpt2",), _gpt2_config, _gpt2_weights),
        Family("gpt_neox", ("gpt_neox",), _neox_config, _neox_weights),
        Family("llama", ("llama", "mistral", "qwen2", "qwen3"), _llama_config, _llama_weights),
        Family("gemma", ("gemma", "gemma2", "gemma3_text"), _gemma_config, _gemma_weights),
        Family("olmo", ("olmo", "olmo2"), _olmo_config, _olmo_weights),
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
