"""The architecture description every model family is converted to.

One frozen dataclass describes every supported decoder-only transformer. A family module
(`families/gpt2.py`, `families/llama.py`, ...) only translates a transformers config and state
dict into this description and our weight layout; the forward pass (`transformer.py`,
`attention.py`, `norms.py`) is shared, and each field switches a feature on in one place there.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Literal

Norm = Literal["layernorm", "rmsnorm", "none"]
Positional = Literal["learned", "rotary", "none"]
Activation = Literal["gelu_new", "gelu", "gelu_tanh", "relu", "silu"]
MLPKind = Literal["plain", "gated", "none"]
QKNorm = Literal["none", "head", "all"]


@dataclass(frozen=True)
class ModelConfig:
    """Shapes and switches of one transformer. `none` for `mlp` gives an attention-only model."""

    family: str
    n_layers: int
    d_model: int
    n_heads: int
    d_head: int
    d_mlp: int
    vocab_size: int
    n_kv_heads: int | None = None  # grouped-query attention; None = n_heads
    n_ctx: int = 2048
    norm: Norm = "layernorm"
    norm_eps: float = 1e-5
    positional: Positional = "learned"
    rope_theta: float = 10000.0
    rotary_dim: int | None = None  # partial rotary; None = d_head
    mlp: MLPKind = "plain"
    act: Activation = "gelu_new"
    causal: bool = True
    attn_scale: float | None = None  # None = 1/sqrt(d_head)
    sliding_window: int | None = None  # a query sees at most this many keys (itself included)
    parallel_attn_mlp: bool = False  # GPT-NeoX style: MLP reads the same residual as attention
    final_norm: bool = True
    # Family features (see docs/models.md); the defaults leave a model as above.
    window_layers: tuple[int, ...] | None = None  # layers that use `sliding_window`; None = all
    local_rope_theta: float | None = None  # rotary base of the window layers (Gemma 3); None = rope_theta
    rope_factor: float = 1.0  # linear rotary scaling (positions / factor) of the other layers
    embed_scale: float = 1.0  # token embeddings are multiplied by this (Gemma: sqrt(d_model))
    pre_norms: bool = True  # norm the attention and MLP inputs (ln1, ln2); False: OLMo 2
    post_norms: bool = False  # norm the attention and MLP outputs (Gemma 2/3, OLMo 2); RMSNorm only
    qk_norm: QKNorm = "none"  # RMSNorm of queries/keys: per head (Qwen3, Gemma 3) or whole projection (OLMo 2)
    qkv_clip: float | None = None  # clamp q, k, v projections to [-clip, clip] (OLMo)
    attn_softcap: float | None = None  # scores -> cap * tanh(scores / cap) (Gemma 2)
    final_softcap: float | None = None  # logits -> cap * tanh(logits / cap) (Gemma 2/3)

    def __post_init__(self) -> None:
        if self.n_heads % self.kv_heads:
            raise ValueError(f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.kv_heads}")
        if self.post_norms and self.norm != "rmsnorm":
            raise ValueError(f"post_norms need norm='rmsnorm' (per-head outputs share its scale), got {self.norm!r}")
        if self.window_layers is not None:
            object.__setattr__(self, "window_layers", tuple(self.window_layers))  # JSON gives lists

    def window(self, layer: int) -> int | None:
        """The sliding window of a layer (None: the layer attends to every earlier position)."""
        if self.window_layers is not None and layer not in self.window_layers:
            return None
        return self.sliding_window

    def rope(self, layer: int) -> tuple[float, float]:
        """(theta, linear factor) of a layer's rotary embedding."""
        if self.local_rope_theta is not None and self.window(layer) is not None:
            return self.local_rope_theta, 1.0
        return self.rope_theta, self.rope_factor

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def group_size(self) -> int:
        """Query heads per key/value group (1 without grouped-query attention)."""
        return self.n_heads // self.kv_heads

    @property
    def is_gqa(self) -> bool:
        return self.kv_heads != self.n_heads

    @property
    def has_mlp(self) -> bool:
        return self.mlp != "none"

    @property
    def scale(self) -> float:
        return self.attn_scale if self.attn_scale is not None else self.d_head**-0.5

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config field(s) {sorted(unknown)}; valid: {sorted(known)}")
        return cls(**d)
