"""JSONL task files: round trip, token-id files, and a one-line error for every kind of bad file."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch
from conftest import random_model
from word_tokenizer import id_model, word_model, word_tokenizer

from subcircuit.cli import run_cli
from subcircuit.errors import UserError
from subcircuit.tasks import TaskExample, get_task, load_task_file, read_task_file, save_task_file

EXAMPLES = [
    TaskExample("When Mary and John went to the store, John gave a drink to",
                "When Lisa and Paul went to the store, Kevin gave a drink to", (" Mary",), (" John",)),
    TaskExample("So John is a really great friend, isn't", "So Mary is a really great friend, isn't",
                (" he",), (" she",)),
    TaskExample("When Anna and Tom went to the school, Tom gave a ring to",
                "When Jack and Emma went to the school, Sarah gave a ring to", (" Anna", " Mary"), (" Tom",)),
]


def _write(tmp_path, lines: list[str | dict], name: str = "t.jsonl"):
    p = tmp_path / name
    p.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return p


GOOD = {"clean": "When Mary and John went out, John thanked", "corrupted": "When Anna and Paul went out, Kevin thanked",
        "correct": " Mary", "wrong": " John"}


def test_round_trip(tmp_path):
    p = save_task_file(EXAMPLES, tmp_path / "mine.jsonl", metric="logit-diff", description="mixed")
    tf = read_task_file(p)
    assert tf.examples == tuple(EXAMPLES) and tf.name == "mine" and tf.metric == "logit-diff"
    assert tf.description == "mixed" and tf.lines == (2, 3, 4)
    # and again: saving what was read gives the same file
    p2 = save_task_file(tf.examples, tmp_path / "again.jsonl", metric="logit-diff", description="mixed")
    assert p2.read_text() == p.read_text()


def test_load_tokenizes_like_the_tokenizer(tmp_path):
    tok = word_tokenizer()
    task = load_task_file(save_task_file(EXAMPLES, tmp_path / "x.jsonl"), word_model())
    assert task.n == 3 and task.metric == "kl" and task.name == "x"
    for i, ex in enumerate(EXAMPLES):
        ids = tok(ex.clean)["input_ids"]
        assert task.clean[i, : len(ids)].tolist() == ids and int(task.positions[i]) == len(ids) - 1
        assert task.correct[i].tolist()[: len(ex.correct)] == [tok.convert_tokens_to_ids("Ġ" + a.strip()) for a in ex.correct]
    assert task.correct.shape == (3, 2) and task.correct[0, 1] == -1  # padded answer lists


def test_dict_examples_and_first_n(tmp_path):
    p = save_task_file([GOOD, GOOD], tmp_path / "d.jsonl")
    assert read_task_file(p).examples[0] == TaskExample(GOOD["clean"], GOOD["corrupted"], (" Mary",), (" John",))
    assert get_task(str(p), word_model(), n=1).n == 1


def test_token_id_file_for_models_without_tokenizer(tmp_path):
    p = _write(tmp_path, [{"clean": [0, 5, 9, 5], "corrupted": [0, 7, 9, 5], "correct": 9, "wrong": [3, 4]},
                          {"clean": [0, 1, 2], "corrupted": [0, 3, 2], "correct": [1], "wrong": 8}])
    task = load_task_file(p, id_model())
    assert task.clean.tolist() == [[0, 5, 9, 5], [0, 1, 2, 0]] and task.positions.tolist() == [3, 2]
    assert torch.equal(task.wrong, torch.tensor([[3, 4], [8, -1]]))
    assert read_task_file(p).examples[1].clean == (0, 1, 2)


def _error(tmp_path, lines, loaded=None, name: str = "t.jsonl") -> str:
    p = _write(tmp_path, lines, name)
    with pytest.raises(UserError) as e:
        load_task_file(p, loaded or word_model())
    msg = str(e.value)
    assert "\n" not in msg and name in msg
    return msg


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([GOOD, '{"clean": "a", "corrupted": '], ":2: not valid JSON"),
        ([GOOD, {k: v for k, v in GOOD.items() if k != "wrong"}], ":2: field 'wrong': is missing"),
        ([{**GOOD, "answer": "x"}], ":1: unknown field 'answer'"),
        ([{**GOOD, "correct": []}], ":1: field 'correct': is an empty list"),
        ([{**GOOD, "clean": 3}], ":1: field 'clean': must be a non-empty string"),
        (["[1, 2]"], ":1: expected a JSON object"),
        ([GOOD, {"format": "subcircuit.task/1"}], ":2: a header line"),
        ([{"format": "subcircuit.task/9"}, GOOD], ":1: field 'format': unsupported format"),
        ([{"format": "subcircuit.task/1", "metric": "kll"}, GOOD], ":1: field 'metric': unknown metric 'kll'"),
        ([GOOD, "", {**GOOD, "corrupted": "When Anna and Paul went out, Kevin Kevin thanked"}],
         ":3: field 'corrupted': is 10 tokens for tiny-words but 'clean' is 9"),
        ([{**GOOD, "correct": " Mary John"}], ":1: field 'correct': ' Mary John' is 2 tokens for tiny-words"),
        ([{**GOOD, "wrong": [" John", " he she"]}], ":1: field 'wrong': ' he she' is 2 tokens"),
    ],
)
def test_errors_name_file_line_and_field(tmp_path, lines, expected):
    assert expected in _error(tmp_path, lines)


def test_empty_file(tmp_path):
    assert "has no examples" in _error(tmp_path, [""])
    assert "has no examples" in _error(tmp_path, [{"format": "subcircuit.task/1"}], name="h.jsonl")


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_task_file(tmp_path / "nope.jsonl")


def test_text_file_on_model_without_tokenizer(tmp_path):
    msg = _error(tmp_path, [GOOD], loaded=id_model())
    assert ":1: field 'clean': is text but model 'tiny-ids' has no tokenizer" in msg


def test_token_ids_outside_vocabulary(tmp_path):
    msg = _error(tmp_path, [{"clean": [0, 500], "corrupted": [0, 1], "correct": 1, "wrong": 2}], loaded=id_model())
    assert ":1: field 'clean': token id 500 is outside the model's vocabulary (0..63)" in msg


def test_save_rejects_bad_examples(tmp_path):
    with pytest.raises(UserError, match="example 1 .*field 'wrong': is missing"):
        save_task_file([{"clean": "a", "corrupted": "b", "correct": " a"}], tmp_path / "bad.jsonl")


# ------------------------------------------------------------------------------ prompts longer than the context


def _short_context(loaded, n_ctx: int):
    """`loaded` with a context of n_ctx tokens."""
    return dataclasses.replace(loaded, model=random_model(dataclasses.replace(loaded.cfg, n_ctx=n_ctx)))


def test_prompt_longer_than_the_context_is_refused_with_its_line(tmp_path):
    ok = {"clean": [0, 1, 2], "corrupted": [0, 3, 2], "correct": 1, "wrong": 2}
    long = {"clean": list(range(1, 50)), "corrupted": [5, *range(2, 50)], "correct": 1, "wrong": 2}
    msg = _error(tmp_path, [ok, "", long], loaded=id_model())  # id_model: n_ctx 48
    assert msg.endswith(":3: field 'clean': is 49 tokens for tiny-ids, longer than its context of 48 tokens")
    # the corrupted prompt alone too long: named before the two lengths are compared
    msg = _error(tmp_path, [{**long, "clean": list(range(1, 49))}], loaded=id_model())
    assert msg.endswith(":1: field 'corrupted': is 49 tokens for tiny-ids, longer than its context of 48 tokens")
    # exactly the context fits
    task = load_task_file(_write(tmp_path, [{**long, "clean": list(range(48)), "corrupted": list(range(1, 49))}]),
                          id_model())
    assert task.clean.shape == (1, 48)


def test_text_prompt_longer_than_the_context(tmp_path):
    msg = _error(tmp_path, [GOOD], loaded=_short_context(word_model(), 8))
    assert msg.endswith(":1: field 'clean': is 9 tokens for tiny-words, longer than its context of 8 tokens")


def test_built_in_task_longer_than_the_context():
    with pytest.raises(UserError) as e:
        get_task("ioi", _short_context(word_model(), 8), n=4)
    msg = str(e.value)
    assert "\n" not in msg
    assert re.fullmatch(r"task 'ioi' example \d+ is \d+ tokens for tiny-words, longer than its context of 8 tokens", msg)


def test_cli_refuses_a_prompt_longer_than_the_context(tmp_path, capsys):
    """As a new user meets it: toy-induction-2l reads 64 tokens; exit 2 and one line (it was exit 1
    with a RuntimeError from the embedding)."""
    p = _write(tmp_path, [{"clean": list(range(1, 71)), "corrupted": [3, *range(2, 71)], "correct": 5, "wrong": 6}],
               name="long.jsonl")
    rc = run_cli(["discover", "-m", "toy-induction-2l", "-t", str(p), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [f"error: task file {p}:1: field 'clean': is 70 tokens for toy-induction-2l, "
                               "longer than its context of 64 tokens"]
    assert not (tmp_path / "out" / "circuit.json").exists()


# ------------------------------------------------------------------------------ not UTF-8


def test_non_utf8_file_names_the_line(tmp_path):
    p = tmp_path / "latin1.jsonl"
    first = json.dumps({"clean": [0, 1], "corrupted": [0, 2], "correct": 1, "wrong": 2}).encode()
    p.write_bytes(first + b"\n\n" + '{"clean": "Zoë"}'.encode("latin-1") + b"\n")
    with pytest.raises(UserError) as e:
        read_task_file(p)
    offset = len(first) + 2 + len('{"clean": "Zo')
    assert str(e.value) == f"task file {p}:3: not UTF-8 text (invalid continuation byte at byte offset {offset} of the file)"


def test_cli_non_utf8_file(tmp_path, capsys):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b'{"clean": [1, 2], "corrupted": [1, 3], "correct": 5, "wrong": 6}\r\n\xff\n')
    rc = run_cli(["discover", "-m", "toy-induction-2l", "-t", str(p), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith(f"error: task file {p}:2: not UTF-8 text (")
