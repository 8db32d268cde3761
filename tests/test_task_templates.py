"""Task templates: one-token fillers, balanced slot orders, the corruption rule, the JSONL file."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from subcircuit.errors import UserError
from subcircuit.tasks.files import read_task_file
from subcircuit.tasks.templates import generate_examples, read_template, write_task_file


class SplitTokenizer:
    """Words (with their leading space) and punctuation are tokens; words over 7 letters are two."""

    def __call__(self, text: str, add_special_tokens: bool = True):
        ids = []
        for w in re.findall(r" ?[A-Za-z]+| ?[^A-Za-z ]", text):
            ids += [hash(w) % 1000] * (2 if len(w.strip()) > 7 else 1)
        return {"input_ids": ids}


IOI = '''
name = "my-ioi"
metric = "logit-diff"
template = "When {A} and {B} went to the {PLACE}, {B} gave a {OBJECT} to"
correct = " {A}"
wrong = " {B}"
balance = ["A", "B"]
[slots]
A = "names"
B = "names"
PLACE = ["store", "park", "supermarket"]
OBJECT = ["ball", "book"]
[lists]
names = ["Mary", "John", "Anna", "Paul", "Christopher", "Alexandra", "Tom"]
[corruption]
resample = ["A", "B"]
'''


def template(tmp_path, text: str = IOI):
    p = tmp_path / "t.toml"
    p.write_text(text)
    return read_template(p)


def test_generates_balanced_one_token_pairs_with_new_names(tmp_path) -> None:
    tpl = template(tmp_path)
    examples, stats = generate_examples(tpl, SplitTokenizer(), 40, seed=1)
    assert len(examples) == 40
    assert stats["kept"]["names"] == (5, 7)  # Christopher and Alexandra are two tokens
    assert stats["kept"]["PLACE"] == (2, 3)
    assert sorted(stats["orders"].values()) == [20, 20]  # ABBA and BABA in equal numbers
    tok = SplitTokenizer()
    first = Counter()
    for ex in examples:
        assert "Christopher" not in ex.clean + ex.corrupted and "supermarket" not in ex.clean
        a, b = ex.correct[0].strip(), ex.wrong[0].strip()
        m = re.match(r"When (\w+) and (\w+) went to the \w+, (\w+) gave", ex.clean)
        assert m and {m.group(1), m.group(2)} == {a, b} and m.group(3) == b
        first[m.group(1) == a] += 1
        names = set(re.findall(r"[A-Z]\w+", ex.corrupted)) - {"When"}
        assert not names & {a, b}  # corruption = new names
        assert len(tok(ex.clean)["input_ids"]) == len(tok(ex.corrupted)["input_ids"])
    assert first[True] == first[False] == 20


def test_writes_the_task_file_that_files_reads(tmp_path) -> None:
    tpl = template(tmp_path)
    examples, _ = generate_examples(tpl, SplitTokenizer(), 6)
    tf = read_task_file(write_task_file(tpl, examples, tmp_path / "t.jsonl"))
    assert tf.name == "my-ioi" and tf.metric == "logit-diff" and tf.examples == tuple(examples)


def test_a_corrupted_template_per_template(tmp_path) -> None:
    text = IOI.replace('resample = ["A", "B"]', 'template = "When {A} and {B} went to the {PLACE}, {A} gave a {OBJECT} to"')
    examples, stats = generate_examples(template(tmp_path, text), SplitTokenizer(), 10)
    for ex in examples:
        b = ex.wrong[0].strip()
        assert ex.clean.split(", ")[1].startswith(b) and not ex.corrupted.split(", ")[1].startswith(b)


@pytest.mark.parametrize("edit, message", [
    (("{OBJECT} to", "{THING} to"), "slot {THING}"),
    (('resample = ["A", "B"]', ""), "[corruption] needs"),
    (('A = "names"', 'A = "people"'), "list 'people'"),
    (('balance = ["A", "B"]', 'balance = ["A"]'), "'balance' names two slots"),
    (("name = ", "colour = 3\nname = "), "unknown key"),
])
def test_bad_templates_are_one_line_errors(tmp_path, edit, message) -> None:
    with pytest.raises(UserError) as e:
        template(tmp_path, IOI.replace(*edit))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_too_few_one_token_words_is_an_error(tmp_path) -> None:
    text = IOI.replace('names = ["Mary", "John", "Anna", "Paul", "Christopher", "Alexandra", "Tom"]',
                       'names = ["Mary", "John", "Christopher"]')
    with pytest.raises(UserError, match="keeps 2 one-token words of 3"):
        generate_examples(template(tmp_path, text), SplitTokenizer(), 4)
