"""Head-role definitions the drawing needs: the role names, their cut-offs and a head's label.

These are plain data (no model): they live here, at the drawing layer, so that `report` can draw
roles without importing `evaluation`, and `Circuit` (one layer up) can show itself in Jupyter.
How the scores are measured, and why these cut-offs, is `subcircuit.evaluation.roles` (which
re-exports these names) and docs/report.md.
"""

from __future__ import annotations

from dataclasses import dataclass

#: role names, most specific first (the tie-break order)
ROLES: tuple[str, ...] = ("induction", "duplicate-token", "previous-token", "answer-attention", "copying")
ATTENTION_ROLES: tuple[str, ...] = ROLES[:4]
#: a role labels a head only when its score reaches this cut-off
CUTOFFS: dict[str, float] = {
    "previous-token": 0.4,
    "induction": 0.4,
    "duplicate-token": 0.4,
    "answer-attention": 0.4,
    "copying": 0.5,
}
TIE = 0.02


@dataclass(frozen=True)
class HeadRoles:
    """Role scores of one head (None: not measurable on this model/task) and its label."""

    head: str
    scores: dict[str, float | None]

    @property
    def label(self) -> str | None:
        return label_of(self.scores)


def label_of(scores: dict[str, float | None]) -> str | None:
    """The label for role scores (see `subcircuit.evaluation.roles`); None when no role passes."""
    passing = [(r, s) for r in ATTENTION_ROLES if (s := scores.get(r)) is not None and s >= CUTOFFS[r]]
    copy = scores.get("copying")
    copies = copy is not None and copy >= CUTOFFS["copying"]
    if not passing:
        return "copying" if copies else None
    best = max(s for _, s in passing)
    role = next(r for r, s in passing if s >= best - TIE)  # ROLES order among near-ties
    return f"{role} + copying" if copies else role
