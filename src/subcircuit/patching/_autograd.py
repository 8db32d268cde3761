"""The patched run under autograd: every configuration computes every component, and the mask
gradient (and the per-configuration deltas' gradient) is gathered in shared sinks instead of per
mixing step. This is the engine behind `Patcher.logits_with_grad` (EAP, EAP-IG, edge pruning,
the baselines) and the reference the engine without autograd (`_fast`) is tested against.
"""

from __future__ import annotations

import torch
from torch import Tensor

from subcircuit.graph import Graph, StageLayout
from subcircuit.models.attention import attention, post_attention
from subcircuit.models.transformer import Transformer, mlp, unembed
from subcircuit.patching._common import qkv_inputs, run_inputs
from subcircuit.patching._positions import (
    SpanIndex,
    mix_by_span_autograd,
    plain_of_uniform,
    span_gradient_block,
    uniform_over_spans,
)
from subcircuit.patching.ablation import Ablation, Prefix


class _GradSink:
    """Where the per-configuration deltas' gradients gather under autograd, shaped like the
    delta buffer [c sender' N·d]. General mixing steps add mᵀ·dy into a dense buffer (allocated
    on first use); a stage whose receivers all read the same mixture (identical mask rows, as
    in EAP and EAP-IG) adds the rank-one term w ⊗ Σ_r dy_r, kept as a column of `w` [c sender' k]
    and a row of `g` [c k N·d], and summed (one bmm) only when a chunk asks for its gradient."""

    def __init__(self, c: int, n: int, nd: int, like: Tensor) -> None:
        self.c, self.n, self.nd, self.like = c, n, nd, like
        self.buf: Tensor | None = None
        self.w: Tensor | None = None  # [c sender' capacity], zero beyond each term's senders
        self.g: Tensor | None = None  # [c capacity N·d]
        self.gsum: Tensor | None = None  # [c N·d] Σ of the g rows so far
        self.k = 0

    def dense(self) -> Tensor:
        if self.buf is None:
            self.buf = self.like.new_zeros(self.c, self.n, self.nd)
        return self.buf

    def add_rank1(self, w: Tensor, g: Tensor) -> None:
        """w [c s] (s ≤ sender'), g [c N·d]: add w ⊗ g to the gradient."""
        c = w.shape[0]
        if self.w is None or self.k == self.w.shape[2]:
            cap = 64 if self.w is None else 2 * self.w.shape[2]
            w_new, g_new = self.like.new_zeros(self.c, self.n, cap), self.like.new_empty(self.c, cap, self.nd)
            if self.w is not None:
                w_new[:, :, : self.k], g_new[:, : self.k] = self.w[:, :, : self.k], self.g[:, : self.k]
            self.w, self.g = w_new, g_new
        self.w[:c, : w.shape[1], self.k] = w
        self.g[:c, self.k] = g
        self.gsum = g.clone() if self.gsum is None else self.gsum + g
        self.k += 1

    def grad(self, lo: int, shape: torch.Size) -> Tensor:
        """The gradient [c n N d] of the chunk of senders lo..lo+n."""
        c, n = shape[0], shape[1]
        out = self.buf[:c, lo : lo + n] if self.buf is not None else None
        if self.k:
            w = self.w[:c, lo : lo + n, : self.k]
            if self.gsum.shape[0] == c and bool((w == w[:, :, :1]).all()):  # every term weighs these
                term = w[:, :, :1] * self.gsum[:, None]  # senders alike (EAP, EAP-IG): w ⊗ Σ g
                out = term if out is None else out + term
            else:
                g = self.g[:c, : self.k]
                out = torch.bmm(w, g) if out is None else torch.baddbmm(out, w, g)
        if out is None:
            out = self.like.new_zeros(c, n, self.nd)
        return out.reshape(shape)


