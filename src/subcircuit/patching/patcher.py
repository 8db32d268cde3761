"""`Patcher`: the one public way to run the patched model.

Two entry points, one per engine; which engine runs depends only on which one the caller uses,
never on the global grad mode:

- `logits(masks, start=None, memo=None, skip_dead=True)`: the engine without autograd (`_fast`),
  for ACDC's batched trials and every evaluation run. Always runs under `torch.no_grad()`; masks
  that require a gradient are refused.
- `logits_with_grad(masks, start=None)`: the autograd engine (`_autograd`), for the gradient
  methods (EAP, EAP-IG, edge pruning, the baselines). Always records the graph
  (`torch.enable_grad()`), so `torch.autograd.grad` works whatever the caller's mode. It has
  no `memo` or `skip_dead`: it computes every component of every configuration.

Both return logits [c b v] at `positions` (or [c b p v] without positions) for masks
[c receiver sender] (or [receiver sender]) and can start mid-model from a cached `Prefix`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from subcircuit.graph import Graph
from subcircuit.models.transformer import Transformer
from subcircuit.patching._autograd import run_autograd
from subcircuit.patching._fast import run_fast
from subcircuit.patching._memo import Memo
from subcircuit.patching._positions import SpanIndex, span_index
from subcircuit.patching.ablation import Ablation, Prefix
from subcircuit.positional import PositionalGraph, engine_masks


@dataclass(frozen=True, eq=False)
class Patcher:
    """Patched runs of one model on one clean batch with one ablation.

    tokens [b p] clean prompts; positions [b] where logits are wanted (None: everywhere).
    grad_deltas [sender N d] (optional, `logits_with_grad` only): the sender deltas that the mask
    gradient multiplies instead of this run's own, i.e. ∂L/∂m[r,s] = grad_deltas[s]·∂L/∂x_r for
    the per-configuration senders (EAP-IG with interpolated inputs uses the clean run's).
    spans [b p] (positional graphs only): the span index of each token (`Task.span_ids`); masks
    are then [c receiver·span sender] (`subcircuit.positional`)."""

    model: Transformer
    graph: Graph
    tokens: Tensor
    ablation: Ablation
    positions: Tensor | None = None
    grad_deltas: Tensor | None = None
    spans: Tensor | None = None

    def _masks(self, masks: Tensor) -> Tensor:
        return (masks[None] if masks.dim() == 2 else masks).to(self.model.W_E.dtype)

    def _engine(self, masks: Tensor) -> tuple[Graph, Tensor, SpanIndex | None]:
        """(graph, masks, spans) as the engines take them (positional masks: see `_positions`)."""
        graph, m = engine_masks(self.graph, self._masks(masks))
        if not isinstance(self.graph, PositionalGraph) or m.dim() == 3:
            return graph, m, None
        if self.spans is None or self.spans.shape != self.tokens.shape:
            raise ValueError("a positional graph needs the span of every token (Patcher.spans [b p])")
        return graph, m, span_index(self.spans.to(self.tokens.device), self.graph.n_spans, m.dtype)

    def logits(self, masks: Tensor, start: Prefix | None = None, memo: Memo | None = None,
               skip_dead: bool = True) -> Tensor:
        """masks [c receiver sender] or [receiver sender] -> logits [c b v] at `positions` (or
        [c b p v]), without autograd. With `start`, the run begins at its stage and the masks'
        rows for earlier receivers are ignored (the prefix fixed them). `memo`: reuse component
        outputs across calls on this batch and prefix cache (`Memo`). `skip_dead=False` computes
        every component, even those no configuration reads."""
        if masks.requires_grad:
            raise ValueError("Patcher.logits runs without autograd; use Patcher.logits_with_grad for gradients")
        graph, m, spans = self._engine(masks)
        with torch.no_grad():
            logits, _ = run_fast(self.model, graph, self.tokens, self.ablation, m,
                                 self.positions, start, skip_dead=skip_dead, memo=memo, spans=spans)
        return logits

    def logits_with_grad(self, masks: Tensor, start: Prefix | None = None) -> Tensor:
        """Same as `logits`, on the autograd engine: the result is differentiable in `masks` (and
        in anything else that requires a gradient), whatever the global grad mode."""
        with torch.enable_grad():
            graph, m, spans = self._engine(masks)
            return run_autograd(self.model, graph, self.tokens, self.ablation, m,
                                self.positions, start, self.grad_deltas, spans)

    def prefix(self, mask: Tensor, stage_index: int) -> Prefix:
        """Cache sender deltas before `graph.stages[stage_index]` under `mask` [receiver sender]."""
        graph, m, spans = self._engine(mask)
        with torch.no_grad():
            _, deltas = run_fast(self.model, graph, self.tokens, self.ablation, m,
                                 None, None, want_deltas=True, stop_stage=stage_index, skip_dead=False, spans=spans)
        n = self.graph.stages[stage_index].senders.start  # every sender computed before this stage
        return Prefix(stage_index, deltas[0, :n].contiguous())


def patched_logits(model: Transformer, graph: Graph, tokens: Tensor, ablation: Ablation, masks: Tensor,
                   positions: Tensor | None = None, spans: Tensor | None = None) -> Tensor:
    """One-call form of `Patcher(...).logits(masks)`: masks [c receiver sender] -> [c b v] or [c b p v]."""
    return Patcher(model, graph, tokens, ablation, positions, spans=spans).logits(masks)
