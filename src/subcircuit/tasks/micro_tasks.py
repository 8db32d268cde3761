"""Tasks on the hand-built micro models (`micro-induction`, `micro-pointer`; see `subcircuit.models.micro`).

The model's meta (`micro`) says which task it computes and its token ids; the tasks read it
there (tasks sit beside models, not above them, so they do not import the builders).

- `micro-induction`: clean `BOS x1 … x8`, x1..x7 distinct content tokens (ids 1..n_tokens) and
  x8 = x_s for a random s in 1..6; the answer is x_{s+1}. Corrupted: another such prompt whose
  answer differs.
- `micro-pointer`: clean `BOS P_k x1 … x6`, pointer token P_k (ids 1..n_pointers), content tokens
  i.i.d. (ids after the pointers); the answer is x_k. Corrupted: another prompt whose answer differs.

Both read the last position; correct = the answer's id, wrong = the other content ids. The
default metric is `l2` (the tracr tasks' metric: squared distance to the full model's logits),
run with zero ablation in the ground-truth benchmark, as the ACDC paper did for tracr.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from subcircuit.tasks.base import Task, TaskSpec, make_task, register_task

IND_LENGTH = 8
MAX_REDRAWS = 100


def _meta(loaded: Any, kind: str, task: str) -> dict[str, Any]:
    m = (getattr(loaded, "meta", None) or {}).get("micro") or {}
    if m.get("kind") != kind:
        raise ValueError(f"task {task!r} runs only on model {task!r}")
    return m


def _induction_prompt(rng: random.Random, n_tokens: int) -> tuple[list[int], int]:
    xs = rng.sample(range(1, n_tokens + 1), IND_LENGTH - 1)
    s = rng.randrange(0, IND_LENGTH - 2)  # 0-based index of the earlier occurrence
    return [*xs, xs[s]], xs[s + 1]


def _pointer_prompt(rng: random.Random, n_pointers: int, n_content: int, length: int) -> tuple[list[int], int]:
    k = rng.randrange(n_pointers)
    xs = [rng.randrange(1 + n_pointers, 1 + n_pointers + n_content) for _ in range(length)]
    return [1 + k, *xs], xs[k]


def _build(task: str, kind: str) -> Callable[..., Task]:
    def build(loaded: Any, n: int, seed: int = 0) -> Task:
        m = _meta(loaded, kind, task)
        rng = random.Random(seed)
        if kind == "induction":
            def draw() -> tuple[list[int], int]:
                return _induction_prompt(rng, m["n_tokens"])
            content = list(range(1, m["n_tokens"] + 1))
        else:
            def draw() -> tuple[list[int], int]:
                return _pointer_prompt(rng, m["n_pointers"], m["n_content"], m["length"])
            content = list(range(1 + m["n_pointers"], 1 + m["n_pointers"] + m["n_content"]))
        bos = m["bos_token_id"]
        clean, corrupted, correct, wrong = [], [], [], []
        for _ in range(n):
            xs, a = draw()
            ys, b = draw()
            for _ in range(MAX_REDRAWS):
                if b != a:
                    break
                ys, b = draw()
            clean.append([bos, *xs])
            corrupted.append([bos, *ys])
            correct.append([a])
            wrong.append([c for c in content if c != a])
        return make_task(task, clean, corrupted, correct, wrong, metric="l2", meta={"kind": kind})

    return build


INDUCTION = register_task(TaskSpec(
    name="micro-induction", description="hand-built micro-induction: the token after the earlier occurrence of the "
    "last token", default_model="micro-induction", default_metric="l2", build=_build("micro-induction", "induction"),
    default_n=32, natural_metric="l2", needs_tokenizer=False, criterion=("accuracy", ">=", 1.0)))
POINTER = register_task(TaskSpec(
    name="micro-pointer", description="hand-built micro-pointer: the content token at the position the first token "
    "names", default_model="micro-pointer", default_metric="l2", build=_build("micro-pointer", "pointer"),
    default_n=32, natural_metric="l2", needs_tokenizer=False, criterion=("accuracy", ">=", 1.0)))
