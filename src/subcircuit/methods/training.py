"""Training hard-concrete gates (Edge Pruning, Subnetwork Probing), with checkpoints that resume
to exactly the result of an uninterrupted run.

A gate z = clamp(σ((log u − log(1 − u) + log α) / β)·(r − l) + l, 0, 1) with u ~ U(0, 1), β = 2/3,
(l, r) = (−0.1, 1.1) (Louizos et al. 2018) is exactly 0 or 1 with positive probability and
differentiable in its location log α. `train_gates` learns log α with Adam on the metric loss of
the masks the gates give, plus either a Lagrangian towards a target density (Edge Pruning) or a
fixed penalty on the expected density (Subnetwork Probing).

Checkpoints: the complete state of a training run in one safetensors file
(`ctx.folder / "training-checkpoint.safetensors"`, every `CHECKPOINT_EVERY` steps and at the end),
written atomically, holding everything the next step depends on:

- the learned tensors (log α, the Lagrange multipliers),
- each optimizer's state (Adam's step counts and moment estimates),
- the noise generator's state (`torch.Generator.get_state()`, a uint8 tensor),
- the step reached and the loss history,
- a header: the run's options (`ctx.header`) and the training's own (`"train"`). Resuming with
  different options is an error naming the options that differ, never a silent mix of two runs.

Tensors go to safetensors (no pickles); the step, history and header go to the file's string
metadata as JSON (`subcircuit.files`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from subcircuit.errors import UserError
from subcircuit.files import check_header, load_state, save_state
from subcircuit.methods.base import Context, Options, Problem, ProgressFn, at_least, option

log = logging.getLogger(__name__)
BETA, LOW, HIGH = 2 / 3, -0.1, 1.1
CHECKPOINT_FILE = "training-checkpoint.safetensors"
CHECKPOINT_EVERY = 10  # gate-training steps between checkpoints


@dataclass(frozen=True)
class GateTrainingOptions(Options):
    """The options every gate-training method shares (Edge Pruning, SP): one field each, here."""

    train_steps: int = option(200, "Optimisation steps (one patched forward and backward pass each).")
    lr: float = option(0.1, "Adam learning rate of the gates' log α.")
    init: float = option(3.0, "Initial log α of every gate (3: every gate ≈ 1).")

    def check(self) -> None:
        at_least("--train-steps", self.train_steps, 1)


@dataclass(frozen=True)
class TrainingCheckpoint:
    """Where and how often a training run saves its state, and whether it resumes from it.

    `header` identifies the run (its options); a saved checkpoint whose header differs is refused."""

    path: Path
    header: dict[str, Any] = field(default_factory=dict)
    every: int = 10
    resume: bool = False


def optimizer_tensors(opt: torch.optim.Optimizer, prefix: str) -> dict[str, Tensor]:
    """An optimizer's per-parameter state as flat named tensors (`prefix.<param>.<key>`)."""
    out = {}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            out[f"{prefix}.{i}.{k}"] = v if isinstance(v, Tensor) else torch.tensor(v)
    return out


def restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, Tensor], prefix: str) -> None:
    """Load the state saved by `optimizer_tensors` into `opt` (built with the same arguments)."""
    sd = opt.state_dict()
    state: dict[int, dict[str, Tensor]] = {}
    for name, v in tensors.items():
        if name.startswith(prefix + "."):
            i, k = name[len(prefix) + 1:].split(".", 1)
            state.setdefault(int(i), {})[k] = v
    sd["state"] = state
    opt.load_state_dict(sd)


def checkpoint_of(ctx: Context) -> TrainingCheckpoint | None:
    """The training checkpoint of a run (None when the run keeps no folder)."""
    if ctx.folder is None:
        return None
    return TrainingCheckpoint(Path(ctx.folder) / CHECKPOINT_FILE, dict(ctx.header), CHECKPOINT_EVERY, ctx.resume)


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
    uninterrupted run (see the module docstring).
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


