"""Shared fixtures: tiny random models built locally (no network)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, settings

from subcircuit.models import ModelConfig, Transformer

# Property tests must not depend on how fast or loaded the machine is: no deadlines, no
# "too slow" health check (set once here for every test module).
settings.register_profile("subcircuit", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("subcircuit")


def random_model(cfg: ModelConfig, seed: int = 0, scale: float = 0.3) -> Transformer:
    """A Transformer with random weights (biases and norm weights randomized too)."""
    g = torch.Generator().manual_seed(seed)
    m = Transformer(cfg)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith(("ln1_w", "ln2_w", "lnf_w", "_post_w", "_norm_w")):
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


_ROTARY = dict(norm="rmsnorm", positional="rotary", mlp="gated", n_ctx=32, vocab_size=23)

# One tiny config per model family with its special features switched on (windows smaller than
# the test sequences): the patching invariants must hold for each.
FAMILY_CONFIGS = {
    "gpt_neox": ModelConfig(
        family="gpt_neox", n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, vocab_size=23, n_ctx=32,
        positional="rotary", rotary_dim=4, act="gelu", parallel_attn_mlp=True,
    ),
    "gemma2": ModelConfig(
        family="gemma", n_layers=2, d_model=16, n_heads=4, n_kv_heads=1, d_head=4, d_mlp=24, act="gelu_tanh",
        embed_scale=4.0, attn_scale=0.4, post_norms=True, attn_softcap=2.0, final_softcap=3.0, sliding_window=3,
        window_layers=(0,), **_ROTARY,
    ),
    "gemma3": ModelConfig(
        family="gemma", n_layers=2, d_model=16, n_heads=4, n_kv_heads=2, d_head=4, d_mlp=24, act="gelu_tanh",
        embed_scale=4.0, post_norms=True, qk_norm="head", final_softcap=3.0, sliding_window=3, window_layers=(0,),
        rope_theta=1000.0, rope_factor=2.0, local_rope_theta=10.0, **_ROTARY,
    ),
    "qwen3": ModelConfig(
        family="llama", n_layers=2, d_model=16, n_heads=4, n_kv_heads=2, d_head=4, d_mlp=24, act="silu",
        qk_norm="head", sliding_window=3, window_layers=(1,), **_ROTARY,
    ),
    "olmo": ModelConfig(
        family="olmo", n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=24, act="silu", qkv_clip=0.5,
        **{**_ROTARY, "norm": "layernorm"},
    ),
    "olmo2": ModelConfig(
        family="olmo", n_layers=2, d_model=16, n_heads=4, n_kv_heads=2, d_head=4, d_mlp=24, act="silu",
        pre_norms=False, post_norms=True, qk_norm="all", **_ROTARY,
    ),
}


@pytest.fixture(params=sorted(TINY_CONFIGS))
def tiny_model(request) -> Transformer:
    return random_model(TINY_CONFIGS[request.param], seed=1)


@pytest.fixture(params=sorted(FAMILY_CONFIGS))
def family_model(request) -> Transformer:
    return random_model(FAMILY_CONFIGS[request.param], seed=1)
