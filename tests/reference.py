"""A slow, independent reference for edge patching: hook-style path patching, head by head.

It runs the plain residual-stream forward pass, keeps every sender's output, and gives each
receiver the input `residual_before_it − Σ_{removed s→r} (out_s − abl_s)`. No masks, no
batching, no chunks: one loop per head. The fast primitive in `subcircuit.patching` must agree
with it.

Family features are written out here again, head by head, rather than taken from the model code:
q/k norms (per head, or over the whole projection of all heads), the OLMo clip, soft-capped
scores, per-layer sliding windows and rotary tables, and post-norms (one RMS scale per layer,
shared by its heads)."""

from __future__ import annotations

import torch
from torch import Tensor

from subcircuit.graph import Graph
from subcircuit.models.attention import _rotate, rotary_tables
from subcircuit.models.norms import normalize
from subcircuit.models.transformer import Transformer, embed, mlp, unembed


def reference_logits(
    model: Transformer, graph: Graph, tokens: Tensor, abl: Tensor, removed: set[str] | frozenset[str],
    span_ids: Tensor | None = None, spans: tuple[str, ...] = (),
) -> Tensor:
    """Logits [b p v] with the edges in `removed` (names) ablated to `abl` [sender b p d].

    Positional edges `S->R@SPAN` (with `span_ids` [b p], the span index of each token, and the
    span names `spans`) are patched only at the tokens of that span: hook-style, token by token."""
    cfg = model.cfg
    sidx = {n.name: i for i, n in enumerate(graph.senders)}
    by_receiver: dict[str, list[tuple[str, Tensor | None]]] = {}
    for e in removed:
        s, r = e.split("->")
        where = None
        if "@" in r:
            r, span = r.split("@")
            where = (span_ids == spans.index(span))[..., None].to(abl.dtype)  # [b p 1]
        by_receiver.setdefault(r, []).append((s, where))
    out: dict[str, Tensor] = {"input": embed(model, tokens)}
    resid = out["input"].clone()
    rot = rotary_tables(cfg, tokens.shape[1], tokens.device, resid.dtype)

    def inp(receiver: str, resid: Tensor) -> Tensor:
        x = resid
        for s, where in by_receiver.get(receiver, []):
            x = x - out[s] + abl[sidx[s]] if where is None else x - (out[s] - abl[sidx[s]]) * where
        return x

    def head_names(L: int, h: int) -> tuple[str, str, str]:
        g = graph.granularity
        if g == "layers":
            return (f"a{L}",) * 3
        if g == "heads":
            return (f"a{L}.h{h}",) * 3
        kv = f"a{L}.g{h // cfg.group_size}" if cfg.is_gqa else f"a{L}.h{h}"
        return f"a{L}.h{h}<q>", f"{kv}<k>", f"{kv}<v>"

    p = tokens.shape[1]
    for L, blk in enumerate(model.blocks):
        attn_resid = resid
        heads = []
        for h in range(cfg.n_heads):
            qn, kn, vn = head_names(L, h)
            g = h // cfg.group_size
            xq, xk, xv = (_ln1(cfg, blk, inp(n, attn_resid)) for n in (qn, kn, vn))
            q = _proj(cfg, xq, blk.W_Q, blk.b_Q, h, getattr(blk, "q_norm_w", None))
            k = _proj(cfg, xk, blk.W_K, blk.b_K, g, getattr(blk, "k_norm_w", None))
            v = _proj(cfg, xv, blk.W_V, blk.b_V, g, None)
            if rot is not None:
                q, k = _rotate(q, rot[L]), _rotate(k, rot[L])
            scores = (q @ k.transpose(-1, -2)) * cfg.scale
            if cfg.attn_softcap is not None:
                scores = cfg.attn_softcap * torch.tanh(scores / cfg.attn_softcap)
            i = torch.arange(p)
            hidden = i[None, :] > i[:, None] if cfg.causal else torch.zeros(p, p, dtype=torch.bool)
            if cfg.window(L) is not None:
                hidden |= i[:, None] - i[None, :] >= cfg.window(L)
            scores = scores.masked_fill(hidden, float("-inf"))
            heads.append(scores.softmax(-1) @ v @ blk.W_O[h])
        if cfg.post_norms:
            total = sum(heads)
            scale = torch.rsqrt(total.pow(2).mean(-1, keepdim=True) + cfg.norm_eps)
            heads = [o * scale * blk.attn_post_w for o in heads]
        if graph.granularity == "layers":
            out[f"a{L}"] = sum(heads)
        else:
            for h, o in enumerate(heads):
                out[f"a{L}.h{h}"] = o
        new = resid + sum(heads) + blk.b_O
        if cfg.has_mlp:
            mlp_resid = attn_resid if cfg.parallel_attn_mlp else new
            out[f"m{L}"] = mlp(blk, cfg, inp(f"m{L}", mlp_resid))
            new = new + out[f"m{L}"]
        resid = new
    return unembed(model, inp("logits", resid))


def _ln1(cfg, blk, x: Tensor) -> Tensor:
    return normalize(x, blk.ln1_w, blk.ln1_b, cfg) if cfg.pre_norms else x


def _proj(cfg, x: Tensor, W: Tensor, b: Tensor, i: int, norm_w: Tensor | None) -> Tensor:
    """x [b p d] -> head (or group) i's query/key/value [b p e]."""

    def clip(y: Tensor) -> Tensor:
        return y if cfg.qkv_clip is None else y.clamp(-cfg.qkv_clip, cfg.qkv_clip)

    y = clip(x @ W[i] + b[i])
    if norm_w is None or cfg.qk_norm == "none":
        return y
    if cfg.qk_norm == "head":
        return y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + cfg.norm_eps) * norm_w
    full = clip(torch.einsum("bpd,nde->bpne", x, W) + b)  # every head's projection of this input
    return y * torch.rsqrt(full.pow(2).mean((-2, -1))[..., None] + cfg.norm_eps) * norm_w[i]
