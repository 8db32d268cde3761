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
- only the positions the metric reads are computed from the last attention layer on: its
  queries, its outputs and everything after it (the keys and values still cover every position).

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


class Memo:
    """Outputs of components whose inputs were the same in every configuration, kept from one
    run to the next on the same batch, ablation and prefix cache (an ACDC run's trials), and
    reused while the component's mask rows and every sender it reads are unchanged.

    Every sender value in a run has a version: 0 for the cached prefix and the embeddings
    (values that never change within an ACDC run), −1 for a dead sender (zero), −2 for one
    that differs between configurations, and a fresh number each time a component is computed
    (a reused output keeps its number). A component's entry holds its rows of configuration
    0's mask, the versions of the senders those rows read, and its delta."""

    def __init__(self) -> None:
        self.entries: dict[tuple[int, int, bool], tuple[Tensor, Tensor, Tensor, Tensor, int]] = {}
        self.counter = 0
        self.hits = self.misses = 0
        self.source: tuple | None = None

    def bind(self, *source: object) -> None:
        """Entries are valid for one batch, ablation and prefix cache (`source`: the objects
        themselves, compared by identity and kept alive, so no other object can take their
        place); a run on another forgets them rather than reuse what does not apply."""
        if self.source is None or len(source) != len(self.source) or any(
                a is not b for a, b in zip(source, self.source, strict=True)):
            self.entries.clear()
            self.source = source

    def fresh(self) -> int:
        self.counter += 1
        return self.counter

    def get(self, key: tuple[int, int, bool], rows: Tensor, ver: Tensor) -> tuple[Tensor, int] | None:
        """The stored (delta, version) if `rows` [k hi] and the versions `ver` of what they read match."""
        e = self.entries.get(key)
        if e is not None and e[0].shape == rows.shape and torch.equal(e[0], rows) and torch.equal(ver[e[1]], e[2]):
            self.hits += 1
            return e[3], e[4]
        self.misses += 1
        return None

    def put(self, key: tuple[int, int, bool], rows: Tensor, ver: Tensor, delta: Tensor, version: int) -> None:
        cols = rows.ne(0).any(0).nonzero().flatten().cpu()
        self.entries[key] = (rows.clone(), cols, ver[cols].clone(), delta.clone(), version)


