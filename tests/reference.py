"""A slow, independent reference for edge patching: hook-style path patching, head by head.

It runs the plain residual-stream forward pass, keeps every sender's output, and gives each
receiver the input `residual_before_it − Σ_{removed s→r} (out_s − abl_s)`. No masks, no
batching, no chunks: one loop per head. The fast primitive in `subcircuit.patching` must agree
with it."""

from __future__ import annotations

import torch
from torch import Tensor

from subcircuit.graph import Graph
from subcircuit.models.transformer import Transformer, _rotate, embed, mlp, normalize, rotary_tables, unembed


def reference_logits(
    model: Transformer, graph: Graph, tokens: Tensor, abl: Tensor, removed: set[str] | frozenset[str]
) -> Tensor:
    """Logits [b p v] with the edges in `removed` (names) ablated to `abl` [sender b p d]."""
    cfg = model.cfg
    sidx = {n.name: i for i, n in enumerate(graph.senders)}
    by_receiver: dict[str, list[str]] = {}
    for e in removed:
        s, r = e.split("->")
        by_receiver.setdefault(r, []).append(s)
    out: dict[str, Tensor] = {"input": embed(model, tokens)}
    resid = out["input"].clone()
    rot = rotary_tables(cfg, tokens.shape[1], tokens.device, resid.dtype)

    def inp(receiver: str, resid: Tensor) -> Tensor:
        x = resid
        for s in by_receiver.get(receiver, []):
            x = x - out[s] + abl[sidx[s]]
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
            xq, xk, xv = (normalize(inp(n, attn_resid), blk.ln1_w, blk.ln1_b, cfg) for n in (qn, kn, vn))
            q = xq @ blk.W_Q[h] + blk.b_Q[h]
            k = xk @ blk.W_K[g] + blk.b_K[g]
            v = xv @ blk.W_V[g] + blk.b_V[g]
            if rot is not None:
                q, k = _rotate(q, rot), _rotate(k, rot)
            scores = (q @ k.transpose(-1, -2)) * cfg.scale
            if cfg.causal:
                scores = scores.masked_fill(torch.ones(p, p, dtype=torch.bool).triu(1), float("-inf"))
            heads.append(scores.softmax(-1) @ v @ blk.W_O[h])
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