class _StoreToken(torch.autograd.Function):
    """Marks a chunk of deltas as stored in the buffer: returns a 1-element token that mixing
    steps take as input. Autograd runs this node's backward only after every mixing step that
    read the chunk has added its gradient into the shared `_GradSink`; it then hands the chunk
    its gradient."""

    @staticmethod
    def forward(ctx, chunk: Tensor, sink: _GradSink, lo: int) -> Tensor:
        ctx.sink, ctx.lo, ctx.shape = sink, lo, chunk.shape
        return chunk.new_zeros(1)

    @staticmethod
    def backward(ctx, _token: Tensor):
        return ctx.sink.grad(ctx.lo, ctx.shape), None, None


class _MixFn(torch.autograd.Function):
    """y = m @ deltas for one stage, reading the deltas from the preallocated buffer.

    Inputs: m [c r s], buf [c s N·d] (detached copies of the chunks, not saved by autograd), gbuf
    (the deltas the mask gradient multiplies: buf itself, or `grad_deltas`), the `_GradSink`, then
    the `_StoreToken` tokens of the chunks covering those s senders (so autograd
    orders the backward passes). Backward: dm = dy @ gbufᵀ, and the sink gets mᵀ @ dy in place —
    no per-step gradient tensors."""

    @staticmethod
    def forward(ctx, m: Tensor, buf: Tensor, gbuf: Tensor, sink: _GradSink, *tokens: Tensor) -> Tensor:
        ctx.save_for_backward(m)
        ctx.gbuf, ctx.sink, ctx.n_tokens = gbuf, sink, len(tokens)
        return torch.bmm(m, buf)

    @staticmethod
    def backward(ctx, dy: Tensor):
        (m,) = ctx.saved_tensors
        dm = torch.bmm(dy, ctx.gbuf.transpose(1, 2)) if ctx.needs_input_grad[0] else None
        c, s = m.shape[0], m.shape[2]
        ctx.sink.dense()[:c, :s].baddbmm_(m.transpose(1, 2), dy)
        return (dm, None, None, None, *[dy.new_zeros(1)] * ctx.n_tokens)


class _SharedMixFn(torch.autograd.Function):
    """A whole stage whose receivers all read the same mixture (equal mask rows, as in EAP and
    EAP-IG): x = base + Σ_s m[s]·delta_s is computed once and every receiver reads it. Backward:
    each receiver's dy goes to the `_MaskGradSink`, which computes its own dm[r, s] = dy_r·delta_s
    for several stages at once, and the per-configuration deltas' gradient is the rank-one
    w ⊗ Σ_r dy_r.

    Inputs: m [c r hi], base [N·d], mix [c N·d] = Σ_s m[s]·delta_s (computed by the caller, who
    can continue the previous stage's sum), k (the number of senders every configuration
    shares), the `_GradSink` (None: no per-configuration senders), the mask sink with the
    stage's first receiver row, and the chunks' tokens. Output [c r N·d], one tensor expanded
    over the receivers."""

    @staticmethod
    def forward(ctx, m: Tensor, base: Tensor, mix: Tensor, k: int, sink, msink, row0: int, *tokens: Tensor) -> Tensor:
        ctx.save_for_backward(m)
        ctx.k, ctx.sink, ctx.msink, ctx.row0, ctx.n_tokens = k, sink, msink, row0, len(tokens)
        c, r = m.shape[:2]
        return (base[None] + mix)[:, None].expand(c, r, -1)

    @staticmethod
    def backward(ctx, dy: Tensor):
        (m,) = ctx.saved_tensors
        if ctx.needs_input_grad[0]:
            ctx.msink.add(ctx.row0, m.shape[2], dy)  # dm later, several stages in one product
        if ctx.sink is not None:
            ctx.sink.add_rank1(m[:, 0, ctx.k :], dy.sum(1))
        return (None, None, None, None, None, None, None, *[dy.new_zeros(1)] * ctx.n_tokens)


