"""ACDC on an attribution-chosen candidate set (`--method acdc --candidates K`).

Exact ACDC tries every edge of the graph, which is out of reach on large models. Here EAP-IG
scores every edge in a few passes, every edge outside the top K is ablated up front, and exact
ACDC runs from that graph, trying only the K candidates (in its usual order, with its usual
decisions against the current graph). The edges outside the candidates stay removed and keep
score 0 in the result (untried). Candidates are the top K by the signed EAP-IG score (the
estimated loss increase on removal), or by its absolute value when ACDC compares |Δ| with τ:
an edge that ACDC would remove anyway (negative estimate) is not worth a trial.

The EAP-IG scores of a session are shared through the run's cache under
`("scores", "eap-ig", EAPIGOptions(ig_steps, ig))` (flat [n_edges]): a sweep computes them once,
and scores computed elsewhere (an `eap-ig` run's circuit.json) can be put there beforehand.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor

from subcircuit.errors import UserError
from subcircuit.methods.acdc.fast import acdc_fast
from subcircuit.methods.acdc.state import ACDCState
from subcircuit.methods.attribution import EAPIGOptions, eap_ig_scores
from subcircuit.methods.base import Problem, ProgressFn, no_progress
from subcircuit.methods.selection import select_top

log = logging.getLogger(__name__)


def scores_key(ig_steps: int, ig: str) -> tuple[str, str, EAPIGOptions]:
    """The cache key of a session's EAP-IG scores."""
    return ("scores", "eap-ig", EAPIGOptions(ig_steps, ig))  # type: ignore[arg-type]


def candidate_mask(problem: Problem, k: int, abs_value: bool = False, ig_steps: int = 5, ig: str = "inputs",
                   progress: ProgressFn = no_progress, cache: dict[Any, Any] | None = None) -> tuple[Tensor, Tensor]:
    """(mask [receiver sender] of the top-k edges by EAP-IG, the EAP-IG scores [n_edges]); the
    scores come from `cache` when it holds them (else they are computed and stored there)."""
    graph = problem.graph
    if not 1 <= k <= graph.n_edges:
        raise UserError(f"--candidates {k} is invalid; expected 1..{graph.n_edges}")
    key = scores_key(ig_steps, ig)
    scores = None if cache is None else cache.get(key)
    if scores is None:
        scores = graph.to_flat(eap_ig_scores(problem, ig_steps, ig, progress=progress))  # type: ignore[arg-type]
        if cache is not None:
            cache[key] = scores
    elif tuple(scores.shape) != (graph.n_edges,):
        raise UserError(f"candidate scores have shape {tuple(scores.shape)}; expected ({graph.n_edges},)")
    keep = select_top(scores.abs() if abs_value else scores, k)
    return graph.from_flat(keep.float()), scores


def acdc_on_candidates(problem: Problem, threshold: float, k: int, abs_value: bool = False, ig_steps: int = 5,
                       progress: ProgressFn = no_progress, **acdc_options) -> tuple[ACDCState, Tensor]:
    """(ACDC state, candidate mask): ACDC at τ restricted to the top-k EAP-IG edges."""
    mask, _ = candidate_mask(problem, k, abs_value, ig_steps, progress=progress)
    state = acdc_fast(problem, threshold, abs_value, progress=progress, initial_mask=mask.to(torch.float32),
                      **acdc_options)
    return state, mask
