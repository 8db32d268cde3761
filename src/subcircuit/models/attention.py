"""Attention: rotary embeddings, query/key/value projections, scores and per-head outputs.

These are the component functions of a layer's attention. The plain forward
(`Transformer.run`), the patched forwards (`subcircuit.patching`) and the role measurements all
call them, so each attention feature of a family lives here once:

- `qk_norm` (`head`: RMSNorm over each head's d_head, Qwen3/Gemma 3; `all`: over the whole
  projection of all heads, OLMo 2 — each query/key slot then projects its own input through
  every head's weights to get its scale), `qkv_clip` (OLMo): in `_project_qkv`;
- `pre_norms` (the input norm ln1; OLMo 2 has none): in `_attn_in`;
- `sliding_window` / `window_layers`, `attn_softcap`, the attention scale and the causal mask:
  in `_softmax_scores`; per-layer rotary bases (`local_rope_theta`, `rope_factor`) and partial
  rotary (`rotary_dim`): `rotary_tables` gives one table per layer;
- `post_norms` over the attention output, `RMSNorm(Σ_h head_h)`: `post_attention` splits it into
  per-head outputs `head_h · s · w` with the one scale `s = rsqrt(mean((Σ_h head_h)²) + eps)` of
  that run: the heads' outputs still sum to the layer's output, and a change to one head's input
  changes the scale of all heads of its layer, as it does in the model.

In the patched forward each head may read its own residual stream for its query, key and
value (an input with s slots), which is what makes edge-level interventions possible.

Axis names: `c` mask configurations, `s` slots (heads or key/value groups that read their own
input), `b` batch, `p` position, `d` d_model, `e` d_head, `h` heads.
"""

from __future__ import annotations

import math
from typing import Literal, overload

import torch
from torch import Tensor

from subcircuit.models.block import Block, moved, weights_at
from subcircuit.models.config import ModelConfig
from subcircuit.models.norms import _at_least_fp32, _SharedInputNorm, normalize

Rotary = tuple[tuple[Tensor, Tensor], ...]


def rotary_tables(cfg: ModelConfig, n_pos: int, device: torch.device, dtype: torch.dtype) -> Rotary | None:
    """Per layer, (cos, sin) [p rotary_dim] for rotary models (half-split convention), else None.
    Layers with the same (theta, factor) share one table."""
    if cfg.positional != "rotary":
        return None
    rd = cfg.rotary_dim or cfg.d_head
    tables: dict[tuple[float, float], tuple[Tensor, Tensor]] = {}
    for L in range(cfg.n_layers):
        theta, factor = cfg.rope(L)
        if (theta, factor) not in tables:
            inv = 1.0 / (theta ** (torch.arange(0, rd, 2, device=device, dtype=torch.float32) / rd)) / factor
            ang = torch.arange(n_pos, device=device, dtype=torch.float32)[:, None] * inv[None, :]
            ang = torch.cat([ang, ang], dim=-1)
            tables[theta, factor] = ang.cos().to(dtype), ang.sin().to(dtype)
    return tuple(tables[cfg.rope(L)] for L in range(cfg.n_layers))


def _rotate(x: Tensor, rot: tuple[Tensor, Tensor]) -> Tensor:
    """x [... p e] rotated by one layer's (cos, sin) [p rotary_dim]; dims past rotary_dim pass."""
    cos, sin = rot
    rd = cos.shape[-1]
    xr, xp = x[..., :rd], x[..., rd:]
    half = rd // 2
    rotated = torch.cat([-xr[..., half:], xr[..., :half]], dim=-1)
    xr = xr * cos + rotated * sin
    return torch.cat([xr, xp], dim=-1) if xp.shape[-1] else xr


def _project(x: Tensor, W: Tensor, b: Tensor, slot_weight: Tensor | None) -> Tensor:
    """x [c s b p d] (normalized) -> [c n b p e].

    With s == 1 and no `slot_weight`, every one of the n heads of W [n d e] reads the same input
    (one fused matmul). Otherwise slot i reads x[:, i] and is projected by W[slot_weight[i]]
    (or W[i] without `slot_weight`; n = s)."""
    c, s, b_, p, d = x.shape
    if s == 1 and slot_weight is None:
        n, _, e = W.shape
        y = x.reshape(c, b_ * p, d) @ W.permute(1, 0, 2).reshape(d, n * e)
        return (y.view(c, b_, p, n, e) + b).permute(0, 3, 1, 2, 4)
    Ws, bs = (W, b) if slot_weight is None else (W[slot_weight], b[slot_weight])
    return torch.einsum("csbpd,sde->csbpe", x, Ws) + bs[None, :, None, None, :]


