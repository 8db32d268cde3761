"""The one patching primitive: run the model while every receiver reads a per-edge mix of its
senders' outputs in this run and their ablated outputs.

For a receiver r and mixing weights m[r, s] (1 = the sender's output in this run, 0 = its
ablated output, fractions allowed and differentiable), r's input is

    x_r = Σ_s  m[r,s] · out_s  +  (1 − m[r,s]) · abl_s   (+ constant biases)
        = base_stage(r)  +  Σ_s m[r,s] · (out_s − abl_s)

where `base` (the sum of all ablated outputs the receiver can read, plus the attention output
biases b_O, which belong to no sender) is computed once per ablation, and out_s is the sender's
output *in this patched run*, so upstream removals propagate (ACDC's semantics). Removing
the edge s→r therefore gives r the input `current − out_s + abl_s` and leaves every other
receiver alone.

Ablated outputs come from a forward pass on the corrupted prompts (`corrupted`, the default),
the mean over a reference batch (`mean`, per position) or zeros (`zero`).

Masks have shape [c receiver sender]: c configurations run in one batched pass. Senders are
ordered by computation stage, so each stage's receivers read a prefix of the senders; the
deltas out_s − abl_s are kept as a list of chunks (one per stage), shared across
configurations while they are equal (the embeddings, or a cached prefix) and per configuration
afterwards. Speed features: `Patcher.prefix` caches every sender output before a stage so a run
can start there, and `positions` computes logits only where the metric reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

from subcircuit.errors import unknown
from subcircuit.graph import Graph, StageLayout
from subcircuit.models.transformer import Transformer, attention, embed, mlp, rotary_tables, unembed

AblationKind = Literal["corrupted", "mean", "zero"]
ABLATIONS: tuple[str, ...] = get_args(AblationKind)


@dataclass(frozen=True, eq=False)
class Ablation:
    """What a receiver reads from a sender whose edge is removed.

    outputs: [sender b p d] ablated sender outputs, aligned with `graph.senders`.
    base: [stage+1 b p d]  base[i] = Σ ablated outputs of the senders stage i can read, plus the
    attention output biases of earlier layers (index i follows `graph.stages`)."""

    kind: AblationKind
    outputs: Tensor
    base: Tensor


@dataclass(frozen=True, eq=False)
class Prefix:
    """Sender deltas (out − abl) [n_senders_before N d] for every sender before `stage_index`,
    valid for the one mask they were computed with (receivers before that stage)."""

    stage_index: int
    deltas: Tensor


def _bias_before(model: Transformer, graph: Graph) -> Tensor:
    """[n_stages d] Σ of the attention output biases b_O that a stage's receivers read (those
    of layers whose attention runs at an earlier stage)."""
    zero = torch.zeros(graph.cfg.d_model, dtype=model.W_E.dtype, device=model.W_E.device)
    return torch.stack(
        [sum((blk.b_O for L, blk in enumerate(model.blocks) if 2 * L < st.stage), zero) for st in graph.stages]
    )


def sender_outputs(model: Transformer, graph: Graph, tokens: Tensor) -> Tensor:
    """[sender b p d] every sender's output in the plain (unpatched) run on `tokens`."""
    zero = _make_ablation(model, graph, torch.zeros(len(graph.senders), *tokens.shape, graph.cfg.d_model,
                                                      device=tokens.device, dtype=model.W_E.dtype), "zero")
    ones = graph.full_mask(model.W_E.dtype).to(tokens.device)[None]
    _, deltas = _run(model, graph, tokens, zero, ones, None, None, want_deltas=True)
    return deltas[0].unflatten(1, tokens.shape)  # deltas == outputs when abl = 0


def _make_ablation(model: Transformer, graph: Graph, outputs: Tensor, kind: AblationKind) -> Ablation:
    """outputs [sender b p d] -> Ablation with per-stage base sums."""
    cum = torch.cat([torch.zeros_like(outputs[:1]), outputs.cumsum(0)])  # [sender+1 b p d]
    idx = torch.tensor([st.n_senders_before for st in graph.stages], device=outputs.device)
    base = cum[idx] + _bias_before(model, graph).to(outputs)[:, None, None, :]
    return Ablation(kind, outputs, base)


def make_ablation(
    model: Transformer,
    graph: Graph,
    kind: str,
    tokens: Tensor,
    corrupted: Tensor | None = None,
    reference: Tensor | None = None,
) -> Ablation:
    """Ablated sender outputs for a clean batch `tokens` [b p].

    corrupted: the corrupted prompts [b p] (kind `corrupted`); reference: the batch whose
    per-position mean is used (kind `mean`; defaults to `corrupted`, else `tokens`)."""
    if kind not in ABLATIONS:
        raise unknown("ablation", kind, ABLATIONS)
    b, p = tokens.shape
    with torch.no_grad():
        if kind == "zero":
            outs = torch.zeros(len(graph.senders), b, p, graph.cfg.d_model, device=tokens.device,
                               dtype=model.W_E.dtype)
        elif kind == "corrupted":
            if corrupted is None or corrupted.shape != tokens.shape:
                raise ValueError("corrupted ablation needs corrupted tokens of the clean batch's shape")
            outs = sender_outputs(model, graph, corrupted)
        else:
            ref = reference if reference is not None else (corrupted if corrupted is not None else tokens)
            if ref.shape[1] != p:
                raise ValueError(f"mean ablation reference has {ref.shape[1]} positions; the batch has {p}")
            outs = sender_outputs(model, graph, ref).mean(1, keepdim=True).expand(-1, b, -1, -1).contiguous()
    return _make_ablation(model, graph, outs, kind)  # type: ignore[arg-type]