class _MaskGradSink:
    """The mask gradient of shared-mixture stages, computed for several stages at once.

    dm[r, s] = dy_r · δ_s reads every earlier sender's delta [N·d] for each stage: bound by
    memory bandwidth when a stage has few receivers. The stages' dy [c r N·d] are gathered as
    autograd reaches them (last stage first) and contracted with the deltas in blocks of about
    `block_rows` receivers, so the deltas are read once per block; `_DeferredMaskGrad` adds the
    result to the masks' gradient once every stage is done."""

    def __init__(self, shape: torch.Size, deltas: _Deltas, block_rows: int = 64) -> None:
        # Only the tensors, not `deltas` itself: it holds autograd tensors whose graph holds this
        # sink (through the mixing steps' ctx), a cycle the garbage collector cannot see.
        self.shape, self.block_rows = shape, block_rows
        self.s0, self.shared, self.buf, self.grad_deltas = deltas.s0, deltas.shared, deltas.buf, deltas.grad_deltas
        self.dm: Tensor | None = None  # [c receiver sender] (positional: [c receiver sender span])
        self.spans: SpanIndex | None = None  # positional: the gradient split by span (`_positions`)
        self.d = 0
        self.pending: list[tuple[int, int, Tensor]] = []  # (first row, hi, dy [c r N·d])

    def add(self, row0: int, hi: int, dy: Tensor) -> None:
        self.pending.append((row0, hi, dy))
        if sum(t.shape[1] for _, _, t in self.pending) >= self.block_rows:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        dy = torch.cat([t for _, _, t in self.pending], dim=1) if len(self.pending) > 1 else self.pending[0][2]
        c, R, nd = dy.shape
        hi = max(h for _, h, _ in self.pending)
        k = min(hi, self.s0)
        if self.spans is not None:
            gb = _gbuf(self.buf, self.grad_deltas, self.s0, hi, c, nd) if hi > k else None
            block = span_gradient_block(dy, self.shared, gb, k, hi, self.d, self.spans)  # [c R hi span]
        else:
            block = dy.new_empty(c, R, hi)
            block[:, :, :k] = (dy.reshape(c * R, nd) @ self.shared[:k].reshape(k, nd).T).view(c, R, k)
            if hi > k:
                block[:, :, k:] = torch.bmm(dy, _gbuf(self.buf, self.grad_deltas, self.s0, hi, c, nd).transpose(1, 2))
        if self.dm is None:
            self.dm = dy.new_zeros(self.shape)
        off = 0
        for row0, h, t in self.pending:
            r = t.shape[1]
            self.dm[:, row0 : row0 + r, :h] += block[:, off : off + r, :h]
            off += r
        self.pending = []


def _gbuf(buf: Tensor, grad_deltas: Tensor | None, s0: int, hi: int, c: int, nd: int) -> Tensor:
    """[c hi−s0 N·d] the per-configuration deltas the mask gradient multiplies: this run's
    (`buf` [c sender−s0 N d]) or `grad_deltas` [sender N d]."""
    if grad_deltas is None:
        return buf[:c, : hi - s0].reshape(c, hi - s0, nd)
    return grad_deltas[s0:hi].reshape(1, hi - s0, nd).expand(c, -1, -1)


class _DeferredMaskGrad(torch.autograd.Function):
    """masks -> a copy; backward adds the gradient `_MaskGradSink` gathered. Every mixing step
    reads the copy, so autograd runs this backward after all of theirs."""

    @staticmethod
    def forward(ctx, masks: Tensor, msink: _MaskGradSink) -> Tensor:
        ctx.msink = msink
        return masks.clone()

    @staticmethod
    def backward(ctx, g: Tensor):
        ctx.msink.flush()
        dm, ctx.msink.dm = ctx.msink.dm, None
        return (g if dm is None else g + dm), None


class _SpanMaskGrad(torch.autograd.Function):
    """Positional masks [c r s span] uniform over the spans -> the plain masks [c r s]; backward
    gives the gradient per span that `_MaskGradSink` gathered (every stage reads a shared
    mixture, so no other gradient reaches the plain masks)."""

    @staticmethod
    def forward(ctx, masks: Tensor, msink: _MaskGradSink, logits_rows: slice, span: int) -> Tensor:
        ctx.msink, ctx.shape = msink, masks.shape
        return plain_of_uniform(masks, logits_rows, span)

    @staticmethod
    def backward(ctx, g: Tensor):
        if g is not None and bool(g.ne(0).any()):  # pragma: no cover - a bug, not a user error
            raise RuntimeError("a positional mask gradient took the plain path")
        ctx.msink.flush()
        dm, ctx.msink.dm = ctx.msink.dm, None
        return (g.new_zeros(ctx.shape) if dm is None else dm), None, None, None


