"""Our own forward pass, written so that every component's output is a separate tensor.

Every supported family is converted to one weight layout (TransformerLens-like, per head):

    W_E  [vocab d_model]            W_pos [n_ctx d_model] (learned positions only)
    W_Q  [head d_model d_head]      W_K, W_V [kv_head d_model d_head]     W_O [head d_head d_model]
    W_in [d_model d_mlp]  (W_gate for gated MLPs)                         W_out [d_mlp d_model]
    W_U  [d_model vocab]

The forward pass is split into pure functions over these weights: `embed`, `attention`
(per-head outputs from per-head query/key/value inputs), `post_attention`, `mlp` and
`unembed`. The plain forward (`Transformer.forward`) and the patched forward
(`subcircuit.patching`) are both built from them, so every family feature (a config field of
`ModelConfig`) lives in exactly one place. In the patched forward each head may read its own
residual stream for its query, key and value, which is what makes edge-level interventions
possible.

Family features and where they act:
- `embed_scale` (Gemma): in `embed`.
- `pre_norms` / `post_norms`: the attention/MLP input norms (ln1, ln2) and output norms
  (attn_post, mlp_post). A post-norm over the attention output, `RMSNorm(Σ_h head_h)`, is split
  into per-head outputs `head_h · s · w` with the one scale `s = rsqrt(mean((Σ_h head_h)²) + eps)`
  of that run: the heads' outputs still sum to the layer's output, and a change to one head's
  input changes the scale of all heads of its layer, as it does in the model.
- `qk_norm` (`head`: RMSNorm over each head's d_head, Qwen3/Gemma 3; `all`: over the whole
  projection of all heads, OLMo 2 — each query/key slot then projects its own input through
  every head's weights to get its scale), `qkv_clip` (OLMo): in `_project_qkv`.
- `sliding_window` / `window_layers`, `attn_softcap`: in `_softmax_scores`; per-layer rotary
  bases (`local_rope_theta`, `rope_factor`): `rotary_tables` gives one table per layer.
- `final_softcap`: in `unembed`.

Axis names: `c` mask configurations, `s` slots (heads or key/value groups that read their own
input), `b` batch, `p` position, `d` d_model, `e` d_head, `v` vocab.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from subcircuit.models.config import ModelConfig


def _zeros(*shape: int) -> nn.Parameter:
    return nn.Parameter(torch.zeros(*shape))


def _ones(*shape: int) -> nn.Parameter:
    return nn.Parameter(torch.ones(*shape))


class Block(nn.Module):
    """Weights of one layer. Absent biases are stored as zeros so the code has one shape.
    Weights of optional features exist only when the config switches them on."""

    def __init__(self, cfg: ModelConfig, layer: int = 0) -> None:
        super().__init__()
        self.layer = layer  # its index: per-layer features (sliding window, rotary base) need it
        H, K, D, E, M = cfg.n_heads, cfg.kv_heads, cfg.d_model, cfg.d_head, cfg.d_mlp
        self.ln1_w, self.ln1_b = _ones(D), _zeros(D)
        if cfg.post_norms:
            self.attn_post_w = _ones(D)
            if cfg.has_mlp:
                self.mlp_post_w = _ones(D)
        if cfg.qk_norm == "head":
            self.q_norm_w, self.k_norm_w = _ones(E), _ones(E)
        elif cfg.qk_norm == "all":
            self.q_norm_w, self.k_norm_w = _ones(H, E), _ones(K, E)
        self.W_Q, self.b_Q = _zeros(H, D, E), _zeros(H, E)
        self.W_K, self.b_K = _zeros(K, D, E), _zeros(K, E)
        self.W_V, self.b_V = _zeros(K, D, E), _zeros(K, E)
        self.W_O, self.b_O = _zeros(H, E, D), _zeros(D)
        if cfg.has_mlp:
            self.ln2_w, self.ln2_b = _ones(D), _zeros(D)
            self.W_in, self.b_in = _zeros(D, M), _zeros(M)
            if cfg.mlp == "gated":
                self.W_gate = _zeros(D, M)
            self.W_out, self.b_out = _zeros(M, D), _zeros(D)


class Transformer(nn.Module):
    """A decoder-only transformer in our weight layout. Build one with a family converter
    (`subcircuit.models.from_hf`) or `subcircuit.models.load`; an untrained one with
    `Transformer(cfg)` (all weights zero)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.W_E = _zeros(cfg.vocab_size, cfg.d_model)
        if cfg.positional == "learned":
            self.W_pos = _zeros(cfg.n_ctx, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.lnf_w, self.lnf_b = _ones(cfg.d_model), _zeros(cfg.d_model)
        self.W_U, self.b_U = _zeros(cfg.d_model, cfg.vocab_size), _zeros(cfg.vocab_size)

    @property
    def device(self) -> torch.device:
        return self.W_E.device

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens [b p] -> logits [b p v]. The plain, unpatched forward pass."""
        return self.run(tokens)[0]

    def run(self, tokens: Tensor, keep: bool = False) -> tuple[Tensor, list[tuple[Tensor, Tensor | None]]]:
        """The plain forward pass, optionally keeping every component's output.

        Returns logits [b p v] and, with `keep`, per layer (heads [h b p d] as each head writes
        to the residual stream, before b_O; MLP output [b p d] or None) — empty otherwise."""
        cfg = self.cfg
        resid = embed(self, tokens)  # [b p d]
        rot = rotary_tables(cfg, tokens.shape[1], resid.device, resid.dtype)
        kept: list[tuple[Tensor, Tensor | None]] = []
        for block in self.blocks:
            x = resid[None, None]  # [c=1 s=1 b p d]
            heads = post_attention(block, cfg, attention(block, cfg, x, x, x, rot))[0]  # [h b p d]
            attn_out = heads.sum(0) + block.b_O
            m = None
            if cfg.has_mlp:
                m = mlp(block, cfg, resid if cfg.parallel_attn_mlp else resid + attn_out)
                resid = resid + attn_out + m
            else:
                resid = resid + attn_out
            if keep:
                kept.append((heads, m))
        return unembed(self, resid), kept

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def normalize(x: Tensor, w: Tensor, b: Tensor, cfg: ModelConfig) -> Tensor:
    """The model's norm (LayerNorm, RMSNorm or none) over the last axis, computed in fp32."""
    if cfg.norm == "none":
        return x
    dtype = x.dtype
    x, w, b = (t.to(_at_least_fp32(dtype)) for t in (x, w, b))
    if cfg.norm == "layernorm":
        x = F.layer_norm(x, (x.shape[-1],), w, b, cfg.norm_eps)
    else:
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + cfg.norm_eps) * w
    return x.to(dtype)