def _mix(
    masks: Tensor, st: StageLayout, chunks: list[tuple[int, int, Tensor]], base: Tensor, c: int
) -> Tensor:
    """Receiver inputs [c r N d] of one stage: base + Σ over chunks of mask @ deltas."""
    m = masks[:, st.rows]  # [c r sender]
    n, d = base.shape[-2:]
    x = base.reshape(1, 1, n * d).expand(c, m.shape[1], n * d)
    for lo, hi, t in chunks:
        if lo >= st.n_senders_before:
            break
        hi_ = min(hi, st.n_senders_before)
        w = m[:, :, lo:hi_]
        if t.dim() == 3:  # shared across configurations: [s N d]
            x = x + (w.reshape(-1, hi_ - lo) @ t[: hi_ - lo].reshape(hi_ - lo, n * d)).view(c, -1, n * d)
        else:  # per configuration: [c s N d]
            x = x + torch.bmm(w, t[:, : hi_ - lo].reshape(c, hi_ - lo, n * d))
    return x.view(c, m.shape[1], n, d)


def _run(
    model: Transformer,
    graph: Graph,
    tokens: Tensor,
    ablation: Ablation,
    masks: Tensor,
    positions: Tensor | None,
    start: Prefix | None,
    want_deltas: bool = False,
    stop_stage: int | None = None,
):
    cfg = model.cfg
    c = masks.shape[0]
    b, p = tokens.shape
    N, d = b * p, cfg.d_model
    masks = masks * graph.exists.to(masks.device, masks.dtype)
    abl = ablation.outputs.reshape(len(graph.senders), N, d)
    base = ablation.base.reshape(len(graph.stages), N, d)
    rot = rotary_tables(cfg, p, tokens.device, model.W_E.dtype)
    if start is None:
        chunks = [(0, 1, (embed(model, tokens).reshape(1, N, d) - abl[:1]))]
        first = 0
    else:
        chunks = [(0, start.deltas.shape[0], start.deltas)]
        first = start.stage_index
    stop = len(graph.stages) if stop_stage is None else stop_stage
    logits = None
    for si in range(first, stop):
        st = graph.stages[si]
        x = _mix(masks, st, chunks, base[si], c)  # [c r N d]
        if st.kind == "attn":
            x5 = x.view(c, -1, b, p, d)
            heads = attention(model.blocks[st.layer], cfg, x5[:, st.q], x5[:, st.k], x5[:, st.v], rot)
            out = heads.reshape(c, cfg.n_heads, N, d)
            if st.senders.stop - st.senders.start == 1:
                out = out.sum(1, keepdim=True)
        elif st.kind == "mlp":
            out = mlp(model.blocks[st.layer], cfg, x[:, 0])[:, None]  # [c 1 N d]
        else:
            resid = x[:, 0].view(c, b, p, d)
            if positions is not None:
                resid = resid[:, torch.arange(b, device=tokens.device), positions]  # [c b d]
            logits = unembed(model, resid)
            break
        chunks.append((st.senders.start, st.senders.stop, out - abl[st.senders]))
    if not want_deltas:
        return logits, None
    deltas = []
    for _, _, t in chunks:
        deltas.append(t.expand(c, *t.shape) if t.dim() == 3 else t)
    return logits, torch.cat(deltas, dim=1)  # [c sender N d]


@dataclass(frozen=True, eq=False)
class Patcher:
    """Patched runs of one model on one clean batch with one ablation.

    tokens [b p] clean prompts; positions [b] where logits are wanted (None: everywhere)."""

    model: Transformer
    graph: Graph
    tokens: Tensor
    ablation: Ablation
    positions: Tensor | None = None

    def logits(self, masks: Tensor, start: Prefix | None = None) -> Tensor:
        """masks [c receiver sender] or [receiver sender] -> logits [c b v] at `positions`
        (or [c b p v] without positions). With `start`, the run begins at its stage and the
        masks' rows for earlier receivers are ignored (the prefix fixed them)."""
        masks = masks[None] if masks.dim() == 2 else masks
        logits, _ = _run(self.model, self.graph, self.tokens, self.ablation, masks.to(self.model.W_E.dtype),
                         self.positions, start)
        return logits

    def prefix(self, mask: Tensor, stage_index: int) -> Prefix:
        """Cache sender deltas before `graph.stages[stage_index]` under `mask` [receiver sender]."""
        with torch.no_grad():
            _, deltas = _run(self.model, self.graph, self.tokens, self.ablation,
                             mask[None].to(self.model.W_E.dtype), None, None, want_deltas=True,
                             stop_stage=stage_index)
        n = self.graph.stages[stage_index].senders.start  # every sender computed before this stage
        return Prefix(stage_index, deltas[0, :n].contiguous())


def patched_logits(
    model: Transformer,
    graph: Graph,
    tokens: Tensor,
    ablation: Ablation,
    masks: Tensor,
    positions: Tensor | None = None,
) -> Tensor:
    """One-call form of `Patcher(...).logits(masks)`: masks [c receiver sender] -> [c b v] or [c b p v]."""
    return Patcher(model, graph, tokens, ablation, positions).logits(masks)
