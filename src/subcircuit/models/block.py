"""The weights of one layer (`Block`), in the one layout every family is converted to.

Per head: W_Q [head d_model d_head]; W_K, W_V [kv_head d_model d_head] (one per key/value group
under grouped-query attention); W_O [head d_head d_model]. MLP: W_in [d_model d_mlp] (and W_gate
for gated MLPs), W_out [d_mlp d_model]. Absent biases are stored as zeros so the code has one
shape; the weights of optional features (post-norms, q/k norms, the MLP) exist only when the
config switches them on. `Block` holds weights only: the computation is in `attention.py` and
`transformer.py`. Factory keywords (`dtype`, `device`) build it at the target dtype, or on the
"meta" device for planning, without a float32 detour; `weights_at` and `moved` are how the
component functions run a layer where its weights are (see `models.placement`).
"""

from __future__ import annotations

import copy
from typing import Any, TypeVar

import torch
from torch import nn

from subcircuit.models.config import ModelConfig

T = TypeVar("T")


def zeros(*shape: int, **factory: Any) -> nn.Parameter:
    """A zero parameter; `factory`: torch's `dtype`/`device` (a "meta" device allocates nothing)."""
    return nn.Parameter(torch.zeros(*shape, **factory))


def ones(*shape: int, **factory: Any) -> nn.Parameter:
    return nn.Parameter(torch.ones(*shape, **factory))


def weights_at(block: nn.Module) -> nn.Module:
    """The block whose weights the computation reads: the block itself, or, for a block kept in
    host memory (`--offload cpu`: `block.stream_to` set by `models.placement.place`), a shallow
    twin whose weights are copied to that device for this call (the host copy stays)."""
    dev = getattr(block, "stream_to", None)
    if dev is None:
        return block
    twin = copy.copy(block)
    twin._parameters = {k: None if v is None else v.to(dev, non_blocking=True)  # type: ignore[assignment]
                        for k, v in block._parameters.items()}
    twin.stream_to = None
    return twin


def moved(x: T, device: torch.device) -> T:
    """`x` (a tensor, a tuple of tensors, a dict of them or None) on `device`: the residual stream
    and cached sender outputs cross devices where a placed model's layers change."""
    if x is None:
        return x
    if isinstance(x, torch.Tensor):
        return x if x.device == device else x.to(device)  # type: ignore[return-value]
    if isinstance(x, tuple):
        return tuple(moved(t, device) for t in x)  # type: ignore[return-value]
    if isinstance(x, dict):
        return {k: moved(v, device) for k, v in x.items()}  # type: ignore[return-value]
    return x


_zeros, _ones = zeros, ones


class Block(nn.Module):
    """Weights of one layer. Absent biases are stored as zeros so the code has one shape.
    Weights of optional features exist only when the config switches them on."""

    def __init__(self, cfg: ModelConfig, layer: int = 0, **factory: Any) -> None:
        super().__init__()
        self.layer = layer  # its index: per-layer features (sliding window, rotary base) need it
        self.stream_to: torch.device | None = None  # offloaded: the device its weights are copied to
        H, K, D, E, M = cfg.n_heads, cfg.kv_heads, cfg.d_model, cfg.d_head, cfg.d_mlp

        def zeros(*shape: int) -> nn.Parameter:
            return _zeros(*shape, **factory)

        def ones(*shape: int) -> nn.Parameter:
            return _ones(*shape, **factory)

        self.ln1_w, self.ln1_b = ones(D), zeros(D)
        if cfg.post_norms:
            self.attn_post_w = ones(D)
            if cfg.has_mlp:
                self.mlp_post_w = ones(D)
        if cfg.qk_norm == "head":
            self.q_norm_w, self.k_norm_w = ones(E), ones(E)
        elif cfg.qk_norm == "all":
            self.q_norm_w, self.k_norm_w = ones(H, E), ones(K, E)
        self.W_Q, self.b_Q = zeros(H, D, E), zeros(H, E)
        self.W_K, self.b_K = zeros(K, D, E), zeros(K, E)
        self.W_V, self.b_V = zeros(K, D, E), zeros(K, E)
        self.W_O, self.b_O = zeros(H, E, D), zeros(D)
        if cfg.has_mlp:
            self.ln2_w, self.ln2_b = ones(D), zeros(D)
            self.W_in, self.b_in = zeros(D, M), zeros(M)
            if cfg.mlp == "gated":
                self.W_gate = zeros(D, M)
            self.W_out, self.b_out = zeros(M, D), zeros(D)
