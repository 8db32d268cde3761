"""The ACDC paper's baselines and the floors: node-level methods turned into edge scores.

- `node-patching`: the exact effect of ablating each sender node (head, MLP, the embeddings):
  every outgoing edge of the sender masked to 0 at once, loss(ablated) − loss(full), all
  senders batched as mask configurations. An edge's score is its *sender's* effect.
- `hisp` — Head Importance Score Pruning (Michel et al. 2019), as the ACDC paper ran it: a
  node gate ξ_s multiplies the sender's contribution to every receiver (here ξ_s is the mask of
  all its outgoing edges, so ξ_s = 0 is the ablation); importance I_s = mean_x |∂L_x/∂ξ_s| at
  ξ = 1, the absolute per-example gradient averaged over the dataset (one forward and backward
  pass per example).
- `sp` — Subnetwork Probing (Cao et al. 2021) simplified: hard-concrete gates on the sender
  nodes trained with Adam on `loss + λ·ρ` (ρ the expected fraction of gates open) with a fixed
  λ (default 1.0; the ACDC paper swept λ to trace a ROC curve — here sweep `lam` yourself), a
  fixed number of steps and a seeded noise generator. Node score = the learned log α.
- `random`: uniform scores from a seeded generator, the floor every method must beat.

Node scores become edge scores as in the ACDC paper's edge-level ROC for node methods (an edge
is in the circuit when both its endpoints are): score(s→r) = min(score(s), score(comp(r))),
where comp(r) is the head or MLP the receiver belongs to (for a grouped key/value receiver the
best head of its group). `input` and `logits` are always present: they count as +∞, so
min picks the other endpoint (an `input→logits` edge gets the largest node score).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from subcircuit.graph import Graph
from subcircuit.methods.attribution import mask_gradient
from subcircuit.methods.base import (
    Context,
    MethodResult,
    Options,
    Problem,
    ProgressFn,
    no_progress,
    option,
    register_method,
)
from subcircuit.methods.selection import receiver_components
from subcircuit.methods.training import CHECKPOINT_FILE, GateTrainingOptions, checkpoint_of, train_gates
from subcircuit.patching import Ablation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodePatchingOptions(Options):
    """Node patching has no options."""


@dataclass(frozen=True)
class HISPOptions(Options):
    """HISP has no options."""


@dataclass(frozen=True)
class RandomOptions(Options):
    """Random scores have no options (the generator is seeded with the run's --seed)."""


@dataclass(frozen=True)
class SPOptions(GateTrainingOptions):
    """Subnetwork Probing's options (the noise is seeded with the run's --seed)."""

    lam: float = option(1.0, "SP: weight λ of the expected fraction of open node gates.")


def node_to_edge_scores(graph: Graph, node: Tensor, rule: str = "min") -> Tensor:
    """node [sender] scores -> [n_edges] edge scores (see the module docstring).

    rule `min`: min of both endpoints (`input` and `logits` count as +∞); `sender`: the sender's."""
    node = node.float().cpu()
    if rule == "sender":
        return graph.to_flat(node[None, :].expand(*graph.shape))
    big = float(node.max()) if node.numel() else 0.0
    s = node.clone()
    s[0] = big  # input is always present
    recv = torch.tensor([big if not comp else float(s[comp].max()) for comp in receiver_components(graph)])
    return graph.to_flat(torch.minimum(s[None, :], recv[:, None]))


def sender_expand(graph: Graph, device) -> Callable[[Tensor], Tensor]:
    """z [sender−1] gates of every sender but `input` -> masks [receiver sender]."""
    exists = graph.exists.to(device)

    def expand(z: Tensor) -> Tensor:
        col = torch.cat([torch.ones(1, device=device, dtype=z.dtype), z])
        return col[None, :] * exists

    return expand


def node_effects(problem: Problem, chunk: int = 16, progress: ProgressFn = no_progress) -> Tensor:
    """[sender] loss(every edge out of s ablated) − loss(full), `chunk` senders per batch."""
    graph = problem.graph
    full = graph.full_mask().to(problem.model.device)
    n = len(graph.senders)
    effects = torch.zeros(n)
    with torch.no_grad():
        base = float(problem.loss(full)[0])
        for i in range(0, n, chunk):
            idx = torch.arange(i, min(n, i + chunk))
            masks = full.repeat(len(idx), 1, 1)
            masks[torch.arange(len(idx)), :, idx] = 0
            effects[idx] = problem.loss(masks).cpu() - base
            progress(int(idx[-1]) + 1, n, "node-patching senders")
    return effects


@register_method("node-patching", "Exact effect of ablating each sender node; edges scored by their sender",
                 NodePatchingOptions)
def node_patching(problem: Problem, options: NodePatchingOptions, ctx: Context) -> MethodResult:
    """node effect [sender] = loss(every edge out of s ablated) − loss(full)."""
    graph = problem.graph
    effects = node_effects(problem, 16, ctx.progress)
    info = {"node_scores": dict(zip([s.name for s in graph.senders], effects.tolist(), strict=True))}
    return MethodResult(node_to_edge_scores(graph, effects, "sender"), None, {"edge_rule": "sender"}, info)


def _example(problem: Problem, i: int) -> Problem:
    """The problem restricted to example i (batch of 1)."""
    t = problem.task
    task = t.rows([i])
    a = problem.ablation
    abl = Ablation(a.kind, a.outputs[:, i : i + 1], a.base[:, i : i + 1])
    return dataclasses.replace(problem, task=task, ablation=abl, base_logits=problem.base_logits[i : i + 1])


@register_method("hisp", "Head Importance Score Pruning (Michel et al. 2019): mean |∂L/∂(node gate)|",
                 HISPOptions, uses_gradients=True)
def hisp(problem: Problem, options: HISPOptions, ctx: Context) -> MethodResult:
    """I_s = mean over examples of |Σ_r ∂L_x/∂m[r,s]| at m = 1; edges by min of endpoints."""
    graph = problem.graph
    full = graph.full_mask()[None]
    n = problem.task.n
    imp = torch.zeros(len(graph.senders))
    for i in range(n):
        g = mask_gradient(_example(problem, i), full)[0]  # [receiver sender]
        imp += g.sum(0).abs().cpu()
        ctx.progress(i + 1, n, "hisp examples")
    imp /= n
    info = {"node_scores": dict(zip([s.name for s in graph.senders], imp.tolist(), strict=True))}
    return MethodResult(node_to_edge_scores(graph, imp), None, {"edge_rule": "min"}, info)


@register_method("sp", "Subnetwork Probing (Cao et al. 2021), simplified: hard-concrete node gates, fixed λ",
                 SPOptions, resumable=True, uses_gradients=True, checkpoint_files=(CHECKPOINT_FILE,))
def sp(problem: Problem, options: SPOptions, ctx: Context) -> MethodResult:
    """Node gates trained on loss + λ·(expected fraction open); node score = log α. With
    `ctx.folder`, the training state is saved every few steps (and resumed with `ctx.resume`)."""
    graph = problem.graph
    expand = sender_expand(graph, problem.model.device)
    lam, steps, seed = options.lam, options.train_steps, ctx.seed
    log_alpha, hist = train_gates(problem, expand, len(graph.senders) - 1, 1.0, steps, options.lr, 0.0,
                                  options.init, seed, ctx.progress, "sp steps", penalty=lam,
                                  checkpoint=checkpoint_of(ctx))
    node = torch.cat([log_alpha.new_zeros(1), log_alpha]).cpu()
    info = {"final_loss": hist[-1] if hist else None,
            "node_scores": dict(zip([s.name for s in graph.senders][1:], log_alpha.tolist(), strict=True))}
    return MethodResult(node_to_edge_scores(graph, node), None, {"lam": lam, "steps": steps, "seed": seed,
                                                                 "edge_rule": "min"}, info)


@register_method("random", "Uniform random scores from the seed: the floor", RandomOptions)
def random_scores(problem: Problem, options: RandomOptions, ctx: Context) -> MethodResult:
    gen = torch.Generator().manual_seed(ctx.seed)
    return MethodResult(torch.rand(problem.graph.n_edges, generator=gen), None, {"seed": ctx.seed}, {})
