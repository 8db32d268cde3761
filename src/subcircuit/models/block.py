"""The weights of one layer (`Block`), in the one layout every family is converted to.

Per head: W_Q [head d_model d_head]; W_K, W_V [kv_head d_model d_head] (one per key/value group
under grouped-query attention); W_O [head d_head d_model]. MLP: W_in [d_model d_mlp] (and W_gate
for gated MLPs), W_out [d_mlp d_model]. Absent biases are stored as zeros so the code has one
shape; the weights of optional features (post-norms, q/k norms, the MLP) exist only when the
config switches them on. `Block` holds weights only: the computation is in `attention.py` and
`transformer.py`.
"""

from __future__ import annotations

import torch
from torch import nn

from subcircuit.models.config import ModelConfig


def zeros(*shape: int) -> nn.Parameter:
    return nn.Parameter(torch.zeros(*shape))


def ones(*shape: int) -> nn.Parameter:
    return nn.Parameter(torch.ones(*shape))


class Block(nn.Module):
    """Weights of one layer. Absent biases are stored as zeros so the code has one shape.
    Weights of optional features exist only when the config switches them on."""

    def __init__(self, cfg: ModelConfig, layer: int = 0) -> None:
        super().__init__()
        self.layer = layer  # its index: per-layer features (sliding window, rotary base) need it
        H, K, D, E, M = cfg.n_heads, cfg.kv_heads, cfg.d_model, cfg.d_head, cfg.d_mlp
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