def _at_least_fp32(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def embed(model: Transformer, tokens: Tensor) -> Tensor:
    """tokens [b p] -> the `input` sender's output [b p d] (token + learned position embeddings)."""
    x = model.W_E[tokens]
    if model.cfg.embed_scale != 1.0:
        x = x * torch.tensor(model.cfg.embed_scale, dtype=x.dtype)
    if model.cfg.positional == "learned":
        x = x + model.W_pos[: tokens.shape[1]]
    return x


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


class _SharedInputNorm(torch.autograd.Function):
    """The norm of slots that all read one input (x [c s ...] expanded over s, as when every
    receiver of a stage reads the same mixture): normalized once and expanded, while backward
    still gives each slot its own input gradient, dx_s = r·(g_s − mean(g_s) − u·mean(u·g_s))
    with g_s = dy_s·w, u the normalized input and r its reciprocal scale (the mean(g_s) term
    for LayerNorm only). Same values as `normalize` per slot; the weights get no gradient."""

    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, b: Tensor, cfg: ModelConfig) -> Tensor:
        dtype = x.dtype
        x1 = x[:, :1].to(_at_least_fp32(dtype))
        if cfg.norm == "layernorm":
            x1 = x1 - x1.mean(-1, keepdim=True)
        r = torch.rsqrt(x1.pow(2).mean(-1, keepdim=True) + cfg.norm_eps)
        u = x1 * r
        ctx.save_for_backward(u, r, w)
        ctx.layernorm, ctx.dtype = cfg.norm == "layernorm", dtype
        y = u * w.to(u.dtype) + (b.to(u.dtype) if cfg.norm == "layernorm" else 0)
        return y.to(dtype).expand(x.shape)

    @staticmethod
    def backward(ctx, dy: Tensor):
        u, r, w = ctx.saved_tensors  # u [c 1 .. d], r [c 1 .. 1]
        dy = dy.to(u.dtype)
        w = w.to(u.dtype)
        d = u.shape[-1]
        # Per slot only three passes over dy: the two projections onto (u·w) and w, and one fused
        # multiply-add: dx = dy·(w·r) − (u·r)·mean(dy·u·w) [− r·mean(dy·w) for LayerNorm].
        a = (dy * (u * w)).sum(-1, keepdim=True) / d  # [c s .. 1]
        dx = torch.addcmul(dy * (w * r), u * r, a, value=-1)
        if ctx.layernorm:
            dx = dx - r * ((dy * w).sum(-1, keepdim=True) / d)
        return dx.to(ctx.dtype), None, None, None


