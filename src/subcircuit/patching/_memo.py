"""Reuse of component outputs across patched runs without autograd (ACDC's consecutive batches)."""

from __future__ import annotations

import torch
from torch import Tensor


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
        nz = rows.ne(0).any(0)
        cols = (nz.any(-1) if nz.dim() > 1 else nz).nonzero().flatten().cpu()  # positional rows [k hi span]
        self.entries[key] = (rows.clone(), cols, ver[cols].clone(), delta.clone(), version)


