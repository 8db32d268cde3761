"""Our own forward pass, written so that every component's output is a separate tensor.

Every supported family is converted to one weight layout (TransformerLens-like, per head):

    W_E  [vocab d_model]            W_pos [n_ctx d_model] (learned positions only)
    W_Q  [head d_model d_head]      W_K, W_V [kv_head d_model d_head]     W_O [head d_head d_model]
    W_in [d_model d_mlp]  (W_gate for gated MLPs)                         W_out [d_mlp d_model]
    W_U  [d_model vocab]

The forward pass is split into pure functions over these weights: `embed`, `attention`
(per-head outputs from per-head query/key/value inputs; `attention.py`), `post_attention`, `mlp`
and `unembed`. The plain forward (`Transformer.run`), the patched forwards
(`subcircuit.patching`) and the head-role measurements (`subcircuit.evaluation.roles`, through
`Transformer.run`) are all built from them, so every family feature (a config field of
`ModelConfig`) lives in exactly one place:

- `embed_scale` (Gemma): in `embed`;
- `pre_norms` / `post_norms`: the attention/MLP input norms (ln1, ln2) and output norms
  (attn_post, mlp_post): `attention.py` for attention, `mlp` here;
- `qk_norm`, `qkv_clip`, sliding windows, `attn_softcap`, rotary variants: `attention.py`;
- `parallel_attn_mlp` (GPT-NeoX): in `Transformer.run`, which feeds the MLP the layer's input;
- `final_softcap`: in `unembed`.

Axis names: `b` batch, `p` position, `d` d_model, `h` heads, `q`/`k` query and key positions,
`v` vocab.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from subcircuit.models.attention import attention, post_attention, rotary_tables
from subcircuit.models.block import Block, moved, ones, weights_at, zeros
from subcircuit.models.config import ModelConfig
from subcircuit.models.norms import normalize


@dataclass(frozen=True, eq=False)
class Run:
    """What one plain forward pass computed; the optional records are empty unless asked for.

    - `logits` [b p v]; None when the run stopped early (`n_layers` below the model's).
    - `kept` (`keep`): per layer, (heads [h b p d] as each head writes to the residual stream,
      post-norm included and before b_O; MLP output [b p d] or None).
    - `patterns` (`patterns`): per layer, the attention probabilities [h b q k] the layer's
      outputs were computed with.
    - `residuals` (`residuals`): the residual stream [b p d] at every half layer: index 2L is
      layer L's input, 2L + 1 the stream after its attention (b_O included), and the last entry
      the stream after the last layer run (the final residual of a full run)."""

    logits: Tensor | None
    kept: list[tuple[Tensor, Tensor | None]] = field(default_factory=list)
    patterns: list[Tensor] = field(default_factory=list)
    residuals: list[Tensor] = field(default_factory=list)

    def layer_input(self, layer: int) -> Tensor:
        """The residual stream [b p d] that layer `layer` reads (needs `residuals`)."""
        return self.residuals[2 * layer]


class Transformer(nn.Module):
    """A decoder-only transformer in our weight layout. Build one with a family converter
    (`subcircuit.models.from_hf`) or `subcircuit.models.load`; an untrained one with
    `Transformer(cfg)` (all weights zero)."""

    def __init__(self, cfg: ModelConfig, dtype: torch.dtype | None = None,
                 device: str | torch.device | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        f = {"dtype": dtype, "device": device}  # built at the target dtype (meta: no memory at all)
        self.W_E = zeros(cfg.vocab_size, cfg.d_model, **f)
        if cfg.positional == "learned":
            self.W_pos = zeros(cfg.n_ctx, cfg.d_model, **f)
        self.blocks = nn.ModuleList(Block(cfg, i, **f) for i in range(cfg.n_layers))
        self.lnf_w, self.lnf_b = ones(cfg.d_model, **f), zeros(cfg.d_model, **f)
        self.W_U, self.b_U = zeros(cfg.d_model, cfg.vocab_size, **f), zeros(cfg.vocab_size, **f)

    @property
    def device(self) -> torch.device:
        """Where the run's tensors live: the embeddings' device (a placed model's first device, or
        the device its offloaded layers are streamed to)."""
        return self.W_E.device

    @property
    def dtype(self) -> torch.dtype:
        return self.W_E.dtype

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens [b p] -> logits [b p v]. The plain, unpatched forward pass."""
        logits = self.run(tokens).logits
        assert logits is not None
        return logits

    def run(self, tokens: Tensor, keep: bool = False, patterns: bool = False, residuals: bool = False,
            n_layers: int | None = None) -> Run:
        """The plain forward pass (tokens [b p]), optionally recording what `Run` describes:
        every component's output (`keep`), every layer's attention probabilities (`patterns`),
        the residual stream at every half layer (`residuals`). `n_layers` stops after that many
        layers (no logits then)."""
        cfg = self.cfg
        n = cfg.n_layers if n_layers is None else n_layers
        if not 0 <= n <= cfg.n_layers:
            raise ValueError(f"n_layers={n_layers} is out of range 0..{cfg.n_layers}")
        resid = embed(self, tokens)  # [b p d]
        rot = rotary_tables(cfg, tokens.shape[1], resid.device, resid.dtype)
        kept: list[tuple[Tensor, Tensor | None]] = []
        probs: list[Tensor] = []
        streams: list[Tensor] = []
        for block in list(self.blocks)[:n]:
            resid = moved(resid, block_device(block))  # a placed model: the stream follows the layers
            rot = moved(rot, resid.device)
            x = resid[None, None]  # [c=1 s=1 b p d]
            z, pattern = attention(block, cfg, x, x, x, rot, with_pattern=True)
            heads = post_attention(block, cfg, z)[0]  # [h b p d]
            mid = resid + (heads.sum(0) + block.b_O.to(resid.device))
            m = mlp(block, cfg, resid if cfg.parallel_attn_mlp else mid) if cfg.has_mlp else None
            m = None if m is None else moved(m, resid.device)
            if keep:
                kept.append((heads, m))
            if patterns:
                probs.append(pattern[0])
            if residuals:
                streams += [resid, mid]
            resid = mid if m is None else mid + m
        if residuals:
            streams.append(resid)
        logits = moved(unembed(self, resid), self.device) if n == cfg.n_layers else None
        return Run(logits, kept, probs, streams)

    def n_params(self) -> int:
        """Parameters as stored in our layout (absent biases as zeros, an untied unembedding)."""
        return sum(p.numel() for p in self.parameters())


def block_device(block: Block) -> torch.device:
    """Where a block computes: its weights' device, or the device an offloaded block streams to."""
    return block.stream_to if getattr(block, "stream_to", None) is not None else block.W_Q.device


def embed(model: Transformer, tokens: Tensor) -> Tensor:
    """tokens [b p] -> the `input` sender's output [b p d] (token + learned position embeddings)."""
    x = model.W_E[moved(tokens, model.W_E.device)]
    if model.cfg.embed_scale != 1.0:
        x = x * torch.tensor(model.cfg.embed_scale, dtype=x.dtype)
    if model.cfg.positional == "learned":
        x = x + model.W_pos[: tokens.shape[1]].to(x.device)
    return x


_ACTS = {
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
}


def mlp(block: Block, cfg: ModelConfig, x: Tensor) -> Tensor:
    """MLP output [... d] (bias and post-norm included) from its residual input [... d] (computed
    where the block's weights are, returned on x's device)."""
    home = x.device
    block = weights_at(block)
    return moved(_mlp(block, cfg, moved(x, block.W_out.device)), home)


def _mlp(block: Block, cfg: ModelConfig, x: Tensor) -> Tensor:
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
    home = x.device
    x = moved(x, model.W_U.device)
    if cfg.final_norm:
        x = normalize(x, model.lnf_w, model.lnf_b, cfg)
    logits = x @ model.W_U + model.b_U
    if cfg.final_softcap is not None:
        logits = torch.tanh(logits / cfg.final_softcap) * cfg.final_softcap
    return moved(logits, home)
