"""Docstring (Heimersheim & Janiak 2023, "A circuit for Python docstrings"; used in the ACDC paper).

Clean:
    def check(self, load, size, files, last):
        \"\"\"oil column piece

        :param load: crime population
        :param size: unit dark
        :param                                   -> " files"

Corrupted: the same function with random argument names in the def line
    def check(self, image, group, node, order):   (the docstring is unchanged)

The model must look up which argument of the def line comes after the ones already documented.
correct = the next undocumented argument (" files"); wrong = the def line's other arguments
(" load", " size", " last"), so `logit-diff` is logit(next) − mean logit(other args), close to
the paper's logit difference against the other argument names. The corrupted def line removes the
information the copying circuit reads, while the docstring's layout stays identical.

Argument names are kept only if they are one token with a leading space for the tokenizer, so the
corrupted prompt has the same length as the clean one.
"""

from __future__ import annotations

import random
from typing import Any

from subcircuit.errors import UserError
from subcircuit.tasks.base import (
    Task,
    TaskSpec,
    encode,
    make_task,
    pad_id,
    register_task,
    require_tokenizer,
    single_tokens,
)
from subcircuit.tasks.spans import token_counts, with_spans

ARG_NAMES = [
    "load", "size", "files", "last", "data", "name", "value", "path", "key", "model", "index", "count",
    "user", "text", "result", "image", "mode", "state", "item", "node", "target", "source", "config",
    "token", "line", "query", "page", "word", "file", "context", "parent", "child", "label", "order",
    "option", "limit", "offset", "format", "channel", "message", "score", "weight", "group", "color",
    "shape", "length", "width", "height", "action", "date", "type", "field", "filter", "step",
]
FUNC_NAMES = ["check", "run", "update", "load", "process", "create", "get", "handle", "parse", "build", "apply", "send"]
WORDS = [
    "oil", "column", "piece", "crime", "population", "unit", "dark", "river", "song", "paper", "field",
    "market", "story", "sense", "glass", "stone", "light", "water", "money", "table", "plant", "cloud",
]
N_ARGS = 4  # after self; the first two are documented, the third is the answer
# spans: the def line up to self, the four arguments (each with its comma), the docstring up to
# the first ':param', the two documented names, the text between and after them, the last ':param'
SPANS = ("def", "A1", "A2", "A3", "A4", "doc", "P1", "mid", "P2", "post", "END")


def _cut(func: str, def_args: list[str], doc_args: list[str], words: list[str]) -> list[tuple[str, str]]:
    """`_prompt`'s text cut into the spans of `SPANS`."""
    a = def_args
    return [("def", f"def {func}(self,"), ("A1", f" {a[0]},"), ("A2", f" {a[1]},"), ("A3", f" {a[2]},"),
            ("A4", f" {a[3]}):"), ("doc", f'\n    """{words[0]} {words[1]} {words[2]}\n\n    :param'),
            ("P1", f" {doc_args[0]}"), ("mid", f": {words[3]} {words[4]}\n    :param"), ("P2", f" {doc_args[1]}"),
            ("post", f": {words[5]} {words[6]}"), ("END", "\n    :param")]


def _prompt(func: str, def_args: list[str], doc_args: list[str], words: list[str]) -> str:
    lines = [
        f"def {func}(self, {', '.join(def_args)}):",
        f'    """{words[0]} {words[1]} {words[2]}',
        "",
    ]
    for i, a in enumerate(doc_args):
        lines.append(f"    :param {a}: {words[3 + 2 * i]} {words[4 + 2 * i]}")
    lines.append("    :param")
    return "\n".join(lines)


def docstring_args(tokenizer: Any) -> dict[str, int]:
    """Argument names that are one token with a leading space ({" load": id})."""
    return single_tokens(tokenizer, [" " + a for a in ARG_NAMES])


def build_docstring(loaded: Any, n: int, seed: int = 0) -> Task:
    """n docstring prompts; correct = [n 1] next argument, wrong = [n 3] the other def arguments."""
    tok = require_tokenizer(loaded, "docstring")
    args = docstring_args(tok)
    if len(args) < 2 * N_ARGS:
        raise ValueError(f"only {len(args)} docstring argument names are single tokens; need {2 * N_ARGS}")
    pool = [a.strip() for a in args]
    rng = random.Random(seed)
    clean, corrupted, correct, wrong, prompts, pieces = [], [], [], [], [], []
    while len(clean) < n:
        drawn = rng.sample(pool, 2 * N_ARGS)
        real, fake = drawn[:N_ARGS], drawn[N_ARGS:]
        func, words = rng.choice(FUNC_NAMES), rng.sample(WORDS, 7)
        c = _prompt(func, real, real[:2], words)
        x = _prompt(func, fake, real[:2], words)
        ci, xi = encode(tok, c), encode(tok, x)
        if len(ci) != len(xi):
            continue
        cut = _cut(func, real, real[:2], words)
        try:
            token_counts(cut, ci, lambda text: encode(tok, text), "docstring")
        except UserError:  # a token crosses a span boundary for this tokenizer: skip the example
            continue
        pieces.append(cut)
        clean.append(ci)
        corrupted.append(xi)
        correct.append([args[" " + real[2]]])
        wrong.append([args[" " + a] for a in (real[0], real[1], real[3])])
        prompts.append(c)
    task = make_task("docstring", clean, corrupted, correct, wrong, pad=pad_id(tok), prompts=tuple(prompts))
    return with_spans(task, SPANS, pieces, clean, lambda text: encode(tok, text))


SPEC = register_task(
    TaskSpec(
        name="docstring",
        description="Docstring: predict the next ':param' name of a Python function from its def line",
        default_model="smollm2-135m",
        default_metric="kl",
        build=build_docstring,
        default_n=32,
        natural_metric="logit-diff",
        criterion=("accuracy", ">=", 0.8),
    )
)
