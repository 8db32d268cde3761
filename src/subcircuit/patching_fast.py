"""The patched forward without autograd: many mask configurations in one pass, the way ACDC's
batched trials and every evaluation run it.

Same values as the autograd path of `subcircuit.patching` (its reference; `tests/test_patching_fast.py`
checks them equal), with far less memory traffic. In an ACDC batch the configurations differ in
a handful of edges, so almost everything they compute is the same:

- a sender whose inputs are the same in every configuration is computed once and its delta
  `out − abl` [N d] is stored once, not once per configuration; only senders downstream of a
  difference are stored per configuration [c N d];
- a receiver's mix reads only the senders it needs: those with weight ≠ 0, or, when fewer, those
  with weight ≠ 1 against the running sum of every delta (`full − Σ (1 − m)·delta`). Pruned
  receivers keep few edges, receivers not yet visited keep all of them, so one of the two sets
  is small;
- a sender that no configuration reads (a dead head or MLP) is not computed: its delta only
  ever meets weight 0, so it is stored as zero;
- within an attention stage the heads whose inputs agree across configurations run once, the
  others once per configuration, and only the receiver rows those heads read are mixed per
  configuration;
- the logits' input is mixed only at the positions the metric reads.

Shapes: N = b·p flattened token positions, d = d_model, c configurations, r receivers of a
stage, hi = senders a stage can read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from subcircuit.graph import Graph, StageLayout
from subcircuit.models.transformer import (
    Transformer,
    attention,
    embed,
    mlp,
    post_attention,
    rotary_tables,
    unembed,
)

if TYPE_CHECKING:
    from subcircuit.patching import Ablation, Prefix

SHARED, CONFIG, ZERO = 0, 1, 2


class _Store:
    """Sender deltas of one run. The first `s0` (embeddings or a cached prefix, [s0 N d]) are
    shared; each later sender is shared ([N d], kept once), per configuration ([c N d]) or zero.

    `sums` keeps the running sum of all deltas [1 or c, N, d] at the last two stage boundaries
    (a parallel block's MLP reads one boundary back) for the complement form of `mix`."""

    def __init__(self, prefix: Tensor, c: int, n_senders: int) -> None:
        self.pre, self.c, self.s0, self.n = prefix, c, prefix.shape[0], prefix.shape[0]
        later, shape = n_senders - self.s0, prefix.shape[1:]
        self.kind = torch.full((n_senders,), SHARED, dtype=torch.int8)
        self.sbuf = prefix.new_empty(later, *shape) if later else None  # [later N d]
        self.cbuf = prefix.new_empty(c, later, *shape) if later and c > 1 else None  # [c later N d]
        self.sums: dict[int, Tensor] = {self.s0: prefix.sum(0, keepdim=True)}

    def append(self, n_out: int, shared: tuple[Tensor, Tensor] | None = None,
               config: tuple[Tensor, Tensor] | None = None) -> None:
        """The next stage's n_out senders: `shared` = (indices [k], deltas [k N d]), `config` =
        (indices [k], deltas [c k N d]) within the stage; the rest are zero."""
        lo = self.n - self.s0
        self.kind[self.n : self.n + n_out] = ZERO
        total = self.sums[self.n]
        if config is not None and self.c == 1:  # one configuration: nothing to tell apart
            idx, t = config
            shared = (idx, t[0]) if shared is None else (torch.cat([shared[0], idx]), torch.cat([shared[1], t[0]]))
            config = None
        if shared is not None:
            idx, t = shared
            self.kind[self.n + idx] = SHARED
            self.sbuf[lo + idx.to(self.sbuf.device)] = t
            total = total + t.sum(0, keepdim=True)
        if config is not None:
            idx, t = config
            self.kind[self.n + idx] = CONFIG
            self.cbuf[:, lo + idx.to(self.cbuf.device)] = t
            total = total + t.sum(1)
        self.sums = {self.n: self.sums[self.n], self.n + n_out: total}
        self.n += n_out

    def varying_rows(self, m: Tensor) -> Tensor:
        """[r] whether each receiver (weights m [c r hi]) may see different inputs in different
        configurations: its weights differ, or it reads a per-configuration sender."""
        differs = (m != m[:1]).any(-1).any(0)
        v = (self.kind[: m.shape[-1]] == CONFIG).to(m.device)
        if bool(v.any()):
            differs |= (m[:, :, v] != 0).any(-1).any(0)
        return differs.cpu()

    def mix(self, w: Tensor, base: Tensor, pick: Tensor | None = None) -> Tensor:
        """Receiver inputs base + Σ_s w[:, :, s]·delta_s -> [c' r N' d] for weights w [c' r hi]
        (c' = 1: configuration 0 only, or c), base [N d]. pick [n] (optional): the flattened
        positions to compute (N' = n), else all (N' = N)."""
        c1, r, hi = w.shape
        kind = self.kind[:hi]
        real = (kind != ZERO).to(w.device)
        used = ((w != 0).flatten(0, 1).any(0) & real).cpu()
        not_one = ((w != 1).flatten(0, 1).any(0) & real).cpu()
        complement = hi in self.sums and int(not_one.sum()) < int(used.sum())
        if complement:
            start, cols, w = base + self.sums[hi][:c1], not_one, w - 1
        else:
            start, cols = base[None], used

        def sel(t: Tensor) -> Tensor:  # [.. N d] -> [.. N' d]
            return t if pick is None else t.index_select(-2, pick)

        x = sel(start).reshape(start.shape[0], 1, -1)  # [1|c' 1 N'·d]
        x = x.expand(c1, r, x.shape[-1])
        nd = x.shape[-1]
        cols_pre = cols[: self.s0].nonzero().flatten()
        parts: list[Tensor] = []
        if len(cols_pre) > self.s0 // 4:  # dense over the prefix (the others' weights are 0)
            k = min(hi, self.s0)
            parts.append((w[:, :, :k].reshape(c1 * r, k) @ sel(self.pre[:k]).reshape(k, nd)).view(c1, r, nd))
        elif len(cols_pre):
            g = sel(self.pre[cols_pre.to(self.pre.device)])
            parts.append((w[:, :, cols_pre].reshape(c1 * r, -1) @ g.reshape(len(cols_pre), nd)).view(c1, r, nd))
        later = cols.clone()
        later[: self.s0] = False
        for want, buf in ((SHARED, self.sbuf), (CONFIG, self.cbuf)):
            idx = (later & (kind == want)).nonzero().flatten()
            if not len(idx):
                continue
            at = (idx - self.s0).to(w.device)
            wk = w[:, :, idx.to(w.device)]  # [c' r k]
            if want == SHARED:
                g = sel(buf[at]).reshape(len(idx), nd)
                parts.append((wk.reshape(c1 * r, -1) @ g).view(c1, r, nd))
            else:
                g = sel(buf[:c1, at]).reshape(c1, len(idx), nd)
                parts.append(torch.bmm(wk, g))
        for p in parts:
            x = x + p
        return x.view(c1, r, -1, base.shape[-1])

    def all(self) -> Tensor:
        """[c sender N d] every delta so far (for caching a prefix)."""
        out = [self.pre[None].expand(self.c, *self.pre.shape)]
        for s in range(self.s0, self.n):
            k = int(self.kind[s])
            if k == SHARED:
                out.append(self.sbuf[s - self.s0][None, None].expand(self.c, 1, *self.pre.shape[1:]))
            elif k == CONFIG:
                out.append(self.cbuf[:, s - self.s0][:, None])
            else:
                out.append(self.pre.new_zeros(self.c, 1, *self.pre.shape[1:]))
        return torch.cat(out, dim=1)


def run_fast(
    model: Transformer,
    graph: Graph,
    tokens: Tensor,
    ablation: Ablation,
    masks: Tensor,
    positions: Tensor | None,
    start: Prefix | None,
    want_deltas: bool = False,
    stop_stage: int | None = None,
    skip_dead: bool = True,
) -> tuple[Tensor | None, Tensor | None]:
    """`patching._run` without autograd: masks [c receiver sender] -> (logits [c b v] at
    `positions` or [c b p v], deltas [c sender N d] if `want_deltas`)."""
    cfg = model.cfg
    c = masks.shape[0]
    b, p = tokens.shape
    N, d = b * p, cfg.d_model
    masks = masks * graph.exists.to(masks.device, masks.dtype)
    abl = ablation.outputs.reshape(len(graph.senders), N, d)
    base = ablation.base.reshape(len(graph.stages), N, d)
    rot = rotary_tables(cfg, p, tokens.device, model.W_E.dtype)
    if start is None:
        prefix, first = embed(model, tokens).reshape(1, N, d) - abl[:1], 0
    else:
        prefix, first = start.deltas, start.stage_index
    store = _Store(prefix, c, len(graph.senders))
    alive = masks.ne(0).flatten(0, 1).any(0).cpu() if skip_dead else None
    pick = None if positions is None else torch.arange(b, device=tokens.device) * p + positions
    stop = len(graph.stages) if stop_stage is None else stop_stage
    logits = None
    for si in range(first, stop):
        st = graph.stages[si]
        n_out = st.senders.stop - st.senders.start
        if alive is not None and st.kind != "logits" and not bool(alive[st.senders].any()):
            store.append(n_out)
            continue
        m = masks[:, st.rows, : st.n_senders_before]  # [c r hi]
        rvar = store.varying_rows(m) if c > 1 else torch.zeros(m.shape[1], dtype=torch.bool)
        if st.kind == "logits":
            x = store.mix(m if bool(rvar[0]) else m[:1], base[si], pick)[:, 0]  # [c' N' d]
            logits = unembed(model, x.reshape(x.shape[0], b, -1, d) if pick is None else x)
            logits = logits.expand(c, *logits.shape[1:])
            break
        abl_out = abl[st.senders]  # [n_out N d]
        if st.kind == "mlp":
            varies = bool(rvar[0])
            x = store.mix(m if varies else m[:1], base[si])[:, 0]  # [c' N d]
            delta = mlp(model.blocks[st.layer], cfg, x) - abl_out
            one = torch.zeros(1, dtype=torch.long)
            store.append(n_out, config=(one, delta[:, None])) if varies else store.append(n_out, shared=(one, delta))
            continue
        _attention_stage(model, cfg, st, store, m, rvar, base[si], abl_out, alive, rot, b, p)
    return logits, (store.all() if want_deltas else None)


def _attention_stage(model, cfg, st: StageLayout, store: _Store, m: Tensor, rvar: Tensor, base: Tensor,
                     abl_out: Tensor, alive: Tensor | None, rot, b: int, p: int) -> None:
    """One attention stage: heads whose inputs agree across configurations run once, the rest
    per configuration; dead heads are not computed."""
    blk = model.blocks[st.layer]
    H, d = cfg.n_heads, cfg.d_model
    c = m.shape[0]
    n_out = st.senders.stop - st.senders.start
    per_head = n_out == H
    hvar = _head_varies(cfg, st, rvar)
    if not per_head or cfg.post_norms:
        # One sender for the whole layer, or post-norms (every head's output depends on all heads
        # of the layer through one norm scale): all heads together, per configuration if any varies.
        varies = bool(hvar.any())
        x = store.mix(m if varies else m[:1], base).reshape(-1, m.shape[1], b, p, d)
        out = post_attention(blk, cfg, attention(blk, cfg, *_qkv(x, st), rot)).flatten(2, 3)
        if not per_head:
            out = out.sum(1, keepdim=True)
        idx = torch.arange(n_out)
        if varies:
            store.append(n_out, config=(idx, out - abl_out))
        else:
            store.append(n_out, shared=(idx, out[0] - abl_out))
        return
    live = alive[st.senders] if alive is not None else torch.ones(H, dtype=torch.bool)
    fixed, var = live & ~hvar, live & hvar
    r = m.shape[1]
    x1 = store.mix(m[:1], base)  # [1 r N d]: every row's input in configuration 0
    shared = config = None
    if bool(fixed.any()):
        heads = fixed.nonzero().flatten()
        out = attention(blk, cfg, *_qkv(x1.view(1, r, b, p, d), st), rot, None if bool(fixed.all()) else heads.to(m.device))
        shared = (heads, out[0].flatten(1, 2) - abl_out[heads.to(abl_out.device)])
    if bool(var.any()):
        heads = var.nonzero().flatten()
        need = _rows_of(cfg, st, var)  # [r] rows the varying heads read
        x = x1.new_empty(c, r, *x1.shape[2:])  # rows no varying head reads stay unwritten
        per = need & rvar
        same = need & ~rvar
        if bool(same.any()):
            x[:, same.to(x.device)] = x1[:, same.to(x.device)]
        if bool(per.any()):
            rows = per.nonzero().flatten().to(m.device)
            x[:, rows] = store.mix(m[:, rows], base)
        out = attention(blk, cfg, *_qkv(x.view(c, r, b, p, d), st), rot, None if bool(var.all()) else heads.to(m.device))
        config = (heads, out.flatten(2, 3) - abl_out[heads.to(abl_out.device)])
    store.append(n_out, shared=shared, config=config)


def _rows_of(cfg, st: StageLayout, heads: Tensor) -> Tensor:
    """[r] bool: the stage's receiver rows that the heads `heads` [h] (bool) read."""
    H = cfg.n_heads
    need = torch.zeros(st.rows.stop - st.rows.start, dtype=torch.bool)
    idx = heads.nonzero().flatten()
    for sl in (st.q, st.k, st.v):
        n = sl.stop - sl.start
        rows = idx if n == H else (idx // cfg.group_size if n == cfg.kv_heads else torch.zeros_like(idx))
        need[sl.start + rows] = True
    return need


def _qkv(x5: Tensor, st: StageLayout) -> tuple[Tensor, Tensor, Tensor]:
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


def _head_varies(cfg, st: StageLayout, rvar: Tensor) -> Tensor:
    """[h] whether any of a head's query, key or value inputs varies between configurations."""
    H = cfg.n_heads
    idx = torch.arange(H)
    out = torch.zeros(H, dtype=torch.bool)
    for sl in (st.q, st.k, st.v):
        n = sl.stop - sl.start
        rows = idx if n == H else (idx // cfg.group_size if n == cfg.kv_heads else torch.zeros(H, dtype=torch.long))
        out |= rvar[sl.start + rows]
    return out
