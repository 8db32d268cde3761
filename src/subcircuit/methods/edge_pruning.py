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

Defaults (CPU-feasible): 200 steps, lr 0.1 for log α, 1.0 for the multipliers, init log α = 3
(every gate ≈ 1). One step is one patched forward and backward pass on the whole batch.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import Tensor

from subcircuit.checkpoint import (
    TrainingCheckpoint,
    check_header,
    load_state,
    optimizer_tensors,
    restore_optimizer,
    save_state,
)
from subcircuit.errors import UserError
from subcircuit.methods.base import MethodResult, Problem, ProgressFn, _no_progress, register_method
from subcircuit.selection import select_top

log = logging.getLogger(__name__)
BETA, LOW, HIGH = 2 / 3, -0.1, 1.1


def hard_concrete(log_alpha: Tensor, gen: torch.Generator | None, train: bool = True) -> Tensor:
    """Gates z in [0, 1] of log_alpha's shape (sampled when `train`, else the deterministic
    median gate σ(log α)·(r − l) + l clamped)."""
    if train:
        u = torch.rand(log_alpha.shape, generator=gen, device=log_alpha.device).clamp(1e-6, 1 - 1e-6)
        s = torch.sigmoid((u.log() - (-u).log1p() + log_alpha) / BETA)
    else:
        s = torch.sigmoid(log_alpha)
    return (s * (HIGH - LOW) + LOW).clamp(0, 1)


def expected_density(log_alpha: Tensor) -> Tensor:
    """mean P(z ≠ 0) (the expected L0 norm over the number of gates)."""
    return torch.sigmoid(log_alpha - BETA * math.log(-LOW / HIGH)).mean()