class _Deltas:
    """Sender deltas out − abl [.. sender N d] of one run under autograd, in computation order
    (runs without autograd use `patching_fast`).

    `shared` [s0 N d] holds the deltas every configuration has in common (the embeddings, or a
    cached prefix). Later ones are per configuration and go into one preallocated buffer
    [c sender N d], so a stage reads all of them with one matmul. Under autograd the buffer holds
    detached copies and `_MixFn` routes gradients back to the chunks they came from (writing into
    a tensor autograd saw would break backward; concatenating per stage would cost O(stages²)
    memory).
    """

    def __init__(self, shared: Tensor, c: int, n_senders: int, grad_deltas: Tensor | None = None) -> None:
        self.shared, self.c, self.s0, self.n = shared, c, shared.shape[0], shared.shape[0]
        self.grad_deltas = grad_deltas  # [sender N d] or None
        self.msink: _MaskGradSink | None = None  # set by `_run` when the masks need a gradient
        self.run: tuple[int, Tensor, Tensor] | None = None  # the last shared stage's (hi, weights, sum)
        self.chunks: list[Tensor] = []
        self.buf = self.sink = None
        if n_senders > self.s0:
            self.buf = shared.new_empty(c, n_senders - self.s0, *shared.shape[1:])
            self.sink = _GradSink(c, n_senders - self.s0, shared[0].numel(), shared)
        self.tokens: list[Tensor] = []
        self.spans: SpanIndex | None = None  # set by `run_autograd` for positional masks

    def append(self, t: Tensor) -> None:
        """t [c s N d] the next senders' deltas."""
        self.buf[:, self.n - self.s0 : self.n - self.s0 + t.shape[1]] = t.detach()
        self.chunks.append(t)
        self.tokens.append(_StoreToken.apply(t, self.sink, self.n - self.s0))
        self.n += t.shape[1]

    def per_config(self, upto: int) -> Tensor:
        """[c upto−s0 N d] per-configuration deltas of senders s0..upto."""
        t = torch.cat(self.chunks, dim=1) if len(self.chunks) > 1 else self.chunks[0]
        return t[:, : upto - self.s0]

    def _shared_sum(self, w: Tensor, hi: int, c: int, nd: int) -> Tensor:
        """Σ_{s<hi} w[:, s]·delta_s [c N·d] for a stage whose receivers share the weights w [c hi]
        (no autograd). When the previous such stage had the same weights on its senders (EAP,
        EAP-IG: every stage) its sum is continued, so a stage reads only its new senders' deltas
        instead of every earlier one's."""
        lo, total = 0, None
        if self.run is not None and self.run[0] <= hi and torch.equal(self.run[1], w[:, : self.run[0]]):
            lo, total = self.run[0], self.run[2]
        k = min(hi, self.s0)
        parts = []
        if lo < k:
            parts.append(w[:, lo:k] @ self.shared[lo:k].reshape(k - lo, nd))
        a = max(lo, self.s0)
        if hi > a:
            parts.append(torch.bmm(w[:, None, a:hi], self.buf[:c, a - self.s0 : hi - self.s0].reshape(c, hi - a, nd))[:, 0])
        for p in parts:
            total = p if total is None else total + p
        total = w.new_zeros(c, nd) if total is None else total
        self.run = (hi, w.clone(), total)
        return total

    def _dense(self, m: Tensor, base: Tensor, hi: int, row0: int = 0) -> Tensor:
        c, r, nd, s0 = m.shape[0], m.shape[1], base.numel(), self.s0
        k = min(hi, s0)  # a stage may read fewer senders than a cached prefix holds (parallel MLPs)
        tokens, n = [], s0
        for t, tok in zip(self.chunks, self.tokens, strict=True):
            if n >= hi:
                break
            tokens.append(tok)
            n += t.shape[1]
        buf = gbuf = None
        if hi > s0:
            buf = self.buf[:c, : hi - s0].reshape(c, hi - s0, nd)
            gbuf = _gbuf(self.buf, self.grad_deltas, s0, hi, c, nd)
        shared = self.shared[:k].reshape(k, nd)
        if (self.msink is not None and not (shared.requires_grad or base.requires_grad)
                and bool((m == m[:, :1]).all())):
            with torch.no_grad():
                mix = self._shared_sum(m[:, 0].detach(), hi, c, nd)
            return _SharedMixFn.apply(m, base.reshape(nd), mix, k, self.sink if buf is not None else None,
                                      self.msink, row0, *tokens)
        x = base.reshape(1, 1, nd) + (m[:, :, :k].reshape(c * r, k) @ shared).view(c, r, nd)
        if buf is not None:
            x = x + _MixFn.apply(m[:, :, s0:hi], buf, gbuf, self.sink, *tokens)
        return x

    def mix(self, masks: Tensor, st: StageLayout, base: Tensor) -> Tensor:
        """Receiver inputs [c r N d] of one stage: base + Σ_s mask[r, s] · delta_s."""
        m = masks[:, st.rows, : st.n_senders_before]  # [c r sender] (positional: [c r sender span])
        c, r = m.shape[:2]
        if m.dim() == 4:
            return mix_by_span_autograd(self._dense, m, base, st.n_senders_before, st.rows.start,
                                        self.spans).view(c, r, *base.shape)
        return self._dense(m, base, st.n_senders_before, st.rows.start).view(c, r, *base.shape)


