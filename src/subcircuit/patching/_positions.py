"""Positional masks in both engines: each token's receiver input mixed with its own span's weights.

For positional masks m [c receiver sender span] (`subcircuit.positional`) the input of receiver r
at token t is

    x_r[t] = base[t] + Σ_s m[r, s, span(t)] · delta_s[t],

so a stage's mix is one plain mix per span, each at that span's tokens only (`mix_by_span`,
the engine without autograd: no token is mixed twice), or one plain mix per span over every
token, kept where the token is in the span (`mix_by_span_autograd`: gradients reach each span's
weights from its tokens only). Masks with one span never get here: `positional.engine_masks`
gives the engines the plain [c receiver sender] masks, so one span covering every token is
exactly the plain run.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True, eq=False)
class SpanIndex:
    """Where the spans are in a batch: `ids` [N] the span of each flattened token (b·p), `tokens`
    the flattened token indices of each span, `onehot` [K N 1] (for the autograd engine)."""

    ids: Tensor
    tokens: tuple[Tensor, ...]
    onehot: Tensor


def span_index(span_ids: Tensor, n_spans: int, dtype: torch.dtype) -> SpanIndex:
    """span_ids [b p] (a span index per token, padding included) -> `SpanIndex`."""
    ids = span_ids.reshape(-1)
    tokens = tuple((ids == k).nonzero().flatten() for k in range(n_spans))
    onehot = torch.stack([(ids == k) for k in range(n_spans)]).to(dtype)[..., None]
    return SpanIndex(ids, tokens, onehot)


def mix_by_span(store, w: Tensor, base: Tensor, pick: Tensor | None) -> Tensor:
    """The engine without autograd: w [c' r hi K], base [N d] -> [c' r N' d] via `store.mix`
    (a `_senders.Senders`) once per span. Without `pick` each span is mixed at its own tokens;
    with `pick` [n] (the metric's positions, where later senders are stored at those only) each
    span present there is mixed at every picked position and kept at its own."""
    spans: SpanIndex = store.spans
    c1, r, _, K = w.shape
    if pick is None:
        out = base.new_empty(c1, r, *base.shape)
        for k, idx in enumerate(spans.tokens):
            if len(idx):
                out[:, :, idx] = store.mix(w[..., k], base, idx)
        return out
    at = spans.ids[pick]
    present = at.unique().tolist()
    out = None
    for k in present:
        xk = store.mix(w[..., k], base, pick)
        if len(present) == 1:
            return xk
        if out is None:
            out = xk.clone()
        else:
            keep = (at == k).nonzero().flatten()
            out[:, :, keep] = xk[:, :, keep]
    return out  # type: ignore[return-value]


def mix_by_span_autograd(dense, m: Tensor, base: Tensor, hi: int, row0: int, spans: SpanIndex) -> Tensor:
    """The autograd engine: m [c r hi K] -> [c r N·d], with `dense(m_k, base, hi, row0)` the
    plain mix [c r N·d] of one span's weights."""
    d = base.shape[-1]
    x = None
    for k in range(m.shape[-1]):
        if not len(spans.tokens[k]):
            continue
        ind = spans.onehot[k].expand(-1, d).reshape(1, 1, -1)  # [1 1 N·d]
        xk = dense(m[..., k], base, hi, row0) * ind
        x = xk if x is None else x + xk
    return x  # type: ignore[return-value]


def uniform_over_spans(masks: Tensor, stages, metric_spans: list[int]) -> bool:
    """Whether positional masks [c receiver sender span] hold the same weights at every span
    (the logits receiver: at every span where the metric reads, `metric_spans`) and every
    receiver of a stage reads the same mixture (EAP, EAP-IG): then, at the metric's positions,
    the run is the plain run and the mask gradient per span is the plain one split by the spans'
    tokens (`span_gradient_block`), at the plain run's cost."""
    if not metric_spans:
        return False
    last = stages[-1].rows
    body, lg = masks[:, : last.start], masks[:, last][..., metric_spans]
    if not (torch.equal(body, body[..., :1].expand_as(body)) and torch.equal(lg, lg[..., :1].expand_as(lg))):
        return False
    m = plain_of_uniform(masks, last, metric_spans[0])
    return all(bool((m[:, st.rows, : st.n_senders_before] == m[:, st.rows.start : st.rows.start + 1,
                                                           : st.n_senders_before]).all()) for st in stages)


def plain_of_uniform(masks: Tensor, logits_rows: slice, span: int) -> Tensor:
    """The plain masks [c receiver sender] of positional masks uniform over the spans: span 0's
    weights, the logits receiver's at the metric's span `span`."""
    out = masks[..., 0].clone()
    out[:, logits_rows] = masks[:, logits_rows, :, span]
    return out


def span_gradient_block(dy: Tensor, shared: Tensor, gbuf: Tensor | None, k: int, hi: int, d: int,
                        spans: SpanIndex) -> Tensor:
    """dm[c r s span] = Σ_{t in span} dy_r[t]·delta_s[t] for dy [c r N·d], the shared deltas
    `shared` [s0 N d] (the first k of them) and the per-configuration deltas `gbuf` [c hi−k N·d]."""
    c, r, nd = dy.shape
    n = nd // d
    K = len(spans.tokens)
    out = dy.new_zeros(c, r, hi, K)
    dyv = dy.view(c, r, n, d)
    for j, idx in enumerate(spans.tokens):
        if not len(idx):
            continue
        dyk = dyv[:, :, idx].reshape(c, r, -1)  # [c r n_k·d]
        sk = shared[:k].reshape(k, n, d)[:, idx].reshape(k, -1)
        out[:, :, :k, j] = (dyk.reshape(c * r, -1) @ sk.T).view(c, r, k)
        if gbuf is not None and hi > k:
            gk = gbuf.reshape(gbuf.shape[0], hi - k, n, d)[:, :, idx].reshape(gbuf.shape[0], hi - k, -1)
            out[:, :, k:, j] = torch.bmm(dyk, gk.expand(c, -1, -1).transpose(1, 2))
    return out
