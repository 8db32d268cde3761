"""The metric, ranking and selection each method's authors (and MIB) use, and the bad combinations.

A run that does not name a metric or a ranking gets the method's own (`RECOMMENDED`):

| method | metric | ranking | selection | source |
|---|---|---|---|---|
| eap | the task's own (logit difference for IOI) | abs | top | MIB (run_attribution: logit_diff; top-n by \\|score\\|, CMD) |
| eap-ig | the task's own | signed (abs under kl) | top | Hanna et al. 2024 / MIB (logit_diff; CPR ranks by the signed score) |
| acdc | the task's default (kl; l2 for tracr) | — | its own walk | Conmy et al. 2023 (KL divergence) |
| edge-pruning | the task's default (kl; l2 for tracr) | — | its own (top by log α) | Bhaskar et al. 2024 (KL) |
| others | the task's default | signed | top | — |

"the task's own" is the metric its paper reports (`TaskSpec.natural_metric`; a task file's header
metric). The rankings are the ones measured best on SmolLM2 IOI at 1% of the edges
(docs/reliability.md §5): EAP-IG's signed scores under logit difference (MIB's CPR ranking, which
maximizes faithfulness) gave 0.63 held-out, |score| 0.38; EAP's first-order scores at the full
model are poor either way and |score| is the better of the two. Under KL (at its minimum on the
full model, so the sign of a first-order score says little) the ranking is |score| for both
("auto": `ranking_for(method, metric)`).

`bad_combination(method, metric, ranking)` names a known bad choice (one line, the run logs it as
a warning): KL (or another metric minimal at the full model) with signed ranking of first-order
scores, and EAP with KL (its gradient at the full model is ~0).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FIRST_ORDER", "RECOMMENDED", "Recommended", "bad_combination", "ranking_for", "recommended",
           "resolve_metric"]

NATURAL = "natural"  # the task's own metric


@dataclass(frozen=True)
class Recommended:
    """What a method uses when the run does not say: metric ("natural": the task's own metric),
    ranking of its scores ("abs" or "signed"), and the source of the choice."""

    metric: str | None = None  # None: the task's default metric
    ranking: str = "signed"
    source: str = ""


RECOMMENDED: dict[str, Recommended] = {
    "eap": Recommended(NATURAL, "abs", "MIB: logit difference (the task's metric), top-n by |score|"),
    "eap-ig": Recommended(NATURAL, "auto", "Hanna et al. 2024 / MIB: the task's metric, top-n by signed score "
                          "(CPR); |score| under kl"),
    "acdc": Recommended(None, "signed", "Conmy et al. 2023: KL divergence (the task's default metric)"),
    "edge-pruning": Recommended(None, "signed", "Bhaskar et al. 2024: KL divergence to the full model "
                                "(the task's default metric)"),
}

#: methods whose scores are first-order (gradient) estimates of the metric change
FIRST_ORDER = ("eap", "eap-ig")
#: metrics at their minimum on the full model (so first-order effects there are ~0 or unsigned)
MINIMAL_AT_FULL = ("kl",)


def recommended(method: str) -> Recommended:
    """The method's recommended choices (`Recommended()` for a method without any)."""
    return RECOMMENDED.get(method, Recommended())


def ranking_for(method: str, metric: str) -> str:
    """The method's recommended ranking under `metric` ("auto": |score| under a metric at its
    minimum on the full model, else signed)."""
    rank = recommended(method).ranking
    if rank == "auto":
        return "abs" if metric in MINIMAL_AT_FULL else "signed"
    return rank


def resolve_metric(method: str, given: str | None, natural: str | None, task_default: str | None) -> tuple[str, bool]:
    """(metric, from_default): the given metric, else the method's recommended one ("natural":
    the task's own metric), else the task's default, else kl."""
    if given is not None:
        return given, False
    rec = recommended(method).metric
    if rec == NATURAL:
        rec = natural or task_default
    return (rec or task_default or "kl"), True


def bad_combination(method: str, metric: str, ranking: str | None) -> str | None:
    """A one-line warning for a known bad choice of metric and ranking, else None."""
    if method not in FIRST_ORDER or metric not in MINIMAL_AT_FULL:
        return None
    if method == "eap":
        return (f"eap with --metric {metric}: the gradient of {metric} at the full model is ~0, so the scores "
                "are noise; use the task's metric (e.g. --metric logit-diff) or eap-ig")
    if ranking == "signed":
        return (f"{method} with --metric {metric} and --ranking signed: {metric} is at its minimum on the full "
                "model, so the sign of a first-order score says little; use --ranking abs or --metric logit-diff")
    return None