class _Store:
    """Sender deltas of one run. The first `s0` (embeddings or a cached prefix, [s0 N d]) are
    shared; each later sender is shared ([N d], kept once), per configuration ([c N d]) or zero.
    Senders from `n_pos` on (the last attention layer's and later, when only the metric's
    positions are wanted) are kept at those positions only: [n d] in the first n rows of N.

    `sums` keeps the running sum of all deltas [1 or c, N or n, d] at the last two stage
    boundaries (a parallel block's MLP reads one boundary back), for the complement form of
    `mix`."""

    def __init__(self, prefix: Tensor, c: int, n_senders: int, memo: Memo | None = None,
                 total: Tensor | None = None) -> None:
        self.pre, self.c, self.s0, self.n = prefix, c, prefix.shape[0], prefix.shape[0]
        later, shape = n_senders - self.s0, prefix.shape[1:]
        self.kind = torch.full((n_senders,), SHARED, dtype=torch.int8)
        self.sbuf = prefix.new_empty(later, *shape) if later else None  # [later N d]
        self.cbuf = prefix.new_empty(c, later, *shape) if later and c > 1 else None  # [c later N d]
        self.n_pos: int | None = None
        self.sums: dict[int, Tensor] = {self.s0: prefix.sum(0, keepdim=True) if total is None else total}
        self.ver = torch.zeros(n_senders, dtype=torch.long)  # see `Memo`
        self.memo = memo if memo is not None else Memo()

    def append(self, n_out: int, shared: tuple[Tensor, Tensor] | None = None,
               config: tuple[Tensor, Tensor] | None = None, pick: Tensor | None = None,
               versions: Tensor | None = None) -> None:
        """The next stage's n_out senders: `shared` = (indices [k], deltas [k N' d]), `config` =
        (indices [k], deltas [c k N' d]) within the stage; the rest are zero. With `pick` [n]
        the deltas are at those flattened positions only (N' = n), as every later one must be.
        `versions` [k]: the shared deltas' versions (default: fresh ones)."""
        if pick is not None and self.n_pos is None:
            self.n_pos = self.n
            self.sums[self.n] = self.sums[self.n].index_select(-2, pick)
        lo, n_rows = self.n - self.s0, None if pick is None else len(pick)
        self.kind[self.n : self.n + n_out] = ZERO
        self.ver[self.n : self.n + n_out] = -1
        total = self.sums[self.n]
        if config is not None and self.c == 1:  # one configuration: nothing to tell apart
            idx, t = config
            new = self._fresh(len(idx))
            if shared is None:
                shared, versions = (idx, t[0]), new
            else:
                old = versions if versions is not None else self._fresh(len(shared[0]))
                shared, versions = (torch.cat([shared[0], idx]), torch.cat([shared[1], t[0]])), torch.cat([old, new])
            config = None
        if shared is not None:
            idx, t = shared
            self.kind[self.n + idx] = SHARED
            self.ver[self.n + idx] = versions if versions is not None else self._fresh(len(idx))
            self.sbuf[lo + idx.to(self.sbuf.device), :n_rows] = t
            total = total + t.sum(0, keepdim=True)
        if config is not None:
            idx, t = config
            self.kind[self.n + idx] = CONFIG
            self.ver[self.n + idx] = -2
            self.cbuf[:, lo + idx.to(self.cbuf.device), :n_rows] = t
            total = total + t.sum(1)
        self.sums = {self.n: self.sums[self.n], self.n + n_out: total}
        self.n += n_out

    def _fresh(self, k: int) -> Tensor:
        return torch.tensor([self.memo.fresh() for _ in range(k)], dtype=torch.long)

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
        (c' = 1: configuration 0 only, or c), base [N d]. pick [n] (optional; required once
        senders are kept at positions only): the flattened positions to compute (N' = n)."""
        c1, r, hi = w.shape
        kind = self.kind[:hi]
        real = (kind != ZERO).to(w.device)
        used = ((w != 0).flatten(0, 1).any(0) & real).cpu()
        not_one = ((w != 1).flatten(0, 1).any(0) & real).cpu()
        n_full = hi if self.n_pos is None else min(hi, self.n_pos)
        if n_full < hi and pick is None:  # pragma: no cover - a bug, not a user error
            raise RuntimeError("senders kept at the metric's positions only were read at every position")

        def sel(t: Tensor) -> Tensor:  # [.. N d] -> [.. N' d]
            return t if pick is None else t.index_select(-2, pick)

        x = sel(base)[None]  # [1 N' d]
        complement = hi in self.sums and int(not_one.sum()) < int(used.sum())
        if complement:
            total = self.sums[hi][:c1]
            x = x + (total if self.n_pos is not None and hi >= self.n_pos else sel(total))  # picked at the switch
            cols, w = not_one, w - 1
        else:
            cols = used
        nd = x[0].numel()
        x = x.reshape(x.shape[0], 1, nd).expand(c1, r, nd)
        parts: list[Tensor] = []
        k = min(hi, self.s0)
        cols_pre = cols[:k].nonzero().flatten()
        if len(cols_pre) * (r + 2) > k * r:  # dense over the prefix (the others' weights are 0)
            parts.append((w[:, :, :k].reshape(c1 * r, k) @ sel(self.pre[:k]).reshape(k, nd)).view(c1, r, nd))
        else:
            for cols_w, g in _read(w, cols_pre, 0, lambda i: sel(self.pre[i]), torch.ones(k, dtype=torch.bool)):
                parts.append((cols_w.reshape(c1 * r, -1) @ g.reshape(-1, nd)).view(c1, r, nd))
        later = cols.clone()
        later[:k] = False
        n_rows = x.shape[-1] // base.shape[-1]
        for want, buf in ((SHARED, self.sbuf), (CONFIG, self.cbuf)):
            for lo, hi_ in ((self.s0, n_full), (n_full, hi)):  # every position / metric positions only
                valid = kind == want
                valid[:lo] = False
                valid[hi_:] = False
                idx = (later & valid).nonzero().flatten()
                if not len(idx):
                    continue

                def fetch(i, buf=buf, want=want, lo=lo):  # i: a slice or indices, relative to s0
                    g = buf[i] if want == SHARED else buf[:c1, i]
                    return sel(g) if lo < n_full else g[..., :n_rows, :]

                for wk, g in _read(w, idx, self.s0, fetch, valid):
                    if want == SHARED:
                        parts.append((wk.reshape(c1 * r, -1) @ g.reshape(-1, nd)).view(c1, r, nd))
                    else:
                        parts.append(torch.bmm(wk, g.reshape(c1, -1, nd)))
        for i, p in enumerate(parts):
            x = x + p if i == 0 else x.add_(p)  # the first sum is a new tensor: add the rest in place
        return x.view(c1, r, -1, base.shape[-1])

    def all(self) -> Tensor:
        """[c sender N d] every delta so far (for caching a prefix)."""
        assert self.n_pos is None, "a run at the metric's positions only has no full deltas"
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


def run_inputs(model: Transformer, graph: Graph, tokens: Tensor, ablation: Ablation, masks: Tensor,
               start: Prefix | None) -> tuple[Tensor, Tensor, Tensor, object, Tensor, int]:
    """What every patched run starts from: the masks on existing edges only, the ablated outputs
    [sender N d], the per-stage bases [stage N d], the rotary tables, the deltas every
    configuration shares at the start [s0 N d] (the embeddings', or a cached prefix) and the
    first stage to run."""
    b, p = tokens.shape
    N, d = b * p, model.cfg.d_model
    masks = masks * graph.exists.to(masks.device, masks.dtype)
    abl = ablation.outputs.reshape(len(graph.senders), N, d)
    base = ablation.base.reshape(len(graph.stages), N, d)
    rot = rotary_tables(model.cfg, p, tokens.device, model.W_E.dtype)
    if start is None:
        return masks, abl, base, rot, embed(model, tokens).reshape(1, N, d) - abl[:1], 0
    return masks, abl, base, rot, start.deltas, start.stage_index


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
    memo: Memo | None = None,
) -> tuple[Tensor | None, Tensor | None]:
    """The patched run without autograd (`patching._run` is its autograd reference): masks
    [c receiver sender] -> (logits [c b v] at
    `positions` or [c b p v], deltas [c sender N d] if `want_deltas`). `memo`: reuse component
    outputs across runs on the same batch, ablation and prefix cache (see `Memo`)."""
    cfg = model.cfg
    c = masks.shape[0]
    b, p = tokens.shape
    d = cfg.d_model
    masks, abl, base, rot, prefix, first = run_inputs(model, graph, tokens, ablation, masks, start)
    if memo is not None:
        cache = None if start is None else (start.deltas if start.deltas._base is None else start.deltas._base)
        memo.bind(ablation, tokens, cache)
    store = _Store(prefix, c, len(graph.senders), memo, None if start is None else start.total)
    alive = masks.ne(0).flatten(0, 1).any(0).cpu() if skip_dead else None
    stop = len(graph.stages) if stop_stage is None else stop_stage
    # Only the metric's positions are needed from the last attention stage on: its queries, and
    # every later component (position-wise), run there only.
    pick = pos_from = None
    if positions is not None and not want_deltas:
        pick = torch.arange(b, device=tokens.device) * p + positions
        attn = [i for i, st in enumerate(graph.stages) if st.kind == "attn"]
        pos_from = attn[-1] if attn else len(graph.stages) - 1
    logits = None
    for si in range(first, stop):
        st = graph.stages[si]
        n_out = st.senders.stop - st.senders.start
        at = pick if pos_from is not None and si >= pos_from else None
        if alive is not None and st.kind != "logits" and not bool(alive[st.senders].any()):
            store.append(n_out, pick=at)
            continue
        m = masks[:, st.rows, : st.n_senders_before]  # [c r hi]
        rvar = store.varying_rows(m) if c > 1 else torch.zeros(m.shape[1], dtype=torch.bool)
        if st.kind == "logits":
            x = store.mix(m if bool(rvar[0]) else m[:1], base[si], pick)[:, 0]  # [c' N' d]
            logits = unembed(model, x.reshape(x.shape[0], b, -1, d) if pick is None else x)
            logits = logits.expand(c, *logits.shape[1:])
            break
        abl_out = abl[st.senders] if at is None else abl[st.senders].index_select(-2, at)  # [n_out N' d]
        one = torch.zeros(1, dtype=torch.long)
        if st.kind == "mlp":
            if bool(rvar[0]):
                x = store.mix(m, base[si], at)[:, 0]  # [c N' d]
                store.append(n_out, config=(one, (mlp(model.blocks[st.layer], cfg, x) - abl_out)[:, None]), pick=at)
                continue

            def compute(m=m, si=si, at=at, abl_out=abl_out, st=st):
                return mlp(model.blocks[st.layer], cfg, store.mix(m[:1], base[si], at)[:, 0]) - abl_out  # [1 N' d]

            delta, version = _memoized(memo, store, (si, 0, at is not None), m[0], compute)
            store.append(n_out, shared=(one, delta), pick=at, versions=version)
            continue
        qpos = None if at is None else positions
        _attention_stage(model, cfg, st, si, store, memo, m, rvar, base[si], abl_out, alive, rot, b, p, qpos, at)
    return logits, (store.all() if want_deltas else None)