def attention_pattern(block: Block, cfg: ModelConfig, q_in: Tensor, k_in: Tensor, rot: Rotary | None) -> Tensor:
    """Attention probabilities [c h b q k] from query/key inputs (see `attention`)."""
    q = _queries(block, cfg, q_in, None)
    k = _keys(block, cfg, k_in, None)
    if rot is not None:
        q, k = _rotate(q, rot[block.layer]), _rotate(k, rot[block.layer])
    return _softmax_scores(cfg, q, k, cfg.window(block.layer))


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


def attention(
    block: Block,
    cfg: ModelConfig,
    q_in: Tensor,
    k_in: Tensor,
    v_in: Tensor,
    rot: Rotary | None,
    heads: Tensor | None = None,
    q_positions: Tensor | None = None,
) -> Tensor:
    """Per-head attention outputs [c h b p d] (without the output bias b_O and before any
    post-norm: see `post_attention`).

    q_in [c s b p d] with s in {1, h}; k_in, v_in [c s b p d] with s in {1, kv_heads, h}: the
    residual stream each head's query (each key/value group's key and value, or each head's own
    key and value) reads. s = 1 means all share one residual stream, as in the plain model.
    `heads` (optional) computes only those heads: the output is then [c len(heads) b p d].
    `rot`: the per-layer rotary tables of `rotary_tables` (None without rotary embeddings).
    `q_positions` [b] (optional): only one query per example, at that position; q_in is then
    [c s b 1 d] (the inputs there) and the output [c h b 1 d]."""
    q = _queries(block, cfg, q_in, heads)
    k = _keys(block, cfg, k_in, heads)
    v = _keys_or_values(block.W_V, block.b_V, block, cfg, v_in, heads)
    if rot is not None:
        cos, sin = rot[block.layer]
        at = (cos, sin) if q_positions is None else (cos[q_positions][:, None], sin[q_positions][:, None])
        q, k = _rotate(q, at), _rotate(k, (cos, sin))
    z = _softmax_scores(cfg, q, k, cfg.window(block.layer), q_positions) @ v  # [c h b p e]
    W_O = block.W_O if heads is None else block.W_O[heads]
    return torch.einsum("chbpe,hed->chbpd", z, W_O)


def post_attention(block: Block, cfg: ModelConfig, heads: Tensor) -> Tensor:
    """Every head's output [c h b p d] of one layer (from `attention`, all heads) -> what each
    writes to the residual stream. The identity unless the model has post-norms; then
    RMSNorm(Σ_h head_h) is split into head_h · rsqrt(mean((Σ_h head_h)²) + eps) · w (fp32 scale)."""
    if not cfg.post_norms:
        return heads
    dtype = heads.dtype
    f = heads.to(_at_least_fp32(dtype))
    scale = torch.rsqrt(f.sum(1, keepdim=True).pow(2).mean(-1, keepdim=True) + cfg.norm_eps)  # [c 1 b p 1]
    return (f * scale * block.attn_post_w.to(f.dtype)).to(dtype)


_ACTS = {
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
}


def mlp(block: Block, cfg: ModelConfig, x: Tensor) -> Tensor:
    """MLP output [... d] (bias and post-norm included) from its residual input [... d]."""
    h = normalize(x, block.ln2_w, block.ln2_b, cfg) if cfg.pre_norms else x
    act = _ACTS[cfg.act]
    if cfg.mlp == "gated":
        hidden = act(h @ block.W_gate) * (h @ block.W_in + block.b_in)
    else:
        hidden = act(h @ block.W_in + block.b_in)
    out = hidden @ block.W_out + block.b_out
    if cfg.post_norms:
        out = normalize(out, block.mlp_post_w, block.ln2_b, cfg)  # RMSNorm: the bias is not read
    return out


def unembed(model: Transformer, x: Tensor) -> Tensor:
    """Final residual [... d] -> logits [... v] (final norm, unembedding, optional soft-cap)."""
    cfg = model.cfg
    if cfg.final_norm:
        x = normalize(x, model.lnf_w, model.lnf_b, cfg)
    logits = x @ model.W_U + model.b_U
    if cfg.final_softcap is not None:
        logits = torch.tanh(logits / cfg.final_softcap) * cfg.final_softcap
    return logits
