"""What every family converter is built from: the `Family` record and the pieces the families share.

A family converter translates a transformers config into a `ModelConfig` (the switches of our
one forward pass) and copies a transformers state dict into our weight layout (see
`subcircuit.models.block`). The rotary decoders (Llama, Gemma, OLMo) share one config reader
(`rotary_decoder`) and one state-dict layout (`decoder_weights`); what differs between them is
the family features they switch on. Unsupported features are refused with a one-line UserError.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from subcircuit.errors import UserError
from subcircuit.models.config import ModelConfig
from subcircuit.models.transformer import Transformer


@dataclass(frozen=True)
class Family:
    """One family: the transformers `model_type`s it covers, its config reader and its weight copier."""

    name: str
    model_types: tuple[str, ...]
    config: Callable[[Any], ModelConfig]
    weights: Callable[[Transformer, dict[str, Tensor]], None]


def hf_get(hf_cfg: Any, *names: str, default: Any = None) -> Any:
    """The first of the config attributes `names` that is set (not None), else `default`."""
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


def rope_fields(hf_cfg: Any) -> dict[str, Any]:
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
        theta = float(hf_get(hf_cfg, "rope_theta", default=10000.0))
    d_head = head_dim(hf_cfg)
    partial = float((params or {}).get("partial_rotary_factor", hf_get(hf_cfg, "partial_rotary_factor", default=1.0)))
    rotary_dim = None if partial == 1.0 else int(d_head * partial)
    out = {"rope_theta": theta, "rope_factor": factor, "rotary_dim": rotary_dim}
    if local is not None and (local != theta or factor != 1.0):  # the window layers' own rotary
        out["local_rope_theta"] = local
    return out


def head_dim(c: Any) -> int:
    """d_head of a transformers config (`head_dim`, else hidden_size / heads)."""
    return hf_get(c, "head_dim", default=c.hidden_size // c.num_attention_heads)


def window_fields(c: Any) -> dict[str, Any]:
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


def activation(name: str, family: str) -> str:
    """Our name of a transformers activation; a one-line UserError for an unsupported one."""
    if name not in _ACTS:
        raise UserError(f"{family} activation {name!r} is not supported; supported: {', '.join(sorted(_ACTS))}")
    return _ACTS[name]


def rotary_decoder(c: Any, family: str, **features: Any) -> ModelConfig:
    """The fields every rotary decoder (Llama, Gemma, OLMo) shares, plus family `features`."""
    fields: dict[str, Any] = dict(
        family=family,
        n_layers=c.num_hidden_layers,
        d_model=c.hidden_size,
        n_heads=c.num_attention_heads,
        n_kv_heads=hf_get(c, "num_key_value_heads", default=c.num_attention_heads),
        d_head=head_dim(c),
        d_mlp=c.intermediate_size,
        vocab_size=c.vocab_size,
        n_ctx=hf_get(c, "max_position_embeddings", default=2048),
        norm="rmsnorm",
        norm_eps=hf_get(c, "rms_norm_eps", default=1e-6),
        positional="rotary",
        mlp="gated",
        act="silu",
        **rope_fields(c),
        **window_fields(c),
    )
    fields.update(features)
    return ModelConfig(**fields)


def linear_heads(sd: dict[str, Tensor], key: str, n: int, E: int) -> tuple[Tensor, Tensor | None]:
    """nn.Linear weight [n*e, d] -> [n d e], bias [n*e] -> [n e]."""
    W = sd[key + ".weight"]
    d = W.shape[1]
    bias = sd.get(key + ".bias")
    return W.reshape(n, E, d).permute(0, 2, 1).contiguous(), None if bias is None else bias.reshape(n, E)


def decoder_weights(m: Transformer, sd: dict[str, Tensor], norms: dict[str, str], norm_offset: float = 0.0) -> None:
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
            W, bias = linear_heads(sd, f"{h}self_attn.{name}_proj", n, E)
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


QK_NORMS = {"q_norm_w": "self_attn.q_norm", "k_norm_w": "self_attn.k_norm"}
