"""What a task is: clean and corrupted token batches, where the metric reads, and the answers.

A `Task` is data (frozen, tensors inside); a `TaskSpec` is a registered recipe that builds one
for a given model (its tokenizer) from a size and a seed, deterministically.

Batches are right-padded to one length. Causal attention means a real token never attends to
padding after it, so no attention mask is needed; the metric reads each example at its own
`positions[i]` (the last prompt token, whose next-token prediction is the answer).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from subcircuit.errors import unknown


@dataclass(frozen=True, eq=False)
class Task:
    """One behaviour, ready to run.

    clean, corrupted: [b p] token ids of equal shape (corrupted[i] contrasts clean[i]).
    positions: [b] the position whose next-token logits the metric reads.
    correct, wrong: [b n] answer token ids, padded with -1 when examples have different counts.
    metric: the name of the default metric (see `subcircuit.tasks.metrics`).
    """

    name: str
    clean: Tensor
    corrupted: Tensor
    positions: Tensor
    correct: Tensor
    wrong: Tensor
    metric: str = "kl"
    prompts: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        b, p = self.clean.shape
        if self.corrupted.shape != self.clean.shape:
            raise ValueError(f"clean {tuple(self.clean.shape)} and corrupted {tuple(self.corrupted.shape)} differ")
        if self.positions.shape != (b,) or int(self.positions.max()) >= p or int(self.positions.min()) < 0:
            raise ValueError("positions must be [b] indices inside the prompts")
        if self.correct.shape[0] != b or self.wrong.shape[0] != b:
            raise ValueError("correct and wrong answers need one row per example")

    @property
    def n(self) -> int:
        return self.clean.shape[0]

    def to(self, device: torch.device | str) -> Task:
        from dataclasses import replace

        return replace(
            self,
            clean=self.clean.to(device),
            corrupted=self.corrupted.to(device),
            positions=self.positions.to(device),
            correct=self.correct.to(device),
            wrong=self.wrong.to(device),
        )


@dataclass(frozen=True)
class TaskSpec:
    """A built-in task: how to build it for a model, and what it is."""

    name: str
    description: str
    default_model: str
    default_metric: str
    build: Callable[..., Task]  # build(loaded_model, n: int, seed: int) -> Task
    default_n: int = 16


TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    TASKS[spec.name] = spec
    return spec


def get_task_spec(name: str) -> TaskSpec:
    if name not in TASKS:
        raise unknown("task", name, TASKS)
    return TASKS[name]
