"""The RASP programs we compile with tracr, how tracr compiles them, and where their builds live.

The ACDC paper's two, `reverse` (lib.make_reverse) and `proportion` (lib.make_frac_prevs of
tokens == "x"), and four more programs of tracr's `lib` for the ground-truth benchmark
(`sort-unique`, `sort`, `hist`, `pair-balance`), all compiled with the paper's settings (BOS
first, max_seq_len 5, bidirectional). Only `compile_program`
and the program makers import tracr (JAX, the optional `tracr` extra); everything else here
works without it.

Residual order. tracr sorts residual directions by label, and labels carry a global counter
(`reverse_17:2`), so the order of one program can change with what was compiled before it in
the same process. `canonical_labels` renames every direction to the SOp's name (`reverse:2`);
sorting by that makes the converted weights independent of compile order.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from subcircuit.models.loading import data_dir

BOS = "BOS"
PAD = "compiler_pad"


@dataclass(frozen=True)
class TracrProgram:
    """A RASP program and how it is compiled (the ACDC paper's settings)."""

    name: str  # model short name
    description: str
    rasp: str  # the program, as source, for the docs and the meta
    make: Callable[[], Any]  # () -> rasp.SOp; imports tracr
    vocab: tuple[Any, ...]
    max_seq_len: int = 5
    causal: bool = False


def _make_reverse() -> Any:
    from tracr.compiler import lib
    from tracr.rasp import rasp

    return lib.make_reverse(rasp.tokens)


def _make_proportion() -> Any:
    from tracr.compiler import lib
    from tracr.rasp import rasp

    return lib.make_frac_prevs(rasp.tokens == "x")


def _make_sort_unique() -> Any:
    from tracr.compiler import lib
    from tracr.rasp import rasp

    return lib.make_sort_unique(rasp.tokens, rasp.tokens)


def _make_sort() -> Any:
    from tracr.compiler import lib
    from tracr.rasp import rasp

    return lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=5, min_key=1)


def _make_hist() -> Any:
    from tracr.compiler import lib

    return lib.make_hist()


def _make_pair_balance() -> Any:
    from tracr.compiler import lib
    from tracr.rasp import rasp

    return lib.make_pair_balance(rasp.tokens, "(", ")")


PROGRAMS: dict[str, TracrProgram] = {
    p.name: p
    for p in (
        TracrProgram(
            "tracr-reverse",
            "tracr-compiled RASP program that reverses its input (lib.make_reverse), vocab {1,2,3}",
            "lib.make_reverse(rasp.tokens)",
            _make_reverse,
            (1, 2, 3),
        ),
        TracrProgram(
            "tracr-proportion",
            'tracr-compiled RASP program: fraction of tokens so far equal to "x" (lib.make_frac_prevs), '
            "vocab {w,x,y,z}",
            'lib.make_frac_prevs(rasp.tokens == "x")',
            _make_proportion,
            ("w", "x", "y", "z"),
        ),
        TracrProgram(
            "tracr-sort-unique",
            "tracr-compiled RASP program that sorts distinct tokens (lib.make_sort_unique), vocab {1..5}",
            "lib.make_sort_unique(rasp.tokens, rasp.tokens)",
            _make_sort_unique,
            (1, 2, 3, 4, 5),
        ),
        TracrProgram(
            "tracr-sort",
            "tracr-compiled RASP program that sorts tokens, duplicates allowed (lib.make_sort), vocab {1..4}",
            "lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=5, min_key=1)",
            _make_sort,
            (1, 2, 3, 4),
        ),
        TracrProgram(
            "tracr-hist",
            "tracr-compiled RASP histogram: how often each position's token occurs (lib.make_hist), vocab {a,b,c}",
            "lib.make_hist()",
            _make_hist,
            ("a", "b", "c"),
        ),
        TracrProgram(
            "tracr-pair-balance",
            'tracr-compiled RASP pair balance: fraction of "(" minus fraction of ")" so far '
            "(lib.make_pair_balance), vocab {(,),a}",
            'lib.make_pair_balance(rasp.tokens, "(", ")")',
            _make_pair_balance,
            ("(", ")", "a"),
        ),
    )
}


def shipped_dir(name: str) -> Path:
    return data_dir() / "models" / name


def reference_path(name: str) -> Path:
    return data_dir() / "reference" / f"{name}.json"


def compile_program(name: str) -> tuple[Any, Any]:
    """Compile a registered program with tracr -> (AssembledTransformerModel, the rasp SOp)."""
    from tracr.compiler import compiling

    prog = PROGRAMS[name]
    sop = prog.make()
    assembled = compiling.compile_rasp_to_model(
        sop,
        vocab=set(prog.vocab),
        max_seq_len=prog.max_seq_len,
        causal=prog.causal,
        compiler_bos=BOS,
        compiler_pad=PAD,
    )
    return assembled, sop


def _program_labels(sop: Any) -> dict[str, str]:
    """label -> name for every expression of the program (labels carry a global counter)."""
    out: dict[str, str] = {}
    stack = [sop]
    while stack:
        e = stack.pop()
        if e.label not in out:
            out[e.label] = e.name
            stack.extend(e.children)
    return out


def canonical_labels(residual_labels: Sequence[str], sop: Any) -> list[str]:
    """tracr residual labels with each SOp label (`name_17`) replaced by its name (`name`)."""
    names = _program_labels(sop)
    # longest first, so `opp_idx-1_3` is not matched by a shorter label
    pattern = re.compile(
        "^(" + "|".join(re.escape(k) for k in sorted(names, key=len, reverse=True)) + r")(?=$|:|_)"
    )
    out = [pattern.sub(lambda m: names[m.group(1)], lab) for lab in residual_labels]
    if len(set(out)) != len(out):
        raise ValueError(f"residual labels are not unique after renaming: {out}")
    return out


def all_inputs(name: str, length: int) -> list[list[Any]]:
    """Every input of `length` tokens (BOS first) over the program's vocabulary."""
    return [[BOS, *x] for x in itertools.product(PROGRAMS[name].vocab, repeat=length)]
