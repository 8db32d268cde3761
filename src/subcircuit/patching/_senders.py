"""Sender deltas of one patched run without autograd, stored once where the configurations agree,
and the mixing step that reads only the senders a receiver needs (see `_fast`)."""

from __future__ import annotations

import torch
from torch import Tensor

from subcircuit.patching._memo import Memo
from subcircuit.patching._positions import SpanIndex, mix_by_span

SHARED, CONFIG, ZERO = 0, 1, 2


class Senders:
    """Sender deltas of one run. The first `s0` (embeddings or a cached prefix, [s0 N d]) are
    shared; each later sender is shared ([N d], kept once), per configuration ([c N d]) or zero.
    Senders from `n_pos` on (the last attention layer's and later, when only the metric's
    positions are wanted) are kept at those positions only: [n d] in the first n rows of N.

    `sums` keeps the running sum of all deltas [1 or c, N or n, d] at the last two stage
    boundaries (a parallel block's MLP reads one boundary back), for the complement form of
    `mix`."""

    def __init__(self, prefix: Tensor, c: int, n_senders: int, memo: Memo | None = None,
                 total: Tensor | None = None, spans: SpanIndex | None = None) -> None:
        self.pre, self.c, self.s0, self.n = prefix, c, prefix.shape[0], prefix.shape[0]
        later, shape = n_senders - self.s0, prefix.shape[1:]
        self.kind = torch.full((n_senders,), SHARED, dtype=torch.int8)
        self.sbuf = prefix.new_empty(later, *shape) if later else None  # [later N d]
        self.cbuf = prefix.new_empty(c, later, *shape) if later and c > 1 else None  # [c later N d]
        self.n_pos: int | None = None
        self.acc = torch.promote_types(prefix.dtype, torch.float32)  # sums of deltas: at least fp32 (bf16/fp16 runs)
        self.sums: dict[int, Tensor] = {self.s0: prefix.sum(0, keepdim=True, dtype=self.acc) if total is None
                                        else total.to(self.acc)}
        self.ver = torch.zeros(n_senders, dtype=torch.long)  # see `Memo`
        self.memo = memo if memo is not None else Memo()
        self.spans = spans  # where the spans are, for positional weights [c r hi span]

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
            total = total + t.sum(0, keepdim=True, dtype=self.acc)
        if config is not None:
            idx, t = config
            self.kind[self.n + idx] = CONFIG
            self.ver[self.n + idx] = -2
            self.cbuf[:, lo + idx.to(self.cbuf.device), :n_rows] = t
            total = total + t.sum(1, dtype=self.acc)
        self.sums = {self.n: self.sums[self.n], self.n + n_out: total}
        self.n += n_out

    def _fresh(self, k: int) -> Tensor:
        return torch.tensor([self.memo.fresh() for _ in range(k)], dtype=torch.long)

    def varying_rows(self, m: Tensor) -> Tensor:
        """[r] whether each receiver (weights m [c r hi]) may see different inputs in different
        configurations: its weights differ, or it reads a per-configuration sender."""
        c, r = m.shape[:2]
        differs = (m != m[:1]).reshape(c, r, -1).any(-1).any(0)
        v = (self.kind[: m.shape[2]] == CONFIG).to(m.device)
        if bool(v.any()):
            differs |= (m[:, :, v] != 0).reshape(c, r, -1).any(-1).any(0)
        return differs.cpu()

    def mix(self, w: Tensor, base: Tensor, pick: Tensor | None = None) -> Tensor:
        """Receiver inputs base + Σ_s w[:, :, s]·delta_s -> [c' r N' d] for weights w [c' r hi]
        (c' = 1: configuration 0 only, or c), base [N d]. pick [n] (optional; required once
        senders are kept at positions only): the flattened positions to compute (N' = n).
        Positional weights w [c' r hi span] mix each token with its span's weights."""
        if w.dim() == 4:
            return mix_by_span(self, w, base, pick)
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

        x = sel(base)[None].to(self.acc)  # [1 N' d], mixed in at least fp32
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
            for cols_w, g in read_columns(w, cols_pre, 0, lambda i: sel(self.pre[i]), torch.ones(k, dtype=torch.bool)):
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

                for wk, g in read_columns(w, idx, self.s0, fetch, valid):
                    if want == SHARED:
                        parts.append((wk.reshape(c1 * r, -1) @ g.reshape(-1, nd)).view(c1, r, nd))
                    else:
                        parts.append(torch.bmm(wk, g.reshape(c1, -1, nd)))
        for i, p in enumerate(parts):
            x = x + p if i == 0 else x.add_(p)  # the first sum is a new tensor: add the rest in place
        return x.view(c1, r, -1, base.shape[-1]).to(base.dtype)

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


def read_columns(w: Tensor, idx: Tensor, offset: int, fetch, valid: Tensor) -> list[tuple[Tensor, Tensor]]:
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