def _memoized(memo: Memo | None, store: _Store, key: tuple[int, int, bool], rows: Tensor,
              compute) -> tuple[Tensor, Tensor | None]:
    """A component's delta [k N' d] read from `memo` or computed (and stored), with its
    versions (None without a memo: fresh ones)."""
    if memo is None:
        return compute(), None
    got = memo.get(key, rows, store.ver)
    if got is not None:
        return got[0], torch.tensor([got[1]] * len(got[0]), dtype=torch.long)
    delta = compute()
    version = memo.fresh()
    memo.put(key, rows, store.ver, delta, version)
    return delta, torch.tensor([version] * len(delta), dtype=torch.long)


def _attention_stage(model, cfg, st: StageLayout, si: int, store: _Store, memo: Memo | None, m: Tensor,
                     rvar: Tensor, base: Tensor, abl_out: Tensor, alive: Tensor | None, rot, b: int, p: int,
                     qpos: Tensor | None, pick: Tensor | None) -> None:
    """One attention stage: heads whose inputs agree across configurations run once (or come
    from `memo`), the rest per configuration; dead heads are not computed. With `qpos` [b]
    (`pick` its flattened form) the queries, and so the outputs, are only at those positions."""
    blk = model.blocks[st.layer]
    H, d = cfg.n_heads, cfg.d_model
    c, r = m.shape[:2]
    n_out = st.senders.stop - st.senders.start
    per_head = n_out == H
    at_pos = pick is not None

    def run(x: Tensor, heads: Tensor | None) -> Tensor:  # x [c' r N d] -> [c' h N' d]
        q, k, v = _qkv(x.view(x.shape[0], r, b, p, d), st)
        if qpos is not None:
            q = q[:, :, torch.arange(b, device=q.device), qpos][:, :, :, None]  # [c' s b 1 d]
        return attention(blk, cfg, q, k, v, rot, heads, qpos).flatten(2, 3)

    hvar = _head_varies(cfg, st, rvar)
    if not per_head or cfg.post_norms:
        # One sender for the whole layer, or post-norms (every head's output depends on all heads
        # of the layer through one norm scale): all heads together, per configuration if any varies.
        def compute() -> Tensor:
            out = post_attention(blk, cfg, run(store.mix(m[:1] if not varies else m, base), None))
            return (out.sum(1, keepdim=True) if not per_head else out) - abl_out

        varies = bool(hvar.any())
        idx = torch.arange(n_out)
        if varies:
            store.append(n_out, config=(idx, compute()), pick=pick)
        else:
            delta, version = _memoized(memo, store, (si, -1, at_pos), m[0], lambda: compute()[0])
            store.append(n_out, shared=(idx, delta), pick=pick, versions=version)
        return
    live = alive[st.senders] if alive is not None else torch.ones(H, dtype=torch.bool)
    fixed, var = live & ~hvar, live & hvar
    shared_idx: list[int] = []
    shared_d: list[Tensor] = []
    shared_v: list[Tensor] = []
    # each fixed head's mask rows in configuration 0 (its memo key's rows)
    own = {h: m[0, _rows_of(cfg, st, torch.arange(H) == h).nonzero().flatten().to(m.device)]
           for h in fixed.nonzero().flatten().tolist()} if memo is not None else {}
    if memo is not None:  # fixed heads stored in the memo need not run
        for h, rows in own.items():
            got = memo.get((si, h, at_pos), rows, store.ver)
            if got is not None:
                fixed[h] = False
                shared_idx.append(h)
                shared_d.append(got[0])
                shared_v.append(torch.tensor([got[1]], dtype=torch.long))
    need_var = _rows_of(cfg, st, var)
    need1 = _rows_of(cfg, st, fixed) | (need_var & ~rvar)  # rows read in configuration 0's form
    x1 = None
    if bool(need1.all()):
        x1 = store.mix(m[:1], base)
    elif bool(need1.any()):
        x1 = m.new_empty(1, r, *base.shape)  # rows nobody reads stay unwritten
        rows = need1.nonzero().flatten().to(m.device)
        x1[:, rows] = store.mix(m[:1, rows], base)
    if bool(fixed.any()):
        heads = fixed.nonzero().flatten()
        out = run(x1, None if bool(fixed.all()) else heads.to(m.device))
        delta = out[0] - abl_out[heads.to(abl_out.device)]  # [k N' d]
        for j, h in enumerate(heads.tolist()):
            version = store.memo.fresh()
            if memo is not None:
                memo.put((si, h, at_pos), own[h], store.ver, delta[j : j + 1], version)
            shared_idx.append(h)
            shared_d.append(delta[j : j + 1])
            shared_v.append(torch.tensor([version], dtype=torch.long))
    shared = None
    if shared_idx:
        shared = (torch.tensor(shared_idx, dtype=torch.long), torch.cat(shared_d))
    config = None
    if bool(var.any()):
        heads = var.nonzero().flatten()
        same, per = need_var & ~rvar, need_var & rvar
        if bool(per.all()):
            x = store.mix(m, base)
        else:
            x = m.new_empty(c, r, *base.shape)  # rows no varying head reads stay unwritten
            if bool(same.any()):
                rows = same.nonzero().flatten().to(m.device)
                x[:, rows] = x1[:, rows]
            if bool(per.any()):
                rows = per.nonzero().flatten().to(m.device)
                x[:, rows] = store.mix(m[:, rows], base)
        out = run(x, None if bool(var.all()) else heads.to(m.device))
        config = (heads, out - abl_out[heads.to(abl_out.device)])
    store.append(n_out, shared=shared, config=config, pick=pick,
                 versions=torch.cat(shared_v) if shared_v else None)


def _read(w: Tensor, idx: Tensor, offset: int, fetch, valid: Tensor) -> list[tuple[Tensor, Tensor]]:
    """(weights w[:, :, cols], deltas fetch(cols − offset)) for the sender columns idx [k]
    (sorted), read as slices (views, nothing copied) where possible, else gathered:

    - the whole span of idx, when it is at most twice as long and every column in it is `valid`
      (stored in this buffer, so finite; the columns not in idx then have weight 0);
    - each contiguous run, when the runs are few or long;
    - else one gather."""
    cols = idx.tolist()
    if not cols:
        return []
    a, b = cols[0], cols[-1] + 1
    if b - a <= 2 * len(cols) and bool(valid[a:b].all()):
        return [(w[:, :, a:b], fetch(slice(a - offset, b - offset)))]
    runs: list[list[int]] = []
    for col in cols:
        if runs and runs[-1][1] == col:
            runs[-1][1] = col + 1
        else:
            runs.append([col, col + 1])
    if len(runs) <= 4 or len(cols) >= 8 * len(runs):
        return [(w[:, :, a:b], fetch(slice(a - offset, b - offset))) for a, b in runs]
    return [(w[:, :, idx.to(w.device)], fetch((idx - offset).to(w.device)))]


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