def _project_qkv(
    block: Block, cfg: ModelConfig, x: Tensor, W: Tensor, b: Tensor, slot_weight: Tensor | None, norm_w: Tensor | None
) -> Tensor:
    """`_project` of ln1-normed inputs x [c s b p d] -> [c n b p e], then the OLMo clip and, when
    `norm_w` is given (queries, keys), the q/k norm of the config.

    With `qk_norm == "all"` the RMS runs over the projection through *every* head's weights W
    [n_all d e]: computed once when all slots share one input (s == 1, slot_weight None: the
    projection is already the full one), else for each slot's own input."""
    x = _attn_in(block, cfg, x)
    y = _project(x, W, b, slot_weight)
    if cfg.qkv_clip is not None:
        y = y.clamp(-cfg.qkv_clip, cfg.qkv_clip)
    if norm_w is None or cfg.qk_norm == "none":
        return y
    dtype = y.dtype
    yf = y.to(_at_least_fp32(dtype))
    if cfg.qk_norm == "head":
        ms = yf.pow(2).mean(-1, keepdim=True)  # [c n b p 1]
        w = norm_w
    else:
        if x.shape[1] == 1 and slot_weight is None:  # y holds every head's projection of the one input
            ms = yf.pow(2).mean((1, 4), keepdim=True)  # [c 1 b p 1]
        else:  # each slot projected through all n_all heads: [c s b p n_all e]
            full = torch.einsum("csbpd,nde->csbpne", x, W) + b
            if cfg.qkv_clip is not None:
                full = full.clamp(-cfg.qkv_clip, cfg.qkv_clip)
            ms = full.to(yf.dtype).pow(2).mean((-2, -1))[..., None]  # [c s b p 1]
        idx = slot_weight if slot_weight is not None else torch.arange(y.shape[1], device=y.device)
        w = norm_w[idx][None, :, None, None, :]  # [1 n 1 1 e]
    return (yf * torch.rsqrt(ms + cfg.norm_eps) * w.to(yf.dtype)).to(dtype)


def _attn_in(block: Block, cfg: ModelConfig, x: Tensor) -> Tensor:
    """The attention input norm ln1 (none for models without pre-norms)."""
    if not cfg.pre_norms or cfg.norm == "none":
        return x
    w, b = block.ln1_w, block.ln1_b
    if x.requires_grad and x.shape[1] > 1 and x.stride(1) == 0 and not (w.requires_grad or b.requires_grad):
        return _SharedInputNorm.apply(x, w, b, cfg)
    return normalize(x, w, b, cfg)


def _slot_map(cfg: ModelConfig, s: int) -> Tensor | None:
    """Which key/value weight group each of s input slots uses (None: slots are the groups)."""
    if s == 1 or s == cfg.kv_heads:
        return None
    if s == cfg.n_heads:
        return torch.arange(cfg.n_heads) // cfg.group_size
    raise ValueError(f"key/value inputs have {s} slots; expected 1, {cfg.kv_heads} or {cfg.n_heads}")


def _to_heads(cfg: ModelConfig, x: Tensor) -> Tensor:
    """[c n b p e] with n key/value groups -> [c h b p e]."""
    if x.shape[1] == cfg.n_heads:
        return x
    return x.repeat_interleave(cfg.group_size, dim=1)


def _queries(block: Block, cfg: ModelConfig, q_in: Tensor, heads: Tensor | None) -> Tensor:
    """Queries [c h' b p e] of `heads` (all when None) from q_in [c s b p d], s in {1, h}."""
    norm_w = getattr(block, "q_norm_w", None)
    if heads is None or q_in.shape[1] == 1:
        q = _project_qkv(block, cfg, q_in, block.W_Q, block.b_Q, None, norm_w)
        return q if heads is None else q[:, heads]
    return _project_qkv(block, cfg, q_in[:, heads], block.W_Q, block.b_Q, heads, norm_w)


def _keys(block: Block, cfg: ModelConfig, x: Tensor, heads: Tensor | None) -> Tensor:
    return _keys_or_values(block.W_K, block.b_K, block, cfg, x, heads, getattr(block, "k_norm_w", None))