def target_edges(n_total: int, edges: int | None, sparsity: float | None) -> int:
    """The requested circuit size from `--edges N` or `--sparsity S` (fraction removed)."""
    if edges is not None and sparsity is not None:
        raise UserError("give either --edges or --sparsity, not both")
    if sparsity is not None:
        if not 0 <= sparsity < 1:
            raise UserError(f"--sparsity {sparsity} is invalid; expected 0 <= S < 1")
        return max(1, round((1 - sparsity) * n_total))
    n = edges if edges is not None else max(1, n_total // 100)
    if not 1 <= n <= n_total:
        raise UserError(f"--edges {n} is invalid; expected 1..{n_total}")
    return n


def train_gates(problem: Problem, expand, n_gates: int, target_density: float, steps: int, lr: float,
                lr_lambda: float, init: float, seed: int, progress: ProgressFn, what: str,
                penalty: float | None = None,
                checkpoint: TrainingCheckpoint | None = None) -> tuple[Tensor, list[float]]:
    """Train hard-concrete gates: `expand(z [n_gates]) -> masks [receiver sender]`.

    With `penalty` None: the Lagrangian towards `target_density` (ramped over the first half).
    With a number: a fixed L1-of-L0 penalty `penalty · ρ` instead (Subnetwork Probing).
    With `checkpoint`: the whole state (gates, multipliers, both optimizers, the noise generator,
    step, history) is saved atomically every `checkpoint.every` steps and at the end, and with
    `checkpoint.resume` training continues from the saved step: the result is identical to an
    uninterrupted run (`subcircuit.checkpoint`).
    Returns (log α [n_gates], the loss history)."""
    gen = torch.Generator(device=problem.model.device).manual_seed(seed)
    dev = problem.model.device
    log_alpha = torch.full((n_gates,), float(init), device=dev, requires_grad=True)
    lam = torch.zeros(2, device=dev, requires_grad=True)
    opt = torch.optim.Adam([log_alpha], lr=lr)
    opt_lam = torch.optim.Adam([lam], lr=lr_lambda, maximize=True)
    history: list[float] = []
    first = 0
    header = None
    if checkpoint is not None:
        header = {**checkpoint.header, "train": {"what": what, "n_gates": n_gates, "target_density": target_density,
                                                 "steps": steps, "lr": lr, "lr_lambda": lr_lambda, "init": init,
                                                 "seed": seed, "penalty": penalty}}
        if checkpoint.resume and checkpoint.path.exists():
            first, history = _restore(checkpoint.path, header, log_alpha, lam, opt, opt_lam, gen)
            log.info("resuming %s from step %d of %d (%s)", what, first, steps, checkpoint.path)
    with torch.enable_grad():
        for step in range(first, steps):
            z = hard_concrete(log_alpha, gen)
            loss = problem.loss_with_grad(expand(z)[None])[0]
            if not bool(torch.isfinite(loss)):
                raise UserError(f"{what}: the metric is {float(loss.detach())} at step {step + 1}; the patched model's "
                                "output is not finite (try a smaller learning rate or another metric)")
            rho = expected_density(log_alpha)
            if penalty is None:
                t = 1 - (1 - target_density) * min(1.0, step / max(1, steps // 2))
                total = loss + lam[0] * (rho - t) + lam[1] * (rho - t) ** 2
            else:
                total = loss + penalty * rho
            opt.zero_grad()
            opt_lam.zero_grad()
            total.backward()
            opt.step()
            if penalty is None:
                opt_lam.step()
            history.append(float(loss.detach()))
            if checkpoint is not None and ((step + 1) % max(1, checkpoint.every) == 0 or step + 1 == steps):
                _save(checkpoint.path, header, step + 1, history, log_alpha, lam, opt, opt_lam, gen)
            progress(step + 1, steps, what)
    return log_alpha.detach(), history


def _save(path, header, step: int, history: list[float], log_alpha: Tensor, lam: Tensor, opt, opt_lam,
          gen: torch.Generator) -> None:
    tensors = {"log_alpha": log_alpha, "lam": lam, "generator": gen.get_state(),
               **optimizer_tensors(opt, "opt"), **optimizer_tensors(opt_lam, "opt_lam")}
    save_state(path, tensors, {"header": header, "step": step, "history": history})


def _restore(path, header, log_alpha: Tensor, lam: Tensor, opt, opt_lam, gen: torch.Generator) -> tuple[int, list[float]]:
    tensors, meta = load_state(path)
    check_header(path, meta.get("header", {}), header)
    try:
        with torch.no_grad():
            log_alpha.copy_(tensors["log_alpha"])
            lam.copy_(tensors["lam"])
        restore_optimizer(opt, tensors, "opt")
        restore_optimizer(opt_lam, tensors, "opt_lam")
        gen.set_state(tensors["generator"])
        return int(meta["step"]), [float(x) for x in meta["history"]]
    except (KeyError, ValueError, RuntimeError, TypeError) as e:
        raise UserError(f"cannot resume: checkpoint {path} is damaged ({type(e).__name__}: {e})") from e


@register_method("edge-pruning", "Edge Pruning: hard-concrete edge masks trained to a target sparsity "
                 "(Bhaskar et al. 2024)", selects_circuit=True)
def edge_pruning(problem: Problem, edges: int | None = None, sparsity: float | None = None, steps: int = 200,
                 lr: float = 0.1, lr_lambda: float = 1.0, init: float = 3.0, seed: int = 0,
                 progress: ProgressFn = _no_progress, checkpoint: TrainingCheckpoint | None = None) -> MethodResult:
    """Learned edge masks; the circuit is the top-N edges by learned log α (exactly N edges).
    `checkpoint`: save the training state every N steps / resume from it (see `train_gates`)."""
    graph = problem.graph
    n = target_edges(graph.n_edges, edges, sparsity)
    exists = graph.exists.to(problem.model.device)

    def expand(z: Tensor) -> Tensor:
        return graph.from_flat(z) * exists

    log_alpha, hist = train_gates(problem, expand, graph.n_edges, n / graph.n_edges, steps, lr, lr_lambda, init,
                                  seed, progress, "edge-pruning steps", checkpoint=checkpoint)
    scores = log_alpha.cpu()
    keep = select_top(scores, n)
    info = {"final_loss": hist[-1] if hist else None, "expected_density": float(expected_density(log_alpha))}
    params = {"edges": n, "sparsity": 1 - n / graph.n_edges, "steps": steps, "lr": lr, "seed": seed}
    return MethodResult(scores, keep, params, info)
