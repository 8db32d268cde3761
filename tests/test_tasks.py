"""Built-in tasks: deterministic generation, batches that line up, answers that make sense."""

from __future__ import annotations

import json

import pytest
import torch
from word_tokenizer import id_model, word_model, word_tokenizer

from subcircuit.errors import UserError
from subcircuit.tasks import (
    TASKS,
    Task,
    full_model_scores,
    get_task,
    greater_than,
    list_tasks,
    meets_criterion,
    performance,
)
from subcircuit.tasks.base import make_task
from subcircuit.tasks.induction import build_induction

TEXT_TASKS = ["ioi", "greater-than", "docstring", "gendered-pronoun"]


def _loaded(name: str, **kw):
    return id_model() if name == "induction" else word_model(**kw)


def _build(name: str, n: int = 12, seed: int = 0, **kw) -> Task:
    return get_task(name, _loaded(name, **kw), n=n, seed=seed)


def _same(a: Task, b: Task) -> bool:
    return all(
        torch.equal(getattr(a, f), getattr(b, f)) for f in ("clean", "corrupted", "positions", "correct", "wrong")
    )


@pytest.mark.parametrize("name", [*TEXT_TASKS, "induction"])
def test_generation_is_deterministic(name):
    assert _same(_build(name, seed=3), _build(name, seed=3))
    assert not _same(_build(name, seed=3), _build(name, seed=4))


@pytest.mark.parametrize("seed", [0, 7])
@pytest.mark.parametrize("name", [*TEXT_TASKS, "induction"])
def test_batches_line_up(name, seed):
    loaded = _loaded(name)
    task = get_task(name, loaded, n=20, seed=seed)
    vocab = loaded.cfg.vocab_size
    b, p = task.clean.shape
    assert b == 20 and task.corrupted.shape == (b, p)
    assert task.positions.shape == (b,) and int(task.positions.max()) == p - 1  # right padding only
    for i in range(b):
        pos = int(task.positions[i])
        pad = task.clean[i, pos + 1 :]
        assert (pad == pad[:1]).all() if len(pad) else True  # after the prompt: only padding
        assert torch.equal(task.clean[i, pos + 1 :], task.corrupted[i, pos + 1 :])
        good = set(task.correct[i][task.correct[i] >= 0].tolist())
        bad = set(task.wrong[i][task.wrong[i] >= 0].tolist())
        assert good and bad and not good & bad
        assert max(good | bad) < vocab and int(task.clean[i].max()) < vocab
    assert (task.clean != task.corrupted).any(dim=1).all()  # every pair contrasts


def test_task_validates_shapes():
    with pytest.raises(ValueError, match="clean has 3 tokens, corrupted 2"):
        make_task("x", [[1, 2, 3]], [[1, 2]], [[1]], [[2]])


def test_ioi_answers_are_the_names():
    tok = word_tokenizer()
    task = _build("ioi", n=16)
    for i in range(task.n):
        row = task.clean[i, : int(task.positions[i]) + 1].tolist()
        io, s = int(task.correct[i, 0]), int(task.wrong[i, 0])
        assert row.count(io) == 1 and row.count(s) == 2, tok.decode(row)
        corrupted = task.corrupted[i, : int(task.positions[i]) + 1]
        assert int((corrupted != torch.tensor(row)).sum()) == 3  # IO, S1, S2 replaced ("ABC")
        assert io not in corrupted.tolist() or s not in corrupted.tolist()


def test_greater_than_digit_variant():
    tok = word_tokenizer()
    task = _build("greater-than", n=16)
    assert task.meta["variant"] == "digit"
    digit = {tok.convert_tokens_to_ids(str(d)): d for d in range(10)}
    for i, prompt in enumerate(task.prompts):
        t = int(prompt.split(" to the year")[0][-2])  # start year's tens digit
        assert 1 <= t <= 8
        assert sorted(digit[x] for x in task.correct[i].tolist() if x >= 0) == list(range(t + 1, 10))
        assert sorted(digit[x] for x in task.wrong[i].tolist() if x >= 0) == list(range(t))
        assert "01 to the year" in tok.decode(task.corrupted[i, : int(task.positions[i]) + 1].tolist())