def _keys_or_values(
    W: Tensor, b: Tensor, block: Block, cfg: ModelConfig, x: Tensor, heads: Tensor | None, norm_w: Tensor | None = None
) -> Tensor:
    """Keys (or values) [c h' b p e] of `heads` from x [c s b p d], s in {1, kv_heads, h}.
    `norm_w`: the key norm's weight (keys of models with q/k norms), None for values."""
    if heads is not None and x.shape[1] == cfg.n_heads:  # one input per head: project only those
        return _project_qkv(block, cfg, x[:, heads], W, b, heads // cfg.group_size, norm_w)
    y = _to_heads(cfg, _project_qkv(block, cfg, x, W, b, _slot_map(cfg, x.shape[1]), norm_w))
    return y if heads is None else y[:, heads]


def _softmax_scores(cfg: ModelConfig, q: Tensor, k: Tensor, window: int | None,
                    q_positions: Tensor | None = None) -> Tensor:
    """q [c h b q e], k [c h b k e] -> probabilities [c h b q k] (scale, soft-cap, causal and
    sliding-window masks; computed in fp32). Query i sits at position i, or with `q_positions`
    [b] (one query per example, q = 1) at position q_positions[b]."""
    scores = (q @ k.transpose(-1, -2)).to(_at_least_fp32(q.dtype)) * cfg.scale  # [c h b q k]
    if cfg.attn_softcap is not None:
        scores = torch.tanh(scores / cfg.attn_softcap) * cfg.attn_softcap
    if cfg.causal or window:
        j = torch.arange(k.shape[-2], device=q.device)
        i = (torch.arange(q.shape[-2], device=q.device) if q_positions is None else q_positions)[:, None]
        allowed = torch.ones(len(i), len(j), dtype=torch.bool, device=q.device)  # [q k] or [b k]
        if cfg.causal:
            allowed &= j[None, :] <= i
        if window:
            allowed &= (i - j[None, :]) < window
        scores = scores.masked_fill(~(allowed if q_positions is None else allowed[:, None]), -math.inf)
    return scores.softmax(-1).to(q.dtype)


def attention_pattern(
    block: Block,
    cfg: ModelConfig,
    q_in: Tensor,
    k_in: Tensor,
    rot: Rotary | None,
    heads: Tensor | None = None,
    q_positions: Tensor | None = None,
) -> Tensor:
    """Attention probabilities [c h b q k] from query/key inputs (arguments as in `attention`,
    which computes its probabilities with this function)."""
    q = _queries(block, cfg, q_in, heads)
    k = _keys(block, cfg, k_in, heads)
    if rot is not None:
        cos, sin = rot[block.layer]
        at = (cos, sin) if q_positions is None else (cos[q_positions][:, None], sin[q_positions][:, None])
        q, k = _rotate(q, at), _rotate(k, (cos, sin))
    return _softmax_scores(cfg, q, k, cfg.window(block.layer), q_positions)


@overload
def attention(
    block: Block, cfg: ModelConfig, q_in: Tensor, k_in: Tensor, v_in: Tensor, rot: Rotary | None,
    heads: Tensor | None = None, q_positions: Tensor | None = None, *, with_pattern: Literal[False] = False,
) -> Tensor: ...
@overload
def attention(
    block: Block, cfg: ModelConfig, q_in: Tensor, k_in: Tensor, v_in: Tensor, rot: Rotary | None,
    heads: Tensor | None = None, q_positions: Tensor | None = None, *, with_pattern: Literal[True],
) -> tuple[Tensor, Tensor]: ...
def attention(
    block: Block,
    cfg: ModelConfig,
    q_in: Tensor,
    k_in: Tensor,
    v_in: Tensor,
    rot: Rotary | None,
    heads: Tensor | None = None,
    q_positions: Tensor | None = None,
    *,
    with_pattern: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Per-head attention outputs [c h b p d] (without the output bias b_O and before any
    post-norm: see `post_attention`).

    q_in [c s b p d] with s in {1, h}; k_in, v_in [c s b p d] with s in {1, kv_heads, h}: the
    residual stream each head's query (each key/value group's key and value, or each head's own
    key and value) reads. s = 1 means all share one residual stream, as in the plain model.
    `heads` (optional) computes only those heads: the output is then [c len(heads) b p d].
    `rot`: the per-layer rotary tables of `rotary_tables` (None without rotary embeddings).
    `q_positions` [b] (optional): only one query per example, at that position; q_in is then
    [c s b 1 d] (the inputs there) and the output [c h b 1 d].
    `with_pattern`: also return the attention probabilities [c h b q k] the outputs were
    computed with (what the head-role measurements read)."""
    home = q_in.device  # a placed model: computed where the layer's weights are, returned here
    block = weights_at(block)
    q_in, k_in, v_in, rot, heads, q_positions = moved((q_in, k_in, v_in, rot, heads, q_positions), block.W_Q.device)
    pattern = attention_pattern(block, cfg, q_in, k_in, rot, heads, q_positions)
    v = _keys_or_values(block.W_V, block.b_V, block, cfg, v_in, heads)
    z = pattern @ v  # [c h b p e]
    W_O = block.W_O if heads is None else block.W_O[heads]
    out = moved(torch.einsum("chbpe,hed->chbpd", z, W_O), home)
    return (out, moved(pattern, home)) if with_pattern else out


def post_attention(block: Block, cfg: ModelConfig, heads: Tensor) -> Tensor:
    """Every head's output [c h b p d] of one layer (from `attention`, all heads) -> what each
    writes to the residual stream. The identity unless the model has post-norms; then
    RMSNorm(Σ_h head_h) is split into head_h · rsqrt(mean((Σ_h head_h)²) + eps) · w (fp32 scale)."""
    if not cfg.post_norms:
        return heads
    dtype = heads.dtype
    f = heads.to(_at_least_fp32(dtype))
    scale = torch.rsqrt(f.sum(1, keepdim=True).pow(2).mean(-1, keepdim=True) + cfg.norm_eps)  # [c 1 b p 1]
    return (f * scale * block.attn_post_w.to(f.device, f.dtype)).to(dtype)
