"""Indirect Object Identification (Wang et al. 2022, "Interpretability in the Wild").

Clean:      "When Mary and John went to the store, John gave a drink to"  -> " Mary"
Corrupted:  "When Lisa and Paul went to the store, Kevin gave a drink to" (the "ABC" dataset)

Two names are introduced (the indirect object IO and the subject S), S is repeated, and the
model must complete with the name that was not repeated. The correct answer is IO, the wrong
answer S; the paper's metric is the logit difference logit(IO) − logit(S). The corrupted prompt
keeps the template and replaces the three name positions (IO, S1, S2) with three different
random names, so no name is repeated and the "who was not repeated" information is gone while
everything else about the sentence stays.

Half the examples put IO first ("ABBA"), half put S first ("BABA"). Names are kept only if they
are a single token with a leading space for the model's tokenizer, so clean and corrupted prompts
always have the same length.
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
from subcircuit.tasks.spans import check_schema, token_counts, with_spans

# The IOI schema: text before the names, the two names (IO and S1, in either order) and the
# word between them, the text up to the repeated subject S2, S2, the text after it, the last token.
SPANS = ("pre", "IO", "and", "S1", "mid", "S2", "post", "END")

NAMES = [
    "Mary", "John", "Alice", "Bob", "Tom", "James", "Michael", "David", "Sarah", "Emma", "Paul", "Mark",
    "Lisa", "Kevin", "Daniel", "Laura", "Anna", "Peter", "Jessica", "Andrew", "Rachel", "Steven", "Kate",
    "George", "Robert", "Brian", "Eric", "Jack", "Ryan", "Adam", "Jennifer", "Linda", "Susan", "Richard",
    "Thomas", "Charles", "Joseph", "William", "Jason", "Matthew", "Amy", "Helen", "Frank", "Anthony",
    "Edward", "Jeff", "Scott", "Karen", "Nancy", "Emily", "Joe", "Sam", "Dan", "Chris", "Ben", "Henry",
    "Victoria", "Grace", "Lucy", "Oliver", "Jacob", "Patrick", "Simon", "Martin", "Carl", "Sophie",
    "Alex", "Max", "Nick", "Tim", "Eva", "Julia", "Kelly", "Jane", "Harry", "Charlie", "Philip",
]

# {A} and {B} introduce the two names, {C} is the repeated subject; answer follows the prompt.
TEMPLATES = [
    "When {A} and {B} went to the {place}, {C} gave a {object} to",
    "After {A} and {B} went to the {place}, {C} gave a {object} to",
    "Then, {A} and {B} were working at the {place}. {C} decided to give a {object} to",
    "Then, {A} and {B} had a long argument. Afterwards {C} said to",
    "While {A} and {B} were commuting to the {place}, {C} gave a {object} to",
    "Then, {A} and {B} had a lot of fun at the {place}. {C} gave a {object} to",
    "The {place} {A} and {B} went to had a {object}. {C} gave it to",
    "When {A} and {B} got a {object} at the {place}, {C} decided to give it to",
]
PLACES = ["store", "garden", "restaurant", "school", "hospital", "office", "house", "station"]
OBJECTS = ["ring", "kiss", "bone", "basketball", "computer", "necklace", "drink", "snack"]


def ioi_names(tokenizer: Any) -> dict[str, int]:
    """The names that are one token with a leading space for `tokenizer` ({" Mary": id})."""
    return single_tokens(tokenizer, [" " + n for n in NAMES])


def _example(rng: random.Random, names: list[str]) -> tuple[str, str, str, str]:
    """(clean, corrupted, io, s) for one random template, order and filler."""
    return _example_cut(rng, names)[:4]


def _example_cut(rng: random.Random, names: list[str]) -> tuple[str, str, str, str, list[tuple[str, str]]]:
    """(clean, corrupted, io, s, the clean prompt cut into the spans of `SPANS`)."""
    template = rng.choice(TEMPLATES)
    fill = {"place": rng.choice(PLACES), "object": rng.choice(OBJECTS)}
    io, s, x, y, z = rng.sample(names, 5)
    io_first = rng.random() < 0.5
    a, b = (io, s) if io_first else (s, io)
    clean = template.format(A=a.strip(), B=b.strip(), C=s.strip(), **fill)
    corrupted = template.format(A=x.strip(), B=y.strip(), C=z.strip(), **fill)
    pre, rest = template.split("{A}")
    between, rest = rest.split("{B}")
    mid, post = rest.split("{C}")
    first, second = ("IO", "S1") if io_first else ("S1", "IO")
    cut = [("pre", pre.rstrip(" ").format(**fill)), (first, " " + a.strip()), ("and", between.rstrip(" ")),
           (second, " " + b.strip()), ("mid", mid.rstrip(" ").format(**fill)), ("S2", " " + s.strip()),
           ("post", post[: -len(" to")].format(**fill)), ("END", " to")]
    return clean, corrupted, io, s, cut


def build_ioi(loaded: Any, n: int, seed: int = 0) -> Task:
    """n IOI prompts for the model's tokenizer; clean/corrupted [n p], correct = IO, wrong = S."""
    tok = require_tokenizer(loaded, "ioi")
    names = ioi_names(tok)
    if len(names) < 5:
        raise ValueError(f"only {len(names)} IOI names are single tokens for this tokenizer; need at least 5")
    rng = random.Random(seed)
    pool = list(names)
    clean, corrupted, correct, wrong, prompts, pieces = [], [], [], [], [], []
    while len(clean) < n:
        c, x, io, s, cut = _example_cut(rng, pool)
        ci, xi = encode(tok, c), encode(tok, x)
        if len(ci) != len(xi):  # a name merged with its neighbour; vanishingly rare, skip
            continue
        check_schema(cut, SPANS, "ioi")
        try:
            token_counts(cut, ci, lambda text: encode(tok, text), "ioi")
        except UserError:  # a token crosses a span boundary for this tokenizer: skip the example
            continue
        pieces.append(cut)
        clean.append(ci)
        corrupted.append(xi)
        correct.append([names[io]])
        wrong.append([names[s]])
        prompts.append(c)
    task = make_task("ioi", clean, corrupted, correct, wrong, pad=pad_id(tok), prompts=tuple(prompts))
    return with_spans(task, SPANS, pieces, clean, lambda text: encode(tok, text))


SPEC = register_task(
    TaskSpec(
        name="ioi",
        description="Indirect Object Identification: 'When Mary and John went to the store, John gave a drink to' -> ' Mary'",
        default_model="smollm2-135m",
        default_metric="kl",
        build=build_ioi,
        default_n=32,
        natural_metric="logit-diff",
        criterion=("accuracy", ">=", 0.9),
    )
)
