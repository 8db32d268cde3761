"""Task files: bring a task without writing Python (JSONL, one example per line).

    {"format": "subcircuit.task/1", "name": "my-ioi", "metric": "logit-diff"}      <- optional header
    {"clean": "When Mary and John went out, John thanked", "corrupted": "When Anna and Paul went out, Kevin thanked", "correct": " Mary", "wrong": " John"}
    {"clean": "...", "corrupted": "...", "correct": [" he", " him"], "wrong": [" she", " her"]}

Example fields (the four below are required; `split` is the only optional one, no others allowed):
- `clean`: the prompt that shows the behaviour; the metric reads the next-token prediction
  after its last token.
- `corrupted`: a contrasting prompt that must tokenize to exactly as many tokens as `clean`.
  Neither may be longer than the model's context (`n_ctx`).
- `correct`, `wrong`: one answer or a list of answers; each must be a single token for the
  model's tokenizer (mind the leading space: " Mary").

- `split` (optional): `"discovery"` or `"eval"`. When any line is marked, the `"eval"` lines are the
  held-out evaluation prompts and all other lines the discovery prompts; without marks the first
  `--n-examples` lines are for discovery and the lines after them for evaluation
  (`subcircuit.tasks.split`).

For models without a tokenizer (toy and tracr models) prompts are lists of token ids and answers
are ids: `{"clean": [0, 5, 9, 5], "corrupted": [0, 7, 9, 5], "correct": 9, "wrong": [3, 4]}`.

Spans (optional, for `--positions spans`): an example may cut its clean prompt into named spans
with a `spans` field, a list of [name, text] pairs whose texts concatenate to the prompt (for
token-id prompts, [name, token count] pairs):
`"spans": [["pre", "When"], ["IO", " Mary"], ["and", " and"], ["S1", " John"], ["rest", " went out,"], ["S2", " John"], ["END", " thanked"]]`.
Each span must end on a token boundary and hold at least one token. The schema (the span
names) is the header's `spans` list, else the first example's names; every example must then
mark spans, each span of the schema exactly once (in any order). A prompt that does not match is
refused with one line naming the file, the line and the spans.

The optional header is the first line and has `"format": "subcircuit.task/1"`, plus optionally
`name` (default: the file's stem), `metric` (the task's default metric, default `kl`),
`description` and `spans` (the span schema). Blank lines are skipped. The file must be UTF-8. Any problem is a `UserError` with
one line naming the file, the line number and the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from subcircuit.errors import UserError
from subcircuit.tasks.base import Task, context_length, encode, make_task, pad_id
from subcircuit.tasks.spans import Piece, check_schema, span_ids, token_counts

FORMAT = "subcircuit.task/1"
EXAMPLE_FIELDS = ("clean", "corrupted", "correct", "wrong")
HEADER_FIELDS = ("format", "name", "metric", "description", "spans")
OPTIONAL_FIELDS = ("spans", "split")
SPLITS = ("discovery", "eval")

Prompt = str | tuple[int, ...]
Answer = str | int


@dataclass(frozen=True)
class TaskExample:
    """One line of a task file: prompts as text (or token ids) and single-token answers."""

    clean: Prompt
    corrupted: Prompt
    correct: tuple[Answer, ...]
    wrong: tuple[Answer, ...]
    spans: tuple[Piece, ...] | None = None  # the clean prompt cut into named spans (optional)
    split: str | None = None  # "discovery" or "eval" when the line marks it

    def to_json(self) -> dict[str, Any]:
        def prompt(p: Prompt) -> Any:
            return p if isinstance(p, str) else list(p)

        def answers(a: tuple[Answer, ...]) -> Any:
            return a[0] if len(a) == 1 else list(a)

        out = {
            "clean": prompt(self.clean),
            "corrupted": prompt(self.corrupted),
            "correct": answers(self.correct),
            "wrong": answers(self.wrong),
        }
        if self.spans is not None:
            out["spans"] = [list(p) for p in self.spans]
        if self.split is not None:
            out["split"] = self.split
        return out


@dataclass(frozen=True)
class TaskFile:
    """A parsed task file, not yet tokenized. `lines[i]` is the file line of `examples[i]`."""

    path: str
    name: str
    metric: str
    description: str
    examples: tuple[TaskExample, ...]
    lines: tuple[int, ...] = field(default=())
    spans: tuple[str, ...] = ()  # the header's span schema (empty: the first example's, if any)


class _Where:
    """Builds the one-line errors: 'file:line: field 'x': reason'."""

    def __init__(self, path: str, line: int, where: str | None = None) -> None:
        self.path, self.line = path, line
        self.where = where or f"task file {path}:{line}: "

    def error(self, reason: str, field_name: str | None = None) -> UserError:
        where = self.where
        return UserError(where + (f"field {field_name!r}: " if field_name else "") + reason)


def _is_ids(x: Any) -> bool:
    return isinstance(x, list) and len(x) > 0 and all(isinstance(i, int) and not isinstance(i, bool) for i in x)


def _prompt(obj: dict[str, Any], key: str, at: _Where) -> Prompt:
    value = obj[key]
    if isinstance(value, str):
        if not value:
            raise at.error("is empty", key)
        return value
    if _is_ids(value):
        return tuple(value)
    raise at.error("must be a non-empty string (or a list of token ids)", key)


def _answers(obj: dict[str, Any], key: str, at: _Where) -> tuple[Answer, ...]:
    value = obj[key]
    items = value if isinstance(value, list) else [value]
    if not items:
        raise at.error("is an empty list; give at least one answer", key)
    for a in items:
        if isinstance(a, bool) or not isinstance(a, str | int) or a == "":
            raise at.error("must be a non-empty string, a token id, or a list of them", key)
    return tuple(items)


def _parse_example(obj: Any, at: _Where) -> TaskExample:
    if not isinstance(obj, dict):
        raise at.error(f"expected a JSON object with fields {', '.join(EXAMPLE_FIELDS)}")
    extra = sorted(set(obj) - set(EXAMPLE_FIELDS) - set(OPTIONAL_FIELDS))
    if extra:
        raise at.error(f"unknown field {extra[0]!r}; valid: {', '.join(EXAMPLE_FIELDS + OPTIONAL_FIELDS)}")
    for key in EXAMPLE_FIELDS:
        if key not in obj:
            raise at.error("is missing", key)
    clean, corrupted = _prompt(obj, "clean", at), _prompt(obj, "corrupted", at)
    if isinstance(clean, str) != isinstance(corrupted, str):
        raise at.error("must be of the same kind as 'clean' (both text or both token ids)", "corrupted")
    return TaskExample(clean, corrupted, _answers(obj, "correct", at), _answers(obj, "wrong", at),
                       _spans(obj, at), _split(obj, at))


def _spans(obj: dict[str, Any], at: _Where) -> tuple[Piece, ...] | None:
    value = obj.get("spans")
    if value is None:
        return None
    ok = isinstance(value, list) and value and all(
        isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and p[0]
        and (isinstance(p[1], str) or (isinstance(p[1], int) and not isinstance(p[1], bool))) for p in value)
    if not ok:
        raise at.error("must be a non-empty list of [name, text] (or [name, token count]) pairs", "spans")
    return tuple((p[0], p[1]) for p in value)


def _split(obj: dict[str, Any], at: _Where) -> str | None:
    split = obj.get("split")
    if split is not None and split not in SPLITS:
        raise at.error(f"must be one of {', '.join(SPLITS)}, not {split!r}", "split")
    return split


def _parse_header(obj: dict[str, Any], at: _Where) -> dict[str, str]:
    extra = sorted(set(obj) - set(HEADER_FIELDS))
    if extra:
        raise at.error(f"unknown header field {extra[0]!r}; valid: {', '.join(HEADER_FIELDS)}")
    if obj["format"] != FORMAT:
        raise at.error(f"unsupported format {obj['format']!r}; expected {FORMAT!r}", "format")
    for key in ("name", "metric", "description"):
        if key in obj and not isinstance(obj[key], str):
            raise at.error("must be a string", key)
    if "spans" in obj and not (isinstance(obj["spans"], list) and obj["spans"]
                               and all(isinstance(s, str) and s for s in obj["spans"])):
        raise at.error("must be a non-empty list of span names", "spans")
    if "metric" in obj:
        from subcircuit.tasks.metrics import METRICS

        if obj["metric"] not in METRICS:
            raise at.error(f"unknown metric {obj['metric']!r}; valid: {', '.join(sorted(METRICS))}", "metric")
    return obj


def _line_of(data: bytes, offset: int) -> int:
    """The line number (from 1, as `str.splitlines` counts lines) of byte `offset` of `data`, whose
    bytes before `offset` are valid UTF-8."""
    return len((data[:offset].decode("utf-8") + "x").splitlines())


def read_task_file(path: str | Path) -> TaskFile:
    """Parse and check the structure of a task file (no model needed)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"task file {str(p)!r} does not exist" if not p.exists() else f"task file {str(p)!r} is not a file")
    data = p.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = _line_of(data, e.start)
        raise UserError(f"task file {p}:{line}: not UTF-8 text ({e.reason} at byte offset {e.start} of the file)") from None
    header: dict[str, str] = {}
    examples, lines = [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        at = _Where(str(p), lineno)
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise at.error(f"not valid JSON ({e.msg} at column {e.colno})") from None
        if isinstance(obj, dict) and "format" in obj:
            if examples or header:
                raise at.error("a header line (with 'format') may only be the first line")
            header = _parse_header(obj, at)
            continue
        examples.append(_parse_example(obj, at))
        lines.append(lineno)
    if not examples:
        raise UserError(f"task file {p}: has no examples (expected one JSON object per line with {', '.join(EXAMPLE_FIELDS)})")
    return TaskFile(
        path=str(p),
        name=header.get("name", p.stem),
        metric=header.get("metric", "kl"),
        description=header.get("description", ""),
        examples=tuple(examples),
        lines=tuple(lines),
        spans=tuple(header.get("spans", ())),
    )


# ------------------------------------------------------------------------------ tokenizing


def _tokens(prompt: Prompt, key: str, tok: Any, vocab: int, model: str, at: _Where) -> list[int]:
    if isinstance(prompt, str):
        if tok is None:
            raise at.error(f"is text but model {model!r} has no tokenizer; give a list of token ids", key)
        return encode(tok, prompt)
    bad = [i for i in prompt if not 0 <= i < vocab]
    if bad:
        raise at.error(f"token id {bad[0]} is outside the model's vocabulary (0..{vocab - 1})", key)
    return list(prompt)


def _answer_id(a: Answer, key: str, tok: Any, vocab: int, model: str, at: _Where) -> int:
    if isinstance(a, int):
        if not 0 <= a < vocab:
            raise at.error(f"token id {a} is outside the model's vocabulary (0..{vocab - 1})", key)
        return a
    if tok is None:
        raise at.error(f"{a!r} is text but model {model!r} has no tokenizer; give token ids", key)
    ids = tok(a, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise at.error(f"{a!r} is {len(ids)} tokens for {model}; answers must be single tokens", key)
    return int(ids[0])


def marks_split(tf: TaskFile) -> bool:
    """Whether any line of the file marks its split."""
    return any(ex.split is not None for ex in tf.examples)


def split_of(tf: TaskFile, split: str) -> TaskFile:
    """The file's lines of one split ("eval": the lines marked eval; "discovery": all others)."""
    pairs = [(ex, ln) for ex, ln in zip(tf.examples, tf.lines or range(1, len(tf.examples) + 1), strict=True)
             if (ex.split == "eval") == (split == "eval")]
    return replace(tf, examples=tuple(p[0] for p in pairs), lines=tuple(p[1] for p in pairs))


def eval_pool(path: str | Path, loaded: Any, n_discovery: int) -> Task | None:
    """The candidate evaluation prompts of a task file (see the module docstring): its "eval"
    lines when it marks a split, else the lines after the first `n_discovery`; None if none."""
    tf = read_task_file(path)
    if marks_split(tf):
        tf = split_of(tf, "eval")
    else:
        tf = replace(tf, examples=tf.examples[n_discovery:], lines=tf.lines[n_discovery:])
    tf = replace(tf, examples=tuple(replace(ex, split=None) for ex in tf.examples))
    return tokenize_task_file(tf, loaded) if tf.examples else None


def tokenize_task_file(tf: TaskFile, loaded: Any, n: int | None = None) -> Task:
    """Turn a parsed task file into a Task for `loaded`'s tokenizer (first n examples if given).
    A file that marks a split gives its discovery lines only (`split_of`)."""
    if marks_split(tf):
        tf = split_of(tf, "discovery")
        if not tf.examples:
            raise UserError(f"task file {tf.path}: every line is marked \"split\": \"eval\"; "
                            "mark some \"discovery\" (or leave them unmarked)")
    tok, vocab, n_ctx = getattr(loaded, "tokenizer", None), loaded.cfg.vocab_size, context_length(loaded)
    model = getattr(loaded, "name", "this model")
    clean, corrupted, correct, wrong, prompts, pieces, counts = [], [], [], [], [], [], []
    count = len(tf.examples) if n is None else min(n, len(tf.examples))
    marked = [ex.spans for ex in tf.examples[:count] if ex.spans is not None]
    schema = tf.spans or (tuple(p[0] for p in marked[0]) if marked else ())
    for ex, lineno in list(zip(tf.examples, tf.lines or range(1, len(tf.examples) + 1), strict=True))[:count]:
        at = _Where(tf.path, lineno)
        ci = _tokens(ex.clean, "clean", tok, vocab, model, at)
        xi = _tokens(ex.corrupted, "corrupted", tok, vocab, model, at)
        for key, ids in (("clean", ci), ("corrupted", xi)):
            if n_ctx is not None and len(ids) > n_ctx:
                raise at.error(f"is {len(ids)} tokens for {model}, longer than its context of {n_ctx} tokens", key)
        if len(ci) != len(xi):
            raise at.error(f"is {len(xi)} tokens for {model} but 'clean' is {len(ci)}; they must be equally long", "corrupted")
        if not ci:
            raise at.error(f"tokenizes to no tokens for {model}", "clean")
        clean.append(ci)
        corrupted.append(xi)
        correct.append([_answer_id(a, "correct", tok, vocab, model, at) for a in ex.correct])
        wrong.append([_answer_id(a, "wrong", tok, vocab, model, at) for a in ex.wrong])
        prompts.append(ex.clean if isinstance(ex.clean, str) else "")
        if schema:
            where = f"task file {tf.path}:{lineno}"
            if ex.spans is None:
                raise UserError(f"{where}: field 'spans' is missing; the task's schema is {list(schema)}")
            check_schema(ex.spans, schema, where)
            counts.append(token_counts(ex.spans, ci, (lambda t: encode(tok, t)) if tok is not None else None, where))
            pieces.append(ex.spans)
    task = make_task(
        tf.name,
        clean,
        corrupted,
        correct,
        wrong,
        pad=pad_id(tok),
        metric=tf.metric,
        prompts=tuple(prompts),
        meta={"file": tf.path, "description": tf.description},
    )
    if not schema:
        return task
    return replace(task, span_names=tuple(schema), span_ids=span_ids(schema, pieces, counts, task.clean.shape[1]))


def load_task_file(path: str | Path, loaded: Any, n: int | None = None) -> Task:
    """Read, check and tokenize a JSONL task file for `loaded` (a LoadedModel): the Task."""
    return tokenize_task_file(read_task_file(path), loaded, n)


def save_task_file(
    examples: Iterable[TaskExample | dict[str, Any]],
    path: str | Path,
    *,
    name: str | None = None,
    metric: str | None = None,
    description: str | None = None,
) -> Path:
    """Write examples (TaskExample or dicts with the four fields) as a task file; a header line is
    written when name, metric or description is given. Returns the path."""
    p = Path(path)
    rows = []
    for i, ex in enumerate(examples, start=1):
        if isinstance(ex, dict):
            ex = _parse_example(ex, _Where(str(p), i, f"example {i} for task file {p}: "))
        rows.append(json.dumps(ex.to_json(), ensure_ascii=False))
    if not rows:
        raise UserError(f"no examples to write to task file {str(p)!r}")
    header = {k: v for k, v in (("name", name), ("metric", metric), ("description", description)) if v is not None}
    if header:
        rows.insert(0, json.dumps({"format": FORMAT, **header}, ensure_ascii=False))
    p.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return p
