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
from subcircuit.models.attention import attention, post_attention
from subcircuit.models.transformer import Transformer, mlp, unembed
from subcircuit.patching._common import qkv_inputs, run_inputs
from subcircuit.patching._memo import Memo
from subcircuit.patching._positions import SpanIndex
from subcircuit.patching._senders import Senders

if TYPE_CHECKING:
    from subcircuit.patching.ablation import Ablation, Prefix


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
    spans: SpanIndex | None = None,
) -> tuple[Tensor | None, Tensor | None]:
    """The patched run without autograd (`patching._run` is its autograd reference): masks
    [c receiver sender] -> (logits [c b v] at
    `positions` or [c b p v], deltas [c sender N d] if `want_deltas`). `memo`: reuse component
    outputs across runs on the same batch, ablation and prefix cache (see `Memo`). Positional
    masks [c receiver sender span] need `spans` (see `_positions`)."""
    cfg = model.cfg
    c = masks.shape[0]
    b, p = tokens.shape
    d = cfg.d_model
    masks, abl, base, rot, prefix, first = run_inputs(model, graph, tokens, ablation, masks, start)
    if memo is not None:
        cache = None if start is None else (start.deltas if start.deltas._base is None else start.deltas._base)
        memo.bind(ablation, tokens, cache)
    store = Senders(prefix, c, len(graph.senders), memo, None if start is None else start.total, spans)
    alive = masks.ne(0).transpose(0, 2).flatten(1).any(1).cpu() if skip_dead else None
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


def _memoized(memo: Memo | None, store: Senders, key: tuple[int, int, bool], rows: Tensor,
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


def _attention_stage(model, cfg, st: StageLayout, si: int, store: Senders, memo: Memo | None, m: Tensor,
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
        q, k, v = qkv_inputs(x.view(x.shape[0], r, b, p, d), st)
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
