"""The bad-input catalogue of docs/reliability.md, through the real command line.

Every case: exit code 2, exactly one line on stderr (`error: ...`) naming the bad value, nothing
on stdout, no traceback; `--debug` shows the traceback. Tiny shipped models only (toy-induction-2l:
29 edges at heads-qkv; tracr-reverse), so each case takes well under a second after the first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from subcircuit import cli

TOY = ["--model", "toy-induction-2l", "--task", "induction", "--n-examples", "4"]


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.run_cli([str(a) for a in argv])
    c = capsys.readouterr()
    return rc, c.out, c.err


def fails(capsys, *argv, needle: str | tuple[str, ...]) -> str:
    """Run the CLI; assert exit 2, one stderr line `error: ...` containing `needle`, no traceback."""
    rc, out, err = run(capsys, *argv)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, (rc, out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err + out
    for n in _flat(needle):
        assert n in lines[0], lines[0]
    return lines[0]


def _flat(needle) -> list[str]:
    return [needle] if isinstance(needle, str) else [n for x in needle for n in _flat(x)]


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> Path:
    """A finished run on toy-induction-2l (random scores: instant) to hand-edit."""
    out = tmp_path_factory.mktemp("toy") / "run"
    assert cli.run_cli(["discover", *TOY, "--method", "random", "--edges", "5", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def word_folder(tmp_path_factory) -> Path:
    """A tiny transformers GPT-2 with the word-level test tokenizer, saved as a local model folder
    (so that text task files are tokenized by a real tokenizer, offline)."""
    from transformers import GPT2Config, GPT2LMHeadModel
    from word_tokenizer import word_tokenizer

    tok = word_tokenizer()
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=16, n_layer=1, n_head=2)
    folder = tmp_path_factory.mktemp("words") / "tiny-words"
    GPT2LMHeadModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


GOOD_TEXT = {"clean": "When Mary and John went out, John thanked", "corrupted": "When Anna and Paul went out, Kevin thanked",
             "correct": " Mary", "wrong": " John"}
GOOD_IDS = {"clean": [0, 5, 9, 5], "corrupted": [0, 7, 9, 5], "correct": 9, "wrong": 3}


# ------------------------------------------------------------------------------ names


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--model", "toy-induction-3l", "--task", "induction"], ("unknown model 'toy-induction-3l'",
                                                                   "did you mean 'toy-induction-2l'")),
        (["--model", "toy-induction-2l", "--task", "inductoin"], ("unknown task 'inductoin'", "did you mean 'induction'")),
        ([*TOY, "--method", "eapp"], ("unknown method 'eapp'", "did you mean 'eap'")),
        ([*TOY, "--metric", "logit_diff"], ("unknown metric 'logit_diff'", "did you mean 'logit-diff'")),
        ([*TOY, "--ablation", "mean2"], ("unknown ablation 'mean2'", "did you mean 'mean'")),
        ([*TOY, "--granularity", "head"], ("unknown granularity 'head'", "did you mean 'heads'")),
        ([*TOY, "--device", "tpu"], "unknown device 'tpu'"),
    ],
)
def test_unknown_names_suggest_the_closest(capsys, tmp_path, args, needle):
    fails(capsys, "discover", *args, "--out", tmp_path / "o", needle=needle)


def test_debug_shows_the_traceback(capsys, tmp_path):
    rc, _, err = run(capsys, "discover", *TOY, "--method", "eapp", "--out", tmp_path / "o", "--debug")
    assert rc == 2 and "Traceback (most recent call last)" in err and err.strip().splitlines()[-1].startswith("error:")


# ------------------------------------------------------------------------------ task files


@pytest.mark.parametrize(
    ("rows", "needle"),
    [
        ([GOOD_IDS, '{"clean": [0, 1], "corrupted": '], ":2: not valid JSON"),
        ([GOOD_IDS, {k: v for k, v in GOOD_IDS.items() if k != "wrong"}], ":2: field 'wrong': is missing"),
        ([], "has no examples"),
        ([""], "has no examples"),
        ([{**GOOD_IDS, "corrupted": [0, 7, 9]}], ":1: field 'corrupted': is 3 tokens for toy-induction-2l but 'clean' is 4"),
        ([{**GOOD_IDS, "correct": 9999}], ":1: field 'correct': token id 9999 is outside the model's vocabulary"),
        ([GOOD_TEXT], ":1: field 'clean': is text but model 'toy-induction-2l' has no tokenizer"),
        ([{**GOOD_IDS, "answer": 1}], ":1: unknown field 'answer'"),
    ],
)
def test_malformed_task_files(capsys, tmp_path, rows, needle):
    path = _write_jsonl(tmp_path / "task.jsonl", rows)
    fails(capsys, "discover", "--model", "toy-induction-2l", "--task", path, "--out", tmp_path / "o",
          needle=("task.jsonl", needle))


def test_missing_task_file(capsys, tmp_path):
    fails(capsys, "discover", "--model", "toy-induction-2l", "--task", tmp_path / "nope.jsonl", "--out", tmp_path / "o",
          needle="does not exist")


@pytest.mark.parametrize(
    ("row", "needle"),
    [
        ({**GOOD_TEXT, "corrupted": "When Anna and Paul went out, Kevin Kevin thanked"},
         ":1: field 'corrupted': is 10 tokens for tiny-words but 'clean' is 9; they must be equally long"),
        ({**GOOD_TEXT, "correct": " Mary John"}, ":1: field 'correct': ' Mary John' is 2 tokens for tiny-words; "
                                                 "answers must be single tokens"),
    ],
)
def test_text_task_files_checked_with_the_models_tokenizer(capsys, tmp_path, word_folder, row, needle):
    path = _write_jsonl(tmp_path / "text.jsonl", [row])
    fails(capsys, "discover", "--model", word_folder, "--task", path, "--out", tmp_path / "o", needle=needle)


def test_good_text_task_file_runs_on_a_local_folder_model(capsys, tmp_path, word_folder):
    path = _write_jsonl(tmp_path / "text.jsonl", [GOOD_TEXT, GOOD_TEXT])
    rc, _, err = run(capsys, "discover", "--model", word_folder, "--task", path, "--method", "random", "--out",
                     tmp_path / "o")
    assert rc == 0, err


# ------------------------------------------------------------------------------ numbers


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--threshold", "nan"], "--threshold nan is invalid; expected a number >= 0"),
        (["--threshold", "-0.5"], "--threshold -0.5 is invalid"),
        (["--threshold", "nan", "--method", "eap"], "--threshold nan is invalid"),
        (["--edges", "0"], "--edges 0 is invalid; expected at least 1"),
        (["--edges", "-3", "--method", "eap"], "--edges -3 is invalid"),
        (["--edges", "100000"], "--edges 100000 is larger than the graph (29 edges)"),
        (["--edges", "100000", "--method", "eap"], "--edges 100000 is invalid; expected 1..29"),
        (["--edges", "30", "--method", "edge-pruning"], "--edges 30 is invalid; expected 1..29"),
        (["--sparsity", "1.5", "--method", "eap"], "--sparsity 1.5 is invalid"),
        (["--n-examples", "0"], "--n-examples 0 is invalid; expected at least 1"),
        (["--train-steps", "0", "--method", "edge-pruning"], "--train-steps 0 is invalid; expected at least 1"),
        (["--threshold", "abc"], "Invalid value for '--threshold'"),
    ],
)
def test_bad_numbers(capsys, tmp_path, args, needle):
    fails(capsys, "discover", *TOY, *args, "--out", tmp_path / "o", needle=needle)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--thresholds", "0.1,nan"], "threshold nan is invalid"),
        (["--thresholds", "0.1,-1"], "threshold -1.0 is invalid"),
        (["--thresholds", "0.1,x"], "--thresholds: 'x' is not a float"),
        (["--method", "eap", "--sizes", "0"], "--sizes: 0 is invalid; expected circuit sizes 1..29"),
        (["--method", "eap", "--sizes", "5,100"], "--sizes: 100 is invalid"),
    ],
)
def test_sweep_bad_numbers(capsys, tmp_path, args, needle):
    fails(capsys, "sweep", *TOY, *args, "--out", tmp_path / "s", needle=needle)


# ------------------------------------------------------------------------------ circuit and reference files


def _edit(toy_run: Path, tmp_path: Path, change) -> Path:
    d = json.loads((toy_run / "circuit.json").read_text())
    change(d)
    (tmp_path / "edited").mkdir()
    (tmp_path / "edited" / "circuit.json").write_text(json.dumps(d))
    return tmp_path / "edited"


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda d: d["edges"][0].update(edge="a0.h7->logits"), ("unknown sender 'a0.h7'", "did you mean")),
        (lambda d: d["edges"][0].update(edge="a0.h0->a0.h1<q>"), "does not exist: a0.h0 is not computed before"),
        (lambda d: d["edges"][0].update(edge="a0.h0=>logits"), "malformed edge name 'a0.h0=>logits'"),
        (lambda d: d["edges"].append(dict(d["edges"][3])), "is listed twice"),
        (lambda d: d.pop("metric"), "missing field(s) ['metric']"),
        (lambda d: d.update(format="subcircuit.circuit/9"), "format 'subcircuit.circuit/9' is not supported"),
        (lambda d: d["edges"][0].update(score="high"), "has no numeric 'score'"),
        (lambda d: d["edges"][0].update(score=float("nan")), "has a non-finite score nan"),
        (lambda d: d["edges"][0].pop("in_circuit"), "has no boolean 'in_circuit'"),
        (lambda d: d.update(params=[1, 2]), "field 'params' must be an object"),
        (lambda d: d.update(edges={"a": 1}), "'edges' must be a list"),
    ],
)
def test_hand_edited_circuit_file(capsys, tmp_path, toy_run, change, needle):
    folder = _edit(toy_run, tmp_path, change)
    fails(capsys, "evaluate", folder, needle=needle)


def test_truncated_circuit_file(capsys, tmp_path, toy_run):
    (tmp_path / "cut").mkdir()
    text = (toy_run / "circuit.json").read_text()
    (tmp_path / "cut" / "circuit.json").write_text(text[: len(text) // 2])
    fails(capsys, "evaluate", tmp_path / "cut", needle=("not valid JSON", "was the file truncated?"))
    (tmp_path / "cut" / "circuit.json").write_bytes(b"\xff\xfe garbage")
    fails(capsys, "evaluate", tmp_path / "cut", needle="not UTF-8")


def test_missing_circuit_file(capsys, tmp_path):
    fails(capsys, "evaluate", tmp_path / "nothing-here", needle="nothing-here")


@pytest.mark.parametrize(
    ("edges", "needle"),
    [
        (["a1.h0->logits", "a1.h0->logits"], "edge 'a1.h0->logits' is listed twice"),
        (["a1.h9->logits"], ("unknown sender 'a1.h9'", "did you mean")),
        (["a0.h0->a1.h5<q>"], ("unknown receiver 'a1.h5<q>'", "did you mean")),
        (["a1.h0->logitz"], "malformed node name 'logitz'"),
    ],
)
def test_bad_reference_file(capsys, tmp_path, toy_run, edges, needle):
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps({"model": "toy-induction-2l", "edges": edges}))
    fails(capsys, "evaluate", toy_run, "--against", ref, needle=("reference 'ref'", needle))


def test_unknown_reference_name(capsys, toy_run):
    fails(capsys, "evaluate", toy_run, "--against", "tracr-reverce", needle="did you mean 'tracr-reverse'")


# ------------------------------------------------------------------------------ output folders


def test_discover_refuses_a_folder_holding_a_run(capsys, toy_run):
    fails(capsys, "discover", *TOY, "--method", "random", "--out", toy_run,
          needle=("already holds a run", "--overwrite"))


def test_sweep_refuses_a_folder_holding_a_sweep(capsys, tmp_path):
    args = ["sweep", *TOY, "--method", "random", "--sizes", "3", "--out", tmp_path / "s"]
    rc, _, err = run(capsys, *args)
    assert rc == 0, err
    fails(capsys, *args, needle=("already holds a sweep", "--overwrite or --resume"))
    assert run(capsys, *args, "--overwrite")[0] == 0


def test_resume_of_a_folder_without_a_run(capsys, tmp_path):
    fails(capsys, "discover", "--resume", tmp_path, needle="nothing to resume")


def test_resume_with_a_damaged_checkpoint(capsys, tmp_path):
    (tmp_path / "training-checkpoint.safetensors").write_bytes(b"\x00" * 40)
    fails(capsys, "discover", "--resume", tmp_path, needle="is damaged")


# ------------------------------------------------------------------------------ memory and devices


def test_model_too_large_for_the_free_memory_is_refused_unless_forced(capsys, tmp_path, monkeypatch):
    import subcircuit.runs.memory

    monkeypatch.setattr(subcircuit.runs.memory, "free_bytes", lambda device="cpu": 200_000)
    line = fails(capsys, "discover", *TOY, "--method", "random", "--out", tmp_path / "o",
                 needle=("model 'toy-induction-2l' needs about", "but only 0.2 MB is free on cpu", "--force"))
    assert "4 examples × 32 tokens" in line
    assert not (tmp_path / "o").exists()  # refused before anything was loaded or written
    fails(capsys, "sweep", *TOY, "--method", "random", "--out", tmp_path / "s", needle="needs about")
    rc, _, err = run(capsys, "discover", *TOY, "--method", "random", "--out", tmp_path / "o", "--force")
    assert rc == 0, err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_cuda_without_a_gpu(capsys, tmp_path):
    fails(capsys, "discover", *TOY, "--device", "cuda", "--out", tmp_path / "o",
          needle=("device 'cuda'", "no CUDA GPU is available", "--device cpu"))


# ------------------------------------------------------------------------------ through a real process


def test_real_process_one_line_and_no_traceback(tmp_path):
    """The console entry point in a fresh process: bad task file, offline Hub id."""
    bad = _write_jsonl(tmp_path / "bad.jsonl", [GOOD_IDS, "{not json"])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    for args, needle in [
        (["--model", "toy-induction-2l", "--task", str(bad)], "bad.jsonl:2: not valid JSON"),
        (["--model", "someone/no-such-model", "--task", "induction"], "'someone/no-such-model' is not available offline"),
    ]:
        p = subprocess.run([sys.executable, "-m", "subcircuit", "discover", *args, "--out", str(tmp_path / "o")],
                           capture_output=True, text=True, timeout=600, env=env)
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert p.returncode == 2 and len(lines) == 1 and needle in lines[0], p.stderr
        assert "Traceback" not in p.stderr + p.stdout
