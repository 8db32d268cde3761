"""What an ACDC run produces, shared as plain data by the fast path and the reference: the trials
(one per tried edge) and the state they lead to. No algorithm lives here."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass(frozen=True)
class Trial:
    """One tried edge: receiver and sender positions, the loss with it removed, the decision."""

    receiver: int
    sender: int
    loss: float
    removed: bool


@dataclass
class ACDCState:
    """Everything an ACDC run has established; `trace` alone determines the rest.

    Cost counters: `forward_configs` mask configurations run; of the fast path's speculative
    batches, `n_budget_cuts` were cut short by the memory budget and `n_shorter_k` ran fewer
    configurations than the path laid out (the cost model's choice of K)."""

    mask: Tensor  # [receiver sender] current graph
    scores: Tensor  # [receiver sender] measured change per tried edge (0 if untried)
    cur: float  # loss of the current graph
    trace: list[Trial] = field(default_factory=list)
    skipped: int = 0
    forward_configs: int = 0
    n_budget_cuts: int = 0
    n_shorter_k: int = 0