def test_greater_than_two_digit_variant():
    tok = word_tokenizer(two_digit=True)
    assert greater_than.detect_variant(tok) == "two-digit"
    task = _build("greater-than", n=8, two_digit=True)
    assert task.meta["variant"] == "two-digit"
    yy = {tok.convert_tokens_to_ids(f"{y:02d}"): y for y in range(100)}
    for i, prompt in enumerate(task.prompts):
        start = int(prompt.split(" to the year")[0][-2:])
        good = sorted(yy[x] for x in task.correct[i].tolist() if x >= 0)
        bad = sorted(yy[x] for x in task.wrong[i].tolist() if x >= 0)
        assert good == list(range(start + 1, 100)) and bad == list(range(start + 1))


def test_docstring_answer_is_next_def_argument():
    tok = word_tokenizer()
    task = _build("docstring", n=8)
    for i, prompt in enumerate(task.prompts):
        args = prompt.split("(self, ")[1].split(")")[0].split(", ")
        assert tok.decode([int(task.correct[i, 0])]) == " " + args[2]
        assert sorted(tok.decode([x]) for x in task.wrong[i].tolist()) == sorted(" " + a for a in (args[0], args[1], args[3]))


def test_gendered_pronoun_corrupted_flips_gender():
    tok = word_tokenizer()
    task = _build("gendered-pronoun", n=16)
    he, she = tok.convert_tokens_to_ids("Ġhe"), tok.convert_tokens_to_ids("Ġshe")
    for i in range(task.n):
        assert {int(task.correct[i, 0]), int(task.wrong[i, 0])} == {he, she}
        assert int((task.clean[i] != task.corrupted[i]).sum()) == 1  # only the name changes


def test_induction_on_raw_ids():
    loaded = id_model(bos=0)
    task = build_induction(loaded, 10, seed=1, half=8)
    assert task.clean.shape == (10, 1 + 8 + 7)
    assert (task.clean[:, 0] == 0).all() and (task.clean[:, 1:] > 0).all()  # BOS only at 0
    assert torch.equal(task.clean[:, 9:], task.clean[:, 1:8])  # second half repeats the first
    assert torch.equal(task.correct[:, 0], task.clean[:, 8])  # the answer is the first half's last token
    assert torch.equal(task.corrupted[:, 9:], task.clean[:, 9:])  # same second half ...
    assert not (task.corrupted[:, 1:9] == task.correct).any()  # ... but no earlier copy to read


def test_induction_fits_the_context():
    task = build_induction(id_model(bos=None), 4, seed=0, half=100)
    assert task.clean.shape[1] <= 48


def test_unknown_task_suggests():
    with pytest.raises(UserError, match="did you mean 'ioi'"):
        get_task("iio", word_model())


def test_text_task_needs_a_tokenizer():
    with pytest.raises(UserError, match="needs a model with a tokenizer"):
        get_task("ioi", id_model())


def test_full_model_scores_on_a_tiny_model():
    loaded = word_model()
    scores = full_model_scores(loaded.model, get_task("ioi", loaded, n=6))
    assert scores["kl"] == pytest.approx(0.0, abs=1e-6) and scores["kl@corrupted"] > 0
    assert 0 <= scores["accuracy"] <= 1


def test_list_tasks_covers_the_registry():
    rows = {r.name: r for r in list_tasks()}
    assert set(rows) == set(TASKS)
    for name in [*TEXT_TASKS, "induction"]:
        r = rows[name]
        assert r.default_metric == "kl" and r.natural_metric and r.default_model and r.default_n > 0
        assert r.works in (True, False, None)
    assert rows["ioi"].natural_metric == "logit-diff" and rows["greater-than"].natural_metric == "prob-diff"


