"""What a receiver reads from a sender whose edge is removed, and the cached state a patched run
can start from.

Ablated outputs come from a forward pass on the corrupted prompts (`corrupted`, the default),
the mean over a reference batch (`mean`, per position) or zeros (`zero`). `Prefix` holds the
sender deltas (out − abl) of every sender before a stage, so that a run can begin mid-model.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal, get_args

import torch
from torch import Tensor

from subcircuit.errors import unknown
from subcircuit.graph import Graph
from subcircuit.models.transformer import Transformer, embed

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

    @cached_property
    def total(self) -> Tensor:
        """[1 N d] the sum of the deltas (computed once per prefix)."""
        return self.deltas.sum(0, keepdim=True)


def _bias_before(model: Transformer, graph: Graph) -> Tensor:
    """[n_stages d] Σ of the attention output biases b_O that a stage's receivers read (those
    of layers whose attention runs at an earlier stage)."""
    zero = torch.zeros(graph.cfg.d_model, dtype=model.W_E.dtype, device=model.W_E.device)
    return torch.stack(
        [sum((blk.b_O.to(zero.device) for L, blk in enumerate(model.blocks) if 2 * L < st.stage), zero) for st in graph.stages]
    )


def sender_outputs(model: Transformer, graph: Graph, tokens: Tensor) -> Tensor:
    """[sender b p d] every sender's output in the plain (unpatched) run on `tokens`: one plain
    forward pass that keeps each component's output (`Transformer.run`)."""
    kept = model.run(tokens, keep=True).kept
    e = embed(model, tokens)
    out = e.new_empty(len(graph.senders), *e.shape)
    out[0] = e
    for st in graph.stages:
        if st.kind == "attn":
            heads = kept[st.layer][0]
            out[st.senders] = heads if st.senders.stop - st.senders.start == len(heads) else heads.sum(0, keepdim=True)
        elif st.kind == "mlp":
            out[st.senders] = kept[st.layer][1]
    return out


def ablation_from_outputs(model: Transformer, graph: Graph, outputs: Tensor, kind: AblationKind) -> Ablation:
    """outputs [sender b p d] -> Ablation with per-stage base sums (a running sum over the
    stages, not a cumulative sum over every sender: that would allocate another [sender b p d])."""
    bias = _bias_before(model, graph).to(outputs)
    run, prev, base = torch.zeros_like(outputs[0]), 0, []
    for i, st in enumerate(graph.stages):
        n = st.n_senders_before
        if n > prev:
            run = run + outputs[prev:n].sum(0)
            prev = n
        base.append(run + bias[i])
    return Ablation(kind, outputs, torch.stack(base))


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
    return ablation_from_outputs(model, graph, outs, kind)  # type: ignore[arg-type]


