"""Held-out evaluation (issue 19): disjoint discovery and evaluation prompts for every built-in task
and for task files, held-out faithfulness in circuit.json, chunked measurement = unchunked."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from word_tokenizer import id_model, word_model

from subcircuit.errors import UserError
from subcircuit.evaluation.heldout import HELDOUT_KEYS, HeldOut
from subcircuit.graph import build_graph
from subcircuit.models import load
from subcircuit.runs.discover import discover
from subcircuit.runs.options import DiscoverOptions
from subcircuit.tasks import TASKS, get_metric, get_task
from subcircuit.tasks.split import heldout_task, prompt_keys, resample_task

TEXT_TASKS = ["ioi", "greater-than", "docstring", "gendered-pronoun"]


def _loaded(name: str):
    if name in TEXT_TASKS:
        return word_model(two_digit=name == "greater-than")
    if name == "induction":
        return id_model()
    return load(name)  # the tracr tasks run on their own shipped model


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_builtin_task_gives_disjoint_discovery_and_eval_prompts(name, caplog):
    loaded = _loaded(name)
    disc = get_task(name, loaded, 16, 0)
    with caplog.at_level(logging.WARNING):
        ev = heldout_task(name, loaded, disc, None, 0)
    assert ev is not None and ev.n > 0
    d, e = prompt_keys(disc), prompt_keys(ev)
    assert not set(d) & set(e), "a prompt is in both sets"
    assert len(set(e)) == len(e), "an evaluation prompt is repeated"
    if ev.n < 64:  # a task with few distinct prompts says so, in one line
        assert any("distinct prompts" in r.message and "\n" not in r.message for r in caplog.records)
    # the discovery set is what get_task gives (the run's circuit does not change)
    assert torch.equal(disc.clean, get_task(name, loaded, 16, 0).clean)


@pytest.mark.parametrize("seed", [0, 3])
def test_ioi_heldout_is_deterministic_and_disjoint_for_an_explicit_size(seed):
    loaded = word_model()
    disc = get_task("ioi", loaded, 8, seed)
    a, b = heldout_task("ioi", loaded, disc, 40, seed), heldout_task("ioi", loaded, disc, 40, seed)
    assert a.n == 40 and torch.equal(a.clean, b.clean)
    assert not set(prompt_keys(disc)) & set(prompt_keys(a))


def _write(path, rows, header=None):
    lines = ([json.dumps(header)] if header else []) + [json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _row(i: int, split: str | None = None) -> dict:
    r = {"clean": [0, 5 + i % 40, 9, 5 + i % 40], "corrupted": [0, 7, 9, 5 + i % 40], "correct": 9, "wrong": 3}
    return {**r, "split": split} if split else r


def test_task_file_split_marks_choose_the_sets(tmp_path):
    rows = [_row(i, "eval" if i % 3 == 0 else None) for i in range(12)]
    path = _write(tmp_path / "t.jsonl", rows)
    loaded = id_model()
    disc = get_task(path, loaded)
    ev = heldout_task(path, loaded, disc, None, 0)
    assert disc.n == 8 and ev.n == 4
    assert [r[1] for r in disc.clean.tolist()] == [5 + i for i in range(12) if i % 3]
    assert [r[1] for r in ev.clean.tolist()] == [5 + i for i in range(12) if i % 3 == 0]
    assert not set(prompt_keys(disc)) & set(prompt_keys(ev))


def test_task_file_without_marks_evaluates_on_the_lines_after_the_discovery_ones(tmp_path):
    rows = [_row(i) for i in range(10)] + [_row(0), _row(1)]  # two repeats of discovery prompts
    path = _write(tmp_path / "t.jsonl", rows)
    loaded = id_model()
    disc = get_task(path, loaded, 4)
    ev = heldout_task(path, loaded, disc, None, 0)
    assert ev.n == 6  # lines 5..10; the repeats of discovery lines are left out
    assert not set(prompt_keys(disc)) & set(prompt_keys(ev))
    assert heldout_task(path, loaded, get_task(path, loaded), None, 0) is None  # all lines are discovery


def test_too_few_prompts_is_one_line(tmp_path):
    path = _write(tmp_path / "t.jsonl", [_row(i) for i in range(6)])
    loaded = id_model()
    disc = get_task(path, loaded, 4)
    with pytest.raises(UserError) as e:
        heldout_task(path, loaded, disc, 5, 0)
    msg = str(e.value)
    assert "\n" not in msg and "only 2 distinct prompts" in msg and "--n-eval 5" in msg


def test_split_field_is_checked(tmp_path):
    path = _write(tmp_path / "t.jsonl", [_row(0, "test")])
    with pytest.raises(UserError, match=r"field 'split': must be one of discovery, eval, not 'test'"):
        get_task(path, id_model())
    path = _write(tmp_path / "u.jsonl", [_row(0, "eval")])
    with pytest.raises(UserError, match="every line is marked"):
        get_task(path, id_model())


def test_chunked_heldout_equals_one_chunk():
    loaded = id_model()
    disc = get_task("induction", loaded, 8, 0)
    ev = heldout_task("induction", loaded, disc, 20, 0)
    graph = build_graph(loaded.cfg, "heads-qkv")
    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(graph.shape, generator=g) < 0.5).float() * graph.exists
    a = HeldOut(loaded.model, graph, ev, get_metric("kl"), chunk=6).measure(mask)
    b = HeldOut(loaded.model, graph, ev, get_metric("kl"), chunk=100).measure(mask)
    for k in HELDOUT_KEYS:
        assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6)


def test_a_run_records_heldout_results_and_n_eval_0_turns_them_off():
    loaded = id_model()
    c = discover(loaded, "induction", DiscoverOptions.build("eap", edges=5, n_examples=8, n_eval=24), report=False)
    assert c.results["n_examples_heldout"] == 24 and set(HELDOUT_KEYS) <= set(c.results)
    c0 = discover(loaded, "induction", DiscoverOptions.build("eap", edges=5, n_examples=8, n_eval=0), report=False)
    assert not set(HELDOUT_KEYS) & set(c0.results)
    with pytest.raises(UserError, match=r"^--n-eval -1 is invalid"):
        DiscoverOptions.build("eap", n_eval=-1)


def test_resample_draws_from_the_discovery_prompts():
    task = get_task("induction", id_model(), 10, 0)
    r = resample_task(task, 5)
    assert r.n == 10 and set(prompt_keys(r)) <= set(prompt_keys(task))


def test_cli_discover_and_evaluate_show_heldout(capsys, tmp_path):
    from subcircuit import cli

    out = tmp_path / "run"
    rc = cli.run_cli(["discover", "--model", "toy-induction-2l", "--task", "induction", "--method", "eap",
                      "--edges", "5", "--n-examples", "8", "--n-eval", "0", "--out", str(out)])
    assert rc == 0 and "held-out" not in capsys.readouterr().out
    rc = cli.run_cli(["evaluate", str(out), "--n-eval", "16"])  # measured now: the run had none
    text = capsys.readouterr().out
    assert rc == 0 and "held-out (16 prompts)" in text
    rc = cli.run_cli(["evaluate", str(out), "--prompts", "discovery"])
    assert rc == 0 and "held-out" not in capsys.readouterr().out
    assert cli.run_cli(["evaluate", str(out), "--prompts", "test"]) == 2
    rc = cli.run_cli(["discover", "--model", "toy-induction-2l", "--task", "induction", "--method", "eap",
                      "--edges", "5", "--n-examples", "8", "--n-eval", "12", "--bootstrap", "2", "--out",
                      str(tmp_path / "b")])
    text = capsys.readouterr().out
    assert rc == 0 and "held-out (12 prompts)" in text and "bootstrap (2 reruns)" in text
