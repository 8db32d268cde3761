"""ACDC on an attribution-chosen candidate set (`--method acdc --candidates K`).

Exact ACDC tries every edge of the graph, which is out of reach on large models. Here EAP-IG
scores every edge in a few passes, every edge outside the top K is ablated up front, and exact
ACDC runs from that graph, trying only the K candidates (in its usual order, with its usual
decisions against the current graph). The edges outside the candidates stay removed and keep
score 0 in the result (untried). Candidates are the top K by the signed EAP-IG score (the
estimated loss increase on removal), or by its absolute value when ACDC compares |Δ| with τ:
an edge that ACDC would remove anyway (negative estimate) is not worth a trial.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor

from subcircuit.errors import UserError
from subcircuit.methods.acdc import ACDCState, acdc_fast
from subcircuit.methods.attribution import eap_ig_scores
from subcircuit.methods.base import Problem, ProgressFn, _no_progress
from subcircuit.selection import select_top

log = logging.getLogger(__name__)


def candidate_mask(problem: Problem, k: int, abs_value: bool = False, steps: int = 5, ig: str = "inputs",
                   progress: ProgressFn = _no_progress) -> tuple[Tensor, Tensor]:
    """(mask [receiver sender] of the top-k edges by EAP-IG, the EAP-IG scores [n_edges])."""
    graph = problem.graph
    if not 1 <= k <= graph.n_edges:
        raise UserError(f"--candidates {k} is invalid; expected 1..{graph.n_edges}")
    scores = graph.to_flat(eap_ig_scores(problem, steps, ig, progress=progress))  # type: ignore[arg-type]
    keep = select_top(scores.abs() if abs_value else scores, k)
    return graph.from_flat(keep.float()), scores


def acdc_on_candidates(problem: Problem, threshold: float, k: int, abs_value: bool = False, steps: int = 5,
                       progress: ProgressFn = _no_progress, **acdc_options) -> tuple[ACDCState, Tensor]:
    """(ACDC state, candidate mask): ACDC at τ restricted to the top-k EAP-IG edges."""
    mask, _ = candidate_mask(problem, k, abs_value, steps, progress=progress)
    state = acdc_fast(problem, threshold, abs_value, progress=progress, initial_mask=mask.to(torch.float32),
                      **acdc_options)
    return state, mask