def test_criterion():
    spec = TASKS["induction"]
    assert meets_criterion(spec, {"nll": 0.1, "nll@corrupted": 5.0}) is True
    assert meets_criterion(spec, {"nll": 1.0, "nll@corrupted": 5.0}) is False
    assert meets_criterion(TASKS["ioi"], {"accuracy": 0.95}) is True


@pytest.mark.slow
def test_smollm2_does_ioi_and_greater_than():
    from subcircuit.models import load

    loaded = load("smollm2-135m")
    ioi_scores = full_model_scores(loaded.model, get_task("ioi", loaded, n=32, seed=1), ["accuracy", "logit-diff"])
    assert ioi_scores["accuracy"] >= 0.9 and ioi_scores["logit-diff"] > 2
    gt = full_model_scores(loaded.model, get_task("greater-than", loaded, n=32, seed=1), ["prob-diff"])
    assert gt["prob-diff"] > 0.3


# ------------------------------------------------------------------------------ the shipped performance file
# `subcircuit tasks` shows "works" from src/subcircuit/data/task_performance.json. The fast test
# checks that the file covers every task and agrees with the tasks' criteria; the slow one
# measures every row again (the function scripts/measure_tasks.py writes it with) and compares.


def test_shipped_performance_covers_every_task_and_criterion():
    shipped = {(r["task"], r["model"]): r for r in performance.shipped_rows()}
    for task, model in performance.performance_targets():
        row = shipped.get((task, model))
        assert row is not None, f"no shipped performance of {task} on {model}: python scripts/measure_tasks.py " \
                                f"--tasks {task} --write"
        spec = TASKS[task]
        assert (row["n"], row["seed"]) == (performance.N, performance.SEED)
        assert row["criterion"] == (list(spec.criterion) if spec.criterion else None), task
        assert row["works"] == meets_criterion(spec, row["scores"]), task


@pytest.fixture(scope="module")
def loaded_models():
    from subcircuit.models import load

    cache = {}
    return lambda name: cache[name] if name in cache else cache.setdefault(name, load(name))


@pytest.mark.slow
@pytest.mark.parametrize(("task", "model"), performance.performance_targets())
def test_shipped_performance_is_current(task, model, loaded_models):
    """The shipped numbers equal a new measurement within performance.ABS_TOL."""
    shipped = performance.measured_performance(task, model)
    assert shipped is not None, f"rerun: python scripts/measure_tasks.py --tasks {task} --write"
    measured = performance.measure_performance(task, loaded_models(model), shipped["n"], shipped["seed"], model=model)
    diffs = performance.compare_rows(measured, shipped)
    assert not diffs, "; ".join(diffs) + f" (rerun: python scripts/measure_tasks.py --tasks {task} --write)"


def test_compare_rows():
    row = {"task": "ioi", "model": "m", "n": 64, "seed": 0, "criterion": ["accuracy", ">=", 0.9], "works": True,
           "scores": {"accuracy": 0.95, "kl": 0.0}, "seconds": 3.0}
    assert performance.compare_rows({**row, "seconds": 9.0, "scores": {"accuracy": 0.9505, "kl": 0.0}}, row) == []
    diffs = performance.compare_rows({**row, "works": False, "scores": {"accuracy": 0.8}}, row)
    assert diffs == ["works: shipped True, measured False", "scores['accuracy']: shipped 0.95, measured 0.8",
                     "scores['kl']: shipped 0.0, measured None"]


def test_write_performance_merges(tmp_path):
    path = tmp_path / "perf.json"
    a, b = {"task": "ioi", "model": "m", "scores": {}}, {"task": "docstring", "model": "m", "scores": {}}
    performance.write_performance([a, b], path)
    performance.write_performance([{**a, "scores": {"kl": 1.0}}], path)
    rows = json.loads(path.read_text())["rows"]
    assert [(r["task"], r["scores"]) for r in rows] == [("docstring", {}), ("ioi", {"kl": 1.0})]
