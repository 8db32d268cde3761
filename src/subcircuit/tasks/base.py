"""What a task is: clean and corrupted token batches, where the metric reads, and the answers.

A `Task` is data (frozen, tensors inside); a `TaskSpec` is a registered recipe that builds one
for a given model (its tokenizer) from a size and a seed, deterministically.

Batches are right-padded to one length. Causal attention means a real token never attends to
padding after it, so no attention mask is needed; the metric reads each example at its own
`positions[i]` (the last prompt token, whose next-token prediction is the answer).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from subcircuit.errors import UserError, unknown


@dataclass(frozen=True, eq=False)
class Task:
    """One behaviour, ready to run.

    clean, corrupted: [b p] token ids of equal shape (corrupted[i] contrasts clean[i]).
    positions: [b] the position whose next-token logits the metric reads.
    correct, wrong: [b n] answer token ids, padded with -1 when examples have different counts.
    metric: the name of the default metric (see `subcircuit.tasks.metrics`).
    span_names, span_ids: the task's span schema and [b p] each token's span index in it
    (`subcircuit.tasks.spans`; empty / None for a task without spans).
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
    span_names: tuple[str, ...] = ()
    span_ids: Tensor | None = None

    def __post_init__(self) -> None:
        b, p = self.clean.shape
        if self.corrupted.shape != self.clean.shape:
            raise ValueError(f"clean {tuple(self.clean.shape)} and corrupted {tuple(self.corrupted.shape)} differ")
        if self.positions.shape != (b,) or int(self.positions.max()) >= p or int(self.positions.min()) < 0:
            raise ValueError("positions must be [b] indices inside the prompts")
        if self.correct.shape[0] != b or self.wrong.shape[0] != b:
            raise ValueError("correct and wrong answers need one row per example")
        if self.span_ids is not None and (self.span_ids.shape != (b, p) or not self.span_names):
            raise ValueError("span_ids must be [b p] span indices into span_names")

    @property
    def metric_spans(self) -> tuple[int, ...]:
        """The span indices where the metric reads (the spans of `positions`)."""
        if self.span_ids is None:
            return ()
        ids = self.span_ids.to(self.positions.device)[torch.arange(self.n, device=self.positions.device), self.positions]
        return tuple(sorted(set(ids.tolist())))

    @property
    def n(self) -> int:
        return self.clean.shape[0]

    def rows(self, index: Sequence[int] | slice) -> Task:
        """The examples `index` of this task (repeats allowed), every per-example field taken
        along: prompts, answers, positions, span ids, and `meta` lists of one item per example."""
        from dataclasses import replace

        picked = list(range(self.n))[index] if isinstance(index, slice) else [int(i) for i in index]
        if not picked:
            raise ValueError(f"task {self.name!r}: an empty subset")
        idx = torch.tensor(picked, dtype=torch.long, device=self.clean.device)
        meta = {k: ([v[i] for i in picked] if isinstance(v, list | tuple) and len(v) == self.n else v)
                for k, v in self.meta.items()}
        prompts = tuple(self.prompts[i] for i in picked) if len(self.prompts) == self.n else self.prompts
        return replace(self, clean=self.clean[idx], corrupted=self.corrupted[idx],
                       positions=self.positions[idx.to(self.positions.device)],
                       correct=self.correct[idx.to(self.correct.device)], wrong=self.wrong[idx.to(self.wrong.device)],
                       prompts=prompts, meta=meta,
                       span_ids=None if self.span_ids is None else self.span_ids[idx.to(self.span_ids.device)])

    def to(self, device: torch.device | str) -> Task:
        from dataclasses import replace

        return replace(
            self,
            clean=self.clean.to(device),
            corrupted=self.corrupted.to(device),
            positions=self.positions.to(device),
            correct=self.correct.to(device),
            wrong=self.wrong.to(device),
            span_ids=None if self.span_ids is None else self.span_ids.to(device),
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
    natural_metric: str = "kl"  # the metric the task's paper reports (logit-diff for IOI, ...)
    needs_tokenizer: bool = True  # False: works on raw token ids (toy and tracr models)
    # when the full model "can do" the task: (score key, ">=" or "<=", threshold), where the key
    # is a metric name or "<metric>@corrupted" from `metrics.full_model_scores`
    criterion: tuple[str, str, float] | None = None


TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    TASKS[spec.name] = spec
    return spec


def get_task_spec(name: str) -> TaskSpec:
    if name not in TASKS:
        raise unknown("task", name, TASKS)
    return TASKS[name]


# ------------------------------------------------------------------------------ helpers for builders


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a prompt, with the tokenizer's own special-token convention (a BOS where the
    tokenizer adds one itself, as GPT-2 does not and Llama does)."""
    return list(tokenizer(text)["input_ids"])


def single_token(tokenizer: Any, word: str) -> int | None:
    """The id of `word` (e.g. " Mary", with its leading space) if it is exactly one token, else None."""
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    return int(ids[0]) if len(ids) == 1 else None


def single_tokens(tokenizer: Any, words: list[str]) -> dict[str, int]:
    """The words of `words` that are single tokens, mapped to their ids (order kept)."""
    out = {}
    for w in words:
        tid = single_token(tokenizer, w)
        if tid is not None:
            out[w] = tid
    return out


def pad_id(tokenizer: Any) -> int:
    """The id used for right padding: the tokenizer's pad, else its EOS, else 0."""
    for attr in ("pad_token_id", "eos_token_id"):
        tid = getattr(tokenizer, attr, None) if tokenizer is not None else None
        if isinstance(tid, int):
            return tid
    return 0


