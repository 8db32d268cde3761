"""Tasks on the tracr models (`tracr-reverse`, `tracr-proportion`, and `tracr-sort-unique`,
`tracr-sort`, `tracr-hist`, `tracr-pair-balance` for the ground-truth benchmark), and the `l2` metric.

The four extra tasks are built like reverse's below (sort-unique draws distinct tokens, on which
alone it is defined; pair-balance is numerical like proportion).

The tracr models (see `subcircuit.models.tracr`) compute a RASP program exactly, so the circuit
that does the task is known (shipped in `data/reference/tracr-*.json`). These tasks feed them
inputs from the program's vocabulary, as the ACDC paper did:

- clean: `BOS x1 … xL` with L = `LENGTH` (4) tokens drawn uniformly (i.i.d.) from the vocabulary
  ({1,2,3} for reverse, {w,x,y,z} for proportion);
- corrupted: another random input of the same length, redrawn until the program's output at
  the example's position differs from the clean one (so patching in corrupted activations
  changes the answer; the ACDC paper used random other inputs);
- one metric position per example. tracr programs answer at every position, while a `Task`
  reads one position per example, so example k reads position 1 + (k mod L): a batch of n
  examples covers every position equally, each with its own random sequence. Position 0 (BOS)
  is never read: tracr's output there is undefined.

All inputs have the same length: tracr's compiled models count every token (padding included)
in `length`, and our forward pass has no padding mask, so inputs are never padded.

Answers. reverse: correct = the token id of the reversed token `x[L+1-p]`, wrong = the ids of
the other two values (so `accuracy`, `logit-diff`, `nll`, `kl` all apply; logits of BOS/pad are
-1e4). proportion: the output is a number, `logits[..., 0]`, not a token; correct and wrong are
empty (-1), and the task's metric is `l2`; `task.meta["target"]` holds the program's value at
each example's position.

`l2` (registered in `subcircuit.tasks.metrics.METRICS` by this module): the squared Euclidean
distance between the patched and the full model's logit vectors at the metric position, mean
over the batch; lower is better, 0 when the patched model agrees with the full model. For
proportion that is exactly the squared error of the output value (the other columns are always
0); for reverse it sums over the three output logits (the -1e4 BOS/pad columns are constant).
It is the ACDC paper's metric for both tracr tasks.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from subcircuit.tasks.base import Task, TaskSpec, make_task, register_task
from subcircuit.tasks.metrics import METRICS, Metric

LENGTH = 4  # input tokens after BOS (the compiled models take up to 5)
MAX_REDRAWS = 100


def l2_distance(logits: Tensor, task: Task, base_logits: Tensor) -> Tensor:
    """‖logits − base_logits‖² over the vocabulary, mean over the batch: [c b v], [b v] -> [c]."""
    d = logits.float() - base_logits.float().unsqueeze(0)
    return d.pow(2).sum(-1).mean(-1)


L2 = Metric(
    "l2",
    False,
    l2_distance,
    "squared distance between the patched and the full model's logits (tracr tasks; numerical outputs)",
)
METRICS.setdefault(L2.name, L2)


def _reverse(xs: Sequence[Any], p: int) -> Any:
    """reverse's output at position p (1-based, BOS at 0) of input xs (without BOS)."""
    return xs[len(xs) - p]


def _proportion(xs: Sequence[Any], p: int) -> float:
    """frac_prevs(tokens == "x") at position p: the fraction of x among the first p tokens."""
    return sum(1 for v in xs[:p] if v == "x") / p


def _sorted(xs: Sequence[Any], p: int) -> Any:
    """sort / sort_unique's output at position p: the p-th smallest token."""
    return sorted(xs)[p - 1]


def _hist(xs: Sequence[Any], p: int) -> int:
    """hist's output at position p: how often the token at p occurs in the input."""
    return list(xs).count(xs[p - 1])


def _pair_balance(xs: Sequence[Any], p: int) -> float:
    """pair_balance("(", ")") at position p: fraction of "(" minus fraction of ")" among the first p."""
    return (sum(1 for v in xs[:p] if v == "(") - sum(1 for v in xs[:p] if v == ")")) / p


def _iid(rng: random.Random, vocab: list[Any], length: int) -> list[Any]:
    return [rng.choice(vocab) for _ in range(length)]


def _distinct(rng: random.Random, vocab: list[Any], length: int) -> list[Any]:
    """Distinct tokens (sort_unique is defined only on inputs without repeats)."""
    return rng.sample(vocab, length)


def _check_model(loaded: Any, task: str, program: str) -> dict[str, Any]:
    meta = getattr(loaded, "meta", None) or {}
    if meta.get("program") != program:
        raise ValueError(f"task {task!r} runs only on model {task!r} (the tracr program {program})")
    return meta


