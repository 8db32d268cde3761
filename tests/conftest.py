"""Shared fixtures: tiny random models built locally (no network)."""

from __future__ import annotations

import pytest
import torch

from subcircuit.models import ModelConfig, Transformer


def random_model(cfg: ModelConfig, seed: int = 0, scale: float = 0.3) -> Transformer:
    """A Transformer with random weights (biases and norm weights randomized too)."""
    g = torch.Generator().manual_seed(seed)
    m = Transformer(cfg)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith(("ln1_w", "ln2_w", "lnf_w")):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(scale * torch.randn(p.shape, generator=g))
    return m.requires_grad_(False).eval()


TINY_CONFIGS = {
    "gpt2": ModelConfig(family="gpt2", n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, vocab_size=23, n_ctx=32),
    "attn-only": ModelConfig(
        family="gpt2", n_layers=2, d_model=16, n_heads=3, d_head=4, d_mlp=0, vocab_size=23, n_ctx=32, mlp="none"
    ),
    "llama-gqa": ModelConfig(
        family="llama", n_layers=3, d_model=16, n_heads=4, n_kv_heads=2, d_head=4, d_mlp=24, vocab_size=23,
        norm="rmsnorm", positional="rotary", mlp="gated", act="silu",
    ),
}


@pytest.fixture(params=sorted(TINY_CONFIGS))
def tiny_model(request) -> Transformer:
    return random_model(TINY_CONFIGS[request.param], seed=1)
