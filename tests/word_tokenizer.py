"""A tiny word-level tokenizer built in-process (no network) for the task tests.

Words keep their leading space as GPT-2/Llama tokenizers do (" Mary" is one token "ĠMary").
Digits are single tokens (like SmolLM2) or, with `two_digit=True`, pairs of digits (like GPT-2's
" 17" + "32"). Its vocabulary holds every word of the built-in tasks' word lists, so names and
answers are single tokens; anything else becomes [UNK] (still one token per word).
"""

from __future__ import annotations

import dataclasses
import re
from functools import cache

from conftest import TINY_CONFIGS, random_model
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from subcircuit.models import LoadedModel
from subcircuit.tasks import docstring, gendered_pronoun, greater_than, ioi

SPECIALS = ["[UNK]", "[PAD]", "[BOS]"]


def _words() -> list[str]:
    texts = [
        *ioi.TEMPLATES, *ioi.PLACES, *ioi.OBJECTS, *ioi.NAMES,
        *gendered_pronoun.TEMPLATES, *gendered_pronoun.MALE, *gendered_pronoun.FEMALE, "he", "she",
        greater_than.TEMPLATE, *greater_than.NOUNS,
        *docstring.ARG_NAMES, *docstring.FUNC_NAMES, *docstring.WORDS, "def self param",
        "Mary John went out thanked the",
    ]
    words = set()
    for t in texts:
        words.update(re.findall(r"[A-Za-z]+|'[a-z]+", t))
    return sorted(words)


@cache
def word_tokenizer(two_digit: bool = False) -> PreTrainedTokenizerFast:
    """The tokenizer (cached: building it takes a few ms, but keep tests' setup trivial)."""
    words = _words()
    vocab: dict[str, int] = {}
    for tok in [*SPECIALS, "Ġ", *",.:'()\"\n", "Ċ", "ĠĠĠ", "ĠĠĠĠ", "Ġ:", "):", "\"\"\"", "Ġ\"\"\""]:
        vocab.setdefault(tok, len(vocab))
    for w in words:
        vocab.setdefault(w, len(vocab))
        vocab.setdefault("Ġ" + w, len(vocab))
    digits = [f"{i:02d}" for i in range(100)] if two_digit else [str(i) for i in range(10)]
    for d in digits:
        vocab.setdefault(d, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    split = Regex(r"\d{2}") if two_digit else Regex(r"\d")
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(split, behavior="isolated"), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", bos_token="[BOS]")


def word_model(two_digit: bool = False, config: str = "gpt2", seed: int = 0) -> LoadedModel:
    """A random tiny model whose vocabulary matches `word_tokenizer`."""
    tok = word_tokenizer(two_digit)
    cfg = dataclasses.replace(TINY_CONFIGS[config], vocab_size=len(tok), n_ctx=128)
    return LoadedModel("tiny-words", random_model(cfg, seed=seed), tok)


def id_model(config: str = "attn-only", bos: int | None = 0) -> LoadedModel:
    """A random tiny model without tokenizer (like toy-induction-2l): raw token ids."""
    cfg = dataclasses.replace(TINY_CONFIGS[config], vocab_size=64, n_ctx=48)
    return LoadedModel("tiny-ids", random_model(cfg), None, meta={} if bos is None else {"bos_token_id": bos})