def _build(task: str, program: str, fn: Callable[[Sequence[Any], int], Any],
           draw: Callable[[random.Random, list[Any], int], list[Any]] = _iid) -> Callable[..., Task]:
    def build(loaded: Any, n: int, seed: int = 0, length: int = LENGTH) -> Task:
        meta = _check_model(loaded, task, program)
        max_len = loaded.cfg.n_ctx - 1
        if not 1 <= length <= max_len:
            raise ValueError(f"input length {length} outside 1..{max_len}")
        ids = {t["value"]: t["id"] for t in meta["tokens"]}
        vocab = list(meta["compiler"]["vocab"])
        bos = meta["bos_token_id"]
        categorical = meta["output"]["kind"] == "categorical"
        out_ids = {v["value"]: v["id"] for v in meta["output"]["values"]} if categorical else {}
        rng = random.Random(seed)
        clean, corrupted, correct, wrong, positions, targets = [], [], [], [], [], []
        for k in range(n):
            p = 1 + k % length
            xs = draw(rng, vocab, length)
            ys = draw(rng, vocab, length)
            for _ in range(MAX_REDRAWS):
                if fn(ys, p) != fn(xs, p):
                    break
                ys = draw(rng, vocab, length)
            answer = fn(xs, p)
            clean.append([bos, *(ids[v] for v in xs)])
            corrupted.append([bos, *(ids[v] for v in ys)])
            if categorical:
                correct.append([out_ids[answer]])
                wrong.append([i for v, i in out_ids.items() if v != answer])
            else:
                correct.append([-1])
                wrong.append([-1])
            positions.append(p)
            targets.append(answer)
        t = make_task(
            task,
            clean,
            corrupted,
            correct,
            wrong,
            metric="l2",
            meta={"length": length, "bos": bos, "target": targets, "program": program},
        )
        # make_task reads the last position; tracr tasks read one position per example
        return Task(
            name=t.name,
            clean=t.clean,
            corrupted=t.corrupted,
            positions=torch.tensor(positions, dtype=torch.long),
            correct=t.correct,
            wrong=t.wrong,
            metric=t.metric,
            meta=t.meta,
        )

    return build


build_reverse = _build("tracr-reverse", "lib.make_reverse(rasp.tokens)", _reverse)
build_proportion = _build("tracr-proportion", 'lib.make_frac_prevs(rasp.tokens == "x")', _proportion)

REVERSE = register_task(
    TaskSpec(
        name="tracr-reverse",
        description="tracr-compiled RASP reverse: output at position p is the input token at L+1-p",
        default_model="tracr-reverse",
        default_metric="l2",
        build=build_reverse,
        default_n=32,
        natural_metric="l2",
        needs_tokenizer=False,
        criterion=("accuracy", ">=", 1.0),
    )
)
PROPORTION = register_task(
    TaskSpec(
        name="tracr-proportion",
        description='tracr-compiled RASP frac_prevs: fraction of the tokens so far that are "x"',
        default_model="tracr-proportion",
        default_metric="l2",
        build=build_proportion,
        default_n=32,
        natural_metric="l2",
        needs_tokenizer=False,
    )
)


def _register(name: str, program: str, description: str, fn: Callable[[Sequence[Any], int], Any],
              draw: Callable[[random.Random, list[Any], int], list[Any]] = _iid,
              criterion: tuple[str, str, float] | None = ("accuracy", ">=", 1.0)) -> TaskSpec:
    """A task on one of the extra tracr programs (same layout as reverse; see the module docstring)."""
    return register_task(TaskSpec(name=name, description=description, default_model=name, default_metric="l2",
                                  build=_build(name, program, fn, draw), default_n=32,
                                  natural_metric="l2", needs_tokenizer=False, criterion=criterion))


SORT_UNIQUE = _register(
    "tracr-sort-unique", "lib.make_sort_unique(rasp.tokens, rasp.tokens)",
    "tracr-compiled RASP sort_unique: output at p is the p-th smallest token (distinct tokens)", _sorted, _distinct)
SORT = _register(
    "tracr-sort", "lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=5, min_key=1)",
    "tracr-compiled RASP sort (duplicates allowed): output at p is the p-th smallest token", _sorted)
HIST = _register(
    "tracr-hist", "lib.make_hist()", "tracr-compiled RASP hist: output at p is how often the token at p occurs", _hist)
PAIR_BALANCE = _register(
    "tracr-pair-balance", 'lib.make_pair_balance(rasp.tokens, "(", ")")',
    'tracr-compiled RASP pair_balance: fraction of "(" minus fraction of ")" so far', _pair_balance, criterion=None)
