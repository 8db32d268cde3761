"""Induction (Olsson et al. 2022): a random token sequence, then the same sequence again.

Clean:      BOS r1 r2 … rL r1 r2 … r(L-1)   -> rL
Corrupted:  BOS s1 s2 … sL r1 r2 … r(L-1)   (s a fresh random sequence)

Once a sequence has been seen, an induction circuit (a previous-token head feeding an induction
head) predicts each token of its repetition from the token after the earlier occurrence. The
metric reads one position per example: the last token of the repeated half, whose next token rL
is determined only by the first copy. The corrupted prompt keeps the second half token for token
and replaces the first copy with an unrelated sequence, so the only difference between the two
runs is whether there is an earlier occurrence to copy from.

correct = rL; wrong = one random token that occurs in neither copy (for `logit-diff`; `kl` and
`nll` do not use it). All 2L+1 drawn ids are distinct, so the answer is unambiguous. L = 20 by
default (shortened to fit the context). The model "does" the task when its loss on the clean
prompts is below 10% of its loss on the corrupted ones (where rL cannot be inferred), the same
criterion the toy model is trained to (`nll/nll@corrupted <= 0.1`).

The task works on raw token ids, so it runs on models without a tokenizer (toy-induction-2l,
whose meta names its BOS id) as well as on language models (token ids drawn from the
tokenizer's vocabulary minus its special tokens; BOS prepended where the tokenizer has one).
"""

from __future__ import annotations

import random
from typing import Any

from subcircuit.tasks.base import Task, TaskSpec, make_task, register_task
from subcircuit.tasks.spans import with_spans

SPANS = ("first", "second")  # the sequence (after BOS), its repetition up to the metric's token

HALF = 20  # L, the length of the repeated sequence (shortened to fit the model's context)


def vocabulary(loaded: Any) -> tuple[list[int], int | None]:
    """(candidate content token ids, BOS id or None) for the model."""
    cfg = loaded.cfg
    tok = getattr(loaded, "tokenizer", None)
    if tok is None:
        bos = loaded.meta.get("bos_token_id") if isinstance(loaded.meta, dict) else None
        special = {bos} if bos is not None else set()
        return [i for i in range(cfg.vocab_size) if i not in special], bos
    special = set(getattr(tok, "all_special_ids", []) or [])
    size = min(cfg.vocab_size, len(tok))
    bos = getattr(tok, "bos_token_id", None)
    return [i for i in range(size) if i not in special], bos if isinstance(bos, int) else None


def build_induction(loaded: Any, n: int, seed: int = 0, half: int = HALF) -> Task:
    """n repeated random sequences; clean/corrupted [n 2L(+1)], correct = the repeated token."""
    ids, bos = vocabulary(loaded)
    prefix = [bos] if bos is not None else []
    half = max(2, min(half, (loaded.cfg.n_ctx - len(prefix)) // 2))
    if len(ids) < 2 * half + 1:
        raise ValueError(f"induction needs at least {2 * half + 1} distinct token ids, the model has {len(ids)}")
    rng = random.Random(seed)
    clean, corrupted, correct, wrong = [], [], [], []
    for _ in range(n):
        drawn = rng.sample(ids, 2 * half + 1)  # distinct ids: r, s and one unused wrong token
        r, s, other = drawn[:half], drawn[half : 2 * half], drawn[-1]
        clean.append(prefix + r + r[:-1])
        corrupted.append(prefix + s + r[:-1])
        correct.append([r[-1]])
        wrong.append([other])
    task = make_task("induction", clean, corrupted, correct, wrong, meta={"half": half, "bos": bos})
    pieces = [[("first", len(prefix) + half), ("second", half - 1)]] * n
    return with_spans(task, SPANS, pieces, clean)


SPEC = register_task(
    TaskSpec(
        name="induction",
        description="Induction: a random token sequence repeated; predict the repeated half's next token",
        default_model="toy-induction-2l",
        default_metric="kl",
        build=build_induction,
        default_n=32,
        natural_metric="nll",
        criterion=("nll/nll@corrupted", "<=", 0.1),
        needs_tokenizer=False,
    )
)
