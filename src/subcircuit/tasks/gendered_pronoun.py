"""Gendered pronoun (Mathwin et al. 2023, "Identifying a preliminary circuit for predicting
gendered pronouns in GPT-2 small").

Clean:      "So John is a really great friend, isn't"   -> " he"
Corrupted:  "So Mary is a really great friend, isn't"   (a name of the other gender)

A tag question refers back to the subject, so the model must carry the name's gender to the
final position. correct = the pronoun that matches the name (" he" / " she"), wrong = the other.
The corrupted prompt replaces the name with a random name of the other gender: the prompt keeps
its length and wording and only the gender information changes, so the corrupted run prefers the
wrong pronoun and `logit-diff` flips sign. (A gender-neutral replacement such as "the person"
would change the prompt's length; single-token neutral names are too few and not neutral enough
to the model.)

Names always follow a word (never start the prompt) and are kept only if they are one token with
a leading space for the tokenizer.
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
    single_tokens,
)

MALE = [
    "John", "David", "Michael", "James", "Robert", "Paul", "Mark", "Peter", "Thomas", "George", "Richard",
    "Kevin", "Steven", "Brian", "Eric", "Jack", "Ryan", "Adam", "Charles", "Joseph", "William", "Jason",
    "Matthew", "Frank", "Edward", "Henry", "Daniel", "Andrew", "Patrick", "Simon",
]
FEMALE = [
    "Mary", "Sarah", "Emma", "Lisa", "Laura", "Anna", "Jessica", "Rachel", "Kate", "Jennifer", "Linda",
    "Susan", "Amy", "Helen", "Karen", "Nancy", "Emily", "Victoria", "Grace", "Lucy", "Sophie", "Julia",
    "Jane", "Alice", "Elizabeth", "Maria", "Anne", "Rose", "Claire", "Hannah",
]
TEMPLATES = [
    "So {name} is a really great friend, isn't",
    "So {name} is such a good cook, isn't",
    "Yes, {name} is a very talented musician, isn't",
    "Well, {name} is quite a kind person, isn't",
    "So {name} really likes to read, doesn't",
    "So {name} was at the party last night, wasn't",
    "I think {name} is a great teacher, isn't",
    "So {name} can speak three languages, can't",
]


def build_gendered_pronoun(loaded: Any, n: int, seed: int = 0) -> Task:
    """n tag-question prompts; correct = [n 1] the matching pronoun, wrong = [n 1] the other one."""
    tok = require_tokenizer(loaded, "gendered-pronoun")
    male = list(single_tokens(tok, [" " + m for m in MALE]))
    female = list(single_tokens(tok, [" " + f for f in FEMALE]))
    he, she = single_token(tok, " he"), single_token(tok, " she")
    if he is None or she is None or len(male) < 2 or len(female) < 2:
        raise ValueError("gendered-pronoun: ' he'/' she' or too few names are single tokens for this tokenizer")
    rng = random.Random(seed)
    clean, corrupted, correct, wrong, prompts = [], [], [], [], []
    while len(clean) < n:
        is_male = rng.random() < 0.5
        name = rng.choice(male if is_male else female)
        other = rng.choice(female if is_male else male)
        template = rng.choice(TEMPLATES)
        c, x = template.format(name=name.strip()), template.format(name=other.strip())
        ci, xi = encode(tok, c), encode(tok, x)
        if len(ci) != len(xi):
            continue
        clean.append(ci)
        corrupted.append(xi)
        correct.append([he if is_male else she])
        wrong.append([she if is_male else he])
        prompts.append(c)
    return make_task("gendered-pronoun", clean, corrupted, correct, wrong, pad=pad_id(tok), prompts=tuple(prompts))


SPEC = register_task(
    TaskSpec(
        name="gendered-pronoun",
        description="Gendered pronoun: 'So John is a really great friend, isn't' -> ' he'",
        default_model="smollm2-135m",
        default_metric="kl",
        build=build_gendered_pronoun,
        default_n=32,
        natural_metric="logit-diff",
        criterion=("accuracy", ">=", 0.9),
    )
)
