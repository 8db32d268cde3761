"""Greater-Than (Hanna et al. 2023, "How does GPT-2 compute greater-than?").

Clean:      "The war lasted from the year 1732 to the year 17"   -> a year after 1732
Corrupted:  "The war lasted from the year 1701 to the year 17"   (start year "…01")

The model must continue the end year with a number larger than the start year's last two digits
YY. The corrupted prompt ends its start year in "01", which leaves (almost) every continuation
plausible, so it carries no "greater than YY" information. The paper's metric is the probability
difference P(answer > YY) − P(answer ≤ YY); here the correct and wrong answer sets encode it, so
`prob-diff` computes exactly that.

How the end year is tokenized decides the variant (detected from the tokenizer, not assumed):

- two-digit variant (GPT-2: " 1732" = " 17" + "32"): the next token is the two-digit "YY" of the
  end year; correct = the tokens "00".."99" greater than YY, wrong = those ≤ YY. Start YY is in
  02..98 as in the paper.
- digit variant (SmolLM2, Llama: digits are single tokens): the next token is the end year's tens
  digit d. With start tens digit t, every d > t makes a later year (correct) and every d < t an
  earlier one (wrong); d = t is ambiguous (1735 > 1732 but 1731 < 1732) and belongs to neither
  set, so prob-diff = P(d > t) − P(d < t). Start YY is in 10..89 (t in 1..8) so both sets are
  non-empty; the corrupted "01" start (t = 0) makes every d ≥ 1 a later year.

Nouns and the century (11..17) vary across examples.
"""

from __future__ import annotations

import random
from typing import Any

from subcircuit.tasks.base import (
    Task,
    TaskSpec,
    encode,
    make_task,
    pad_id,
    register_task,
    require_tokenizer,
    single_token,
)
from subcircuit.tasks.spans import with_spans

SPANS = ("pre", "YY", "mid", "END")  # "The war lasted from the year 17" "32" " to the year" " 17"

NOUNS = [
    "war", "drought", "famine", "siege", "dynasty", "reign", "expedition", "plague", "occupation",
    "rebellion", "truce", "voyage", "construction", "conflict", "blockade", "migration",
]
TEMPLATE = "The {noun} lasted from the year {century}{yy} to the year {century}"
CENTURIES = [str(c) for c in range(11, 18)]


def detect_variant(tokenizer: Any) -> str:
    """'two-digit' if every "00".."99" continues " 17" as one token, 'digit' if years split into
    single digits, else a ValueError (the task does not fit this tokenizer)."""
    prefix = encode(tokenizer, TEMPLATE.format(noun="war", century="17", yy="32"))
    full = encode(tokenizer, TEMPLATE.format(noun="war", century="17", yy="32") + "45")
    extra = full[len(prefix) :]
    if full[: len(prefix)] == prefix and len(extra) == 1:
        if all(single_token(tokenizer, f"{yy:02d}") is not None for yy in range(100)):
            return "two-digit"
    if full[: len(prefix)] == prefix and len(extra) == 2:
        if all(single_token(tokenizer, str(d)) is not None for d in range(10)):
            return "digit"
    raise ValueError("greater-than: years tokenize neither as ' 17'+'YY' nor as single digits for this tokenizer")


def _answers(tokenizer: Any, variant: str, yy: int) -> tuple[list[int], list[int]]:
    """(correct, wrong) token ids for a start year ending in yy."""
    if variant == "two-digit":
        ids = [single_token(tokenizer, f"{y:02d}") for y in range(100)]
        return [ids[y] for y in range(100) if y > yy], [ids[y] for y in range(100) if y <= yy]
    ids = [single_token(tokenizer, str(d)) for d in range(10)]
    t = yy // 10
    return [ids[d] for d in range(10) if d > t], [ids[d] for d in range(10) if d < t]


def build_greater_than(loaded: Any, n: int, seed: int = 0) -> Task:
    """n Greater-Than prompts; correct/wrong [n k] hold the later/earlier-year answer tokens."""
    tok = require_tokenizer(loaded, "greater-than")
    variant = detect_variant(tok)
    lo, hi = (2, 98) if variant == "two-digit" else (10, 89)
    rng = random.Random(seed)
    clean, corrupted, correct, wrong, prompts, pieces = [], [], [], [], [], []
    while len(clean) < n:
        noun, century, yy = rng.choice(NOUNS), rng.choice(CENTURIES), rng.randint(lo, hi)
        cut = [("pre", f"The {noun} lasted from the year {century}"), ("YY", f"{yy:02d}"), ("mid", " to the year"),
               ("END", f" {century}")]
        c = TEMPLATE.format(noun=noun, century=century, yy=f"{yy:02d}")
        x = TEMPLATE.format(noun=noun, century=century, yy="01")
        ci, xi = encode(tok, c), encode(tok, x)
        if len(ci) != len(xi):
            continue
        good, bad = _answers(tok, variant, yy)
        pieces.append(cut)
        clean.append(ci)
        corrupted.append(xi)
        correct.append(good)
        wrong.append(bad)
        prompts.append(c)
    task = make_task(
        "greater-than", clean, corrupted, correct, wrong, pad=pad_id(tok), prompts=tuple(prompts), meta={"variant": variant}
    )
    return with_spans(task, SPANS, pieces, clean, lambda text: encode(tok, text))


SPEC = register_task(
    TaskSpec(
        name="greater-than",
        description="Greater-Than: 'The war lasted from the year 1732 to the year 17' -> a year after 1732",
        default_model="smollm2-135m",
        default_metric="kl",
        build=build_greater_than,
        default_n=32,
        natural_metric="prob-diff",
        criterion=("prob-diff", ">=", 0.3),
    )
)
