"""What both engines start from: masks on existing edges, ablated outputs, per-stage bases, the
rotary tables and the shared deltas; and how an attention stage's receiver rows split into query,
key and value inputs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from subcircuit.graph import Graph, StageLayout
from subcircuit.models.attention import rotary_tables
from subcircuit.models.transformer import Transformer, embed

if TYPE_CHECKING:
    from subcircuit.patching.ablation import Ablation, Prefix


def run_inputs(model: Transformer, graph: Graph, tokens: Tensor, ablation: Ablation, masks: Tensor,
               start: Prefix | None) -> tuple[Tensor, Tensor, Tensor, object, Tensor, int]:
    """What every patched run starts from: the masks on existing edges only, the ablated outputs
    [sender N d], the per-stage bases [stage N d], the rotary tables, the deltas every
    configuration shares at the start [s0 N d] (the embeddings', or a cached prefix) and the
    first stage to run."""
    b, p = tokens.shape
    N, d = b * p, model.cfg.d_model
    exists = graph.exists.to(masks.device, masks.dtype)
    masks = masks * (exists[..., None] if masks.dim() == 4 else exists)  # positional: [c r s span]
    abl = ablation.outputs.reshape(len(graph.senders), N, d)
    base = ablation.base.reshape(len(graph.stages), N, d)
    rot = rotary_tables(model.cfg, p, tokens.device, model.W_E.dtype)
    if start is None:
        return masks, abl, base, rot, embed(model, tokens).reshape(1, N, d) - abl[:1], 0
    return masks, abl, base, rot, start.deltas, start.stage_index


def qkv_inputs(x5: Tensor, st: StageLayout) -> tuple[Tensor, Tensor, Tensor]:
    """The query, key and value inputs [c s b p d] of an attention stage from its receiver
    inputs x5 [c r b p d]. Split (not sliced) when they tile the rows: under autograd a
    slice's backward fills a zero tensor of the whole input for each of the three."""
    q, k, v = st.q, st.k, st.v
    n = x5.shape[1]
    if q == k == v and (q.start, q.stop) == (0, n):
        return x5, x5, x5
    if q.start == 0 and q.stop == k.start and k.stop == v.start and v.stop == n:
        return tuple(x5.split([q.stop - q.start, k.stop - k.start, v.stop - v.start], dim=1))  # type: ignore[return-value]
    return x5[:, q], x5[:, k], x5[:, v]
