"""The norms of the forward pass: LayerNorm, RMSNorm or none, always computed in fp32.

`normalize` is the one norm every component uses (attention and MLP inputs, post-norms, the
final norm). `_SharedInputNorm` is the same computation for the patched forward's common case
where every slot of a stage reads one and the same residual mixture: it normalizes once and
expands, while its backward still gives each slot its own input gradient (the gradient
methods — EAP, EAP-IG, Edge Pruning — need per-slot gradients).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from subcircuit.models.config import ModelConfig


def _at_least_fp32(dtype: torch.dtype) -> torch.dtype:
    """The dtype norms, softmax and soft-caps compute in: fp32, or wider when the model is."""
    return torch.promote_types(dtype, torch.float32)


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
