"""Prompt spans: each task cuts its prompts into named spans, so prompts of different lengths
align by span (the position-aware graph, `subcircuit.positional`, has an edge per span).

A task's *schema* is its tuple of span names (IOI: `pre IO and S1 mid S2 post END`, with IO and
S1 in either order; Greater-Than: `pre YY mid END`; induction: `first second`). Every prompt
has every span of the schema exactly once; the spans tile the prompt (each token is in one
span) and each holds at least one token. `Task.span_ids` [b p] holds each token's span index;
padding after a prompt belongs to the span of its last token (it is never read by a real token).

How a prompt is cut is given as *pieces*: (span name, text) pairs whose texts concatenate to
the prompt, or (span name, token count) pairs for prompts of token ids. A span ends on a token
boundary: the tokens of the text up to a span's end must be a prefix of the prompt's tokens,
else the prompt is refused (a token crosses the boundary). Task files mark spans the same way
(a `"spans"` field, see `tasks/files.py`). Any mismatch with the schema is a one-line UserError.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from subcircuit.errors import UserError

Piece = tuple[str, "str | int"]


def check_schema(pieces: Sequence[Piece], schema: Sequence[str], where: str) -> None:
    """A one-line UserError unless `pieces` name every span of `schema` exactly once."""
    names = [p[0] for p in pieces]
    if sorted(names) != sorted(schema) or len(set(names)) != len(names):
        missing = [s for s in schema if s not in names]
        extra = [s for s in names if s not in schema or names.count(s) > 1]
        what = f"missing {missing}" if missing else f"unexpected or repeated {sorted(set(extra))}"
        raise UserError(f"{where}: spans {names} do not match the task's schema {list(schema)} ({what})")


def token_counts(pieces: Sequence[Piece], tokens: list[int], encode: Callable[[str], list[int]] | None,
                 where: str) -> list[int]:
    """The number of tokens of each piece of a prompt whose tokens are `tokens`; text pieces need
    `encode` (text -> token ids, as the prompt was encoded)."""
    counts: list[int] = []
    if all(isinstance(p[1], int) and not isinstance(p[1], bool) for p in pieces):
        counts = [int(p[1]) for p in pieces]  # type: ignore[arg-type]
        if sum(counts) != len(tokens):
            raise UserError(f"{where}: span token counts sum to {sum(counts)}, the prompt has {len(tokens)} tokens")
    elif all(isinstance(p[1], str) for p in pieces):
        if encode is None:
            raise UserError(f"{where}: spans given as text but the model has no tokenizer; give token counts")
        text, done = "", 0
        for name, piece in pieces:
            text += piece  # type: ignore[operator]
            ids = encode(text) if text else []
            if ids != tokens[: len(ids)]:
                raise UserError(f"{where}: span {name!r} does not end on a token boundary (a token crosses it)")
            counts.append(len(ids) - done)
            done = len(ids)
        if done != len(tokens):
            raise UserError(f"{where}: the spans' text is not the whole prompt ({done} of {len(tokens)} tokens)")
    else:
        raise UserError(f"{where}: each span must be [name, text] (text prompts) or [name, token count] (token ids)")
    empty = [p[0] for p, n in zip(pieces, counts, strict=True) if n <= 0]
    if empty:
        raise UserError(f"{where}: span {empty[0]!r} holds no token; every span needs at least one")
    return counts


def span_ids(schema: Sequence[str], pieces: Sequence[Sequence[Piece]], counts: Sequence[Sequence[int]],
             p: int) -> Tensor:
    """[b p] the span index (in `schema`) of every token; padding gets its prompt's last span."""
    out = torch.zeros(len(pieces), p, dtype=torch.long)
    for i, (ps, ns) in enumerate(zip(pieces, counts, strict=True)):
        at = 0
        for (name, _), n in zip(ps, ns, strict=True):
            out[i, at : at + n] = schema.index(name)
            at += n
        out[i, at:] = out[i, at - 1]
    return out


def spans_for(schema: Sequence[str], pieces: Sequence[Sequence[Piece]], tokens: Sequence[list[int]], p: int,
              encode: Callable[[str], list[int]] | None, where: Callable[[int], str]) -> Tensor:
    """Check every prompt's pieces against `schema` and its tokens; the [b p] span ids."""
    counts = []
    for i, (ps, toks) in enumerate(zip(pieces, tokens, strict=True)):
        check_schema(ps, schema, where(i))
        counts.append(token_counts(ps, toks, encode, where(i)))
    return span_ids(schema, pieces, counts, p)


def single_span(task_name: str, shape: tuple[int, int], name: str = "all") -> tuple[tuple[str, ...], Tensor]:
    """One span covering every token (for tasks without a schema): positional results equal plain ones."""
    return (name,), torch.zeros(shape, dtype=torch.long)


def with_spans(task, schema: Sequence[str], pieces: Sequence[Sequence[Piece]], tokens: Sequence[list[int]],
               encode: Callable[[str], list[int]] | None = None):
    """`task` (a Task whose prompts are `tokens`) with its span schema and [b p] span ids."""
    from dataclasses import replace

    ids = spans_for(schema, pieces, tokens, task.clean.shape[1], encode, lambda i: f"task {task.name!r} example {i}")
    return replace(task, span_names=tuple(schema), span_ids=ids)
