"""Edge Pruning (Bhaskar et al. 2024): learn edge masks that keep the metric at a target sparsity.

Each edge e has a hard-concrete gate (Louizos et al. 2018) with a learned location log α_e:

    u ~ U(0, 1),  s = σ((log u − log(1 − u) + log α_e) / β),  z_e = clamp(s·(r − l) + l, 0, 1)

with β = 2/3, (l, r) = (−0.1, 1.1), so z_e is exactly 0 or 1 with positive probability and
differentiable in log α_e. The masks z (1 = keep, 0 = ablate) drive the patching primitive;
the objective is

    L(z) + λ₁·(ρ − t) + λ₂·(ρ − t)²,   ρ = mean_e P(z_e ≠ 0) = mean_e σ(log α_e − β·log(−l/r))

where L is the problem's metric loss (KL to the full model by default), t the target density
(ramped linearly from 1 to the requested density over the first half of training) and λ₁, λ₂
Lagrange multipliers trained by gradient *ascent* (CoFi/Edge Pruning's constrained objective),
log α by Adam. After training the circuit is the top-N edges by log α: exactly N edges, as
requested (`--edges N`, or `--sparsity S` = fraction of edges removed). Scores = log α.
Deterministic given the seed (the noise comes from a seeded generator).

The gates, their training and the training checkpoints are in `subcircuit.methods.training`.

Defaults (CPU-feasible): 200 steps, lr 0.1 for log α, 1.0 for the multipliers, init log α = 3
(every gate ≈ 1). One step is one patched forward and backward pass on the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from subcircuit.errors import UserError
from subcircuit.methods.base import Context, MethodResult, Problem, at_least, option, register_method
from subcircuit.methods.selection import select_top, target_edges
from subcircuit.methods.training import (
    CHECKPOINT_FILE,
    GateTrainingOptions,
    checkpoint_of,
    expected_density,
    train_gates,
)

__all__ = ["EdgePruningOptions", "edge_pruning", "target_edges"]


@dataclass(frozen=True)
class EdgePruningOptions(GateTrainingOptions):
    """Edge Pruning's options (see the module docstring)."""

    edges: int | None = option(None, "Circuit size in edges (default: 1% of the graph's edges).")
    sparsity: float | None = option(None, "Fraction of edges removed (instead of --edges).")
    lr_lambda: float = option(1.0, "Learning rate of the Lagrange multipliers.")

    def check(self) -> None:
        super().check()
        at_least("--edges", self.edges, 1)
        if self.edges is not None and self.sparsity is not None:
            raise UserError("give either --edges or --sparsity, not both")
        if self.sparsity is not None and not 0 <= self.sparsity < 1:
            raise UserError(f"--sparsity {self.sparsity} is invalid; expected 0 <= S < 1")


@register_method("edge-pruning", "Edge Pruning: hard-concrete edge masks trained to a target sparsity "
                 "(Bhaskar et al. 2024)", EdgePruningOptions, selects_circuit=True, resumable=True,
                 uses_gradients=True, checkpoint_files=(CHECKPOINT_FILE,))
def edge_pruning(problem: Problem, options: EdgePruningOptions, ctx: Context) -> MethodResult:
    """Learned edge masks; the circuit is the top-N edges by learned log α (exactly N edges).
    With `ctx.folder`, the training state is saved every few steps (and resumed with `ctx.resume`)."""
    graph = problem.graph
    n = target_edges(graph.n_edges, options.edges, options.sparsity)
    exists = graph.exists.to(problem.model.device)

    def expand(z: Tensor) -> Tensor:
        return graph.from_flat(z) * exists

    steps, seed = options.train_steps, ctx.seed
    log_alpha, hist = train_gates(problem, expand, graph.n_edges, n / graph.n_edges, steps, options.lr,
                                  options.lr_lambda, options.init, seed, ctx.progress, "edge-pruning steps",
                                  checkpoint=checkpoint_of(ctx))
    scores = log_alpha.cpu()
    keep = select_top(scores, n)
    info = {"final_loss": hist[-1] if hist else None, "expected_density": float(expected_density(log_alpha))}
    params = {"edges": n, "sparsity": 1 - n / graph.n_edges, "steps": steps, "lr": options.lr, "seed": seed}
    return MethodResult(scores, keep, params, info)
