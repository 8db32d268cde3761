"""What every discovery method receives and returns, and the registry that finds them by name.

A method is a small function `fn(problem: Problem, options) -> MethodResult`. `Problem` bundles
the model, the graph, the task, the metric and the ablation, with the one patching primitive
ready to run (`problem.patcher`) and `problem.loss(masks)` evaluating the metric (lower is
better) for a batch of mask configurations. Methods return per-edge scores (bigger = more
important) and, when they select a circuit themselves (ACDC), which edges are in it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from subcircuit.errors import unknown
from subcircuit.graph import Graph
from subcircuit.models.transformer import Transformer
from subcircuit.patching import Ablation, Patcher, make_ablation
from subcircuit.tasks.base import Task
from subcircuit.tasks.metrics import Metric

ProgressFn = Callable[[int, int, str], None]  # (done, total, what) -> None


def _no_progress(done: int, total: int, what: str) -> None:
    return None


@dataclass(frozen=True, eq=False)
class Problem:
    """A model, its graph, a task, a metric and an ablation: everything a method needs."""

    model: Transformer
    graph: Graph
    task: Task
    metric: Metric
    ablation: Ablation
    base_logits: Tensor  # [b v] the full model's logits at the task positions

    @property
    def patcher(self) -> Patcher:
        return Patcher(self.model, self.graph, self.task.clean, self.ablation, self.task.positions)

    def loss(self, masks: Tensor, start=None, memo=None) -> Tensor:
        """masks [c receiver sender] (or [receiver sender]) -> metric loss [c] (lower is better),
        without autograd. `start`, `memo`: see `Patcher.logits`."""
        logits = self.patcher.logits(masks, start=start, memo=memo)
        return self.metric.loss(logits.float(), self.task, self.base_logits.float())

    def loss_with_grad(self, masks: Tensor) -> Tensor:
        """Same as `loss`, differentiable (the autograd engine, `Patcher.logits_with_grad`)."""
        logits = self.patcher.logits_with_grad(masks)
        return self.metric.loss(logits.float(), self.task, self.base_logits.float())

    def value(self, masks: Tensor) -> Tensor:
        """The metric's own value [c] (its own sign) for mask configurations."""
        logits = self.patcher.logits(masks)
        return self.metric(logits.float(), self.task, self.base_logits.float())


def make_problem(model: Transformer, graph: Graph, task: Task, metric: Metric, ablation: str = "corrupted") -> Problem:
    """Build a `Problem`: the ablation from the task's corrupted prompts, the full model's logits."""
    task = task.to(model.device)
    abl = make_ablation(model, graph, ablation, task.clean, task.corrupted)
    with torch.no_grad():
        base = model(task.clean)[torch.arange(task.n, device=model.device), task.positions]
    return Problem(model, graph, task, metric, abl, base)


@dataclass(frozen=True, eq=False)
class MethodResult:
    """scores [n_edges] in `graph.edges` order (bigger = more important); in_circuit [n_edges]
    bool when the method chose the circuit itself (else None: the caller selects by size)."""

    scores: Tensor
    in_circuit: Tensor | None = None
    params: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


MethodFn = Callable[..., MethodResult]


@dataclass(frozen=True)
class MethodSpec:
    name: str
    fn: MethodFn
    description: str
    selects_circuit: bool  # True: the method decides membership (ACDC); False: scores only


METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, description: str, selects_circuit: bool = False):
    """Decorator: `@register_method("eap", "...")` adds a method to the registry."""

    def deco(fn: MethodFn) -> MethodFn:
        METHODS[name] = MethodSpec(name, fn, description, selects_circuit)
        return fn

    return deco


def get_method(name: str) -> MethodSpec:
    if name not in METHODS:
        raise unknown("method", name, METHODS)
    return METHODS[name]