def run_autograd(
    model: Transformer,
    graph: Graph,
    tokens: Tensor,
    ablation: Ablation,
    masks: Tensor,
    positions: Tensor | None,
    start: Prefix | None,
    grad_deltas: Tensor | None = None,
    spans: SpanIndex | None = None,
) -> Tensor:
    """The patched run under autograd: masks [c receiver sender] -> logits [c b v] at
    `positions` (or [c b p v]). Every configuration computes every component (autograd needs
    every value); this is the reference that `patching_fast.run_fast`, the run without
    autograd, is tested against."""
    cfg = model.cfg
    c = masks.shape[0]
    b, p = tokens.shape
    d = cfg.d_model
    masks, abl, base, rot, shared, first = run_inputs(model, graph, tokens, ablation, masks, start)
    deltas = _Deltas(shared, c, len(graph.senders), grad_deltas)
    deltas.spans = spans
    read = [] if positions is None or spans is None else \
        spans.ids[torch.arange(b, device=tokens.device) * p + positions].unique().tolist()  # the metric's spans
    if masks.requires_grad and masks.dim() == 4 and uniform_over_spans(masks.detach(), graph.stages, read):
        deltas.msink = _MaskGradSink(masks.shape, deltas)  # EAP, EAP-IG: the plain run, gradient per span
        deltas.msink.spans, deltas.msink.d = spans, d
        masks = _SpanMaskGrad.apply(masks, deltas.msink, graph.stages[-1].rows, read[0])
    elif masks.requires_grad and masks.dim() == 3:  # other positional masks take autograd's own path
        deltas.msink = _MaskGradSink(masks.shape, deltas)
        masks = _DeferredMaskGrad.apply(masks, deltas.msink)
    logits = None
    for si in range(first, len(graph.stages)):
        st = graph.stages[si]
        x = deltas.mix(masks, st, base[si])  # [c r N d]
        if st.kind == "logits":
            resid = x[:, 0].reshape(c, b, p, d)
            if positions is not None:
                resid = resid[:, torch.arange(b, device=tokens.device), positions]  # [c b d]
            logits = unembed(model, resid)
            break
        if st.kind == "mlp":
            out = mlp(model.blocks[st.layer], cfg, x[:, 0])[:, None]  # [c 1 N d]
        else:
            blk = model.blocks[st.layer]
            out = post_attention(blk, cfg, attention(blk, cfg, *qkv_inputs(x.reshape(c, -1, b, p, d), st), rot))
            out = out.flatten(2, 3)  # [c h N d]
            if st.senders.stop - st.senders.start != cfg.n_heads:  # one sender for the whole layer
                out = out.sum(1, keepdim=True)
        deltas.append(out - abl[st.senders])
    return logits