def pad_right(seqs: list[list[int]], value: int) -> Tensor:
    """[b p] long tensor of `seqs` right-padded with `value` to the longest."""
    p = max(len(s) for s in seqs)
    out = torch.full((len(seqs), p), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out


def make_task(
    name: str,
    clean: list[list[int]],
    corrupted: list[list[int]],
    correct: list[list[int]],
    wrong: list[list[int]],
    *,
    pad: int = 0,
    metric: str = "kl",
    prompts: tuple[str, ...] = (),
    meta: dict[str, Any] | None = None,
) -> Task:
    """Assemble a Task from per-example token lists.

    clean[i] and corrupted[i] must have the same length; the metric reads position len-1 (the
    next-token prediction after the prompt). Answer lists are padded with -1 to [b n].
    """
    if not clean:
        raise ValueError(f"task {name!r} has no examples")
    for i, (a, b) in enumerate(zip(clean, corrupted, strict=True)):
        if len(a) != len(b):
            raise ValueError(f"task {name!r} example {i}: clean has {len(a)} tokens, corrupted {len(b)}")
    return Task(
        name=name,
        clean=pad_right(clean, pad),
        corrupted=pad_right(corrupted, pad),
        positions=torch.tensor([len(s) - 1 for s in clean], dtype=torch.long),
        correct=pad_right(correct, -1),
        wrong=pad_right(wrong, -1),
        metric=metric,
        prompts=prompts,
        meta=meta or {},
    )


def context_length(loaded: Any) -> int | None:
    """The longest prompt `loaded` (a LoadedModel) can read: its `cfg.n_ctx` (None if unknown)."""
    n_ctx = getattr(getattr(loaded, "cfg", None), "n_ctx", None)
    return n_ctx if isinstance(n_ctx, int) else None


def check_context(task: Task, loaded: Any) -> Task:
    """`task` if its prompts fit the context of `loaded`, else a UserError naming the task, the
    longest example, its token count and the context (the model could not embed its positions)."""
    n_ctx = context_length(loaded)
    if n_ctx is not None and task.clean.shape[1] > n_ctx:
        i = int(task.positions.argmax())
        raise UserError(
            f"task {task.name!r} example {i} is {int(task.positions[i]) + 1} tokens for "
            f"{getattr(loaded, 'name', 'this model')}, longer than its context of {n_ctx} tokens"
        )
    return task


def require_tokenizer(loaded: Any, task: str) -> Any:
    """The model's tokenizer, or a UserError naming the task (text tasks need one)."""
    tok = getattr(loaded, "tokenizer", None)
    if tok is None:
        raise UserError(
            f"task {task!r} needs a model with a tokenizer; {getattr(loaded, 'name', 'this model')!r} works on "
            "raw token ids (try task 'induction' or a task file with token ids)"
        )
    return tok
