"""Choosing a circuit from per-edge scores (bigger = more important)."""

from __future__ import annotations

import torch
from torch import Tensor

from subcircuit.errors import UserError


def select_top(scores: Tensor, n: int) -> Tensor:
    """[n_edges] bool: the n highest-scoring edges (ties broken by position, deterministically)."""
    if not 1 <= n <= scores.numel():
        raise UserError(f"--edges {n} is invalid; expected 1..{scores.numel()}")
    order = torch.argsort(scores.float(), descending=True, stable=True)
    keep = torch.zeros(scores.numel(), dtype=torch.bool)
    keep[order[:n]] = True
    return keep


def select_threshold(scores: Tensor, threshold: float) -> Tensor:
    """[n_edges] bool: edges whose score is at least `threshold`."""
    return scores >= threshold
