"""Interruption: a run stopped at any moment leaves a consistent checkpoint, and resuming it gives
the same circuit.json as an uninterrupted run (apart from timings). Tiny runs on toy-induction-2l."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from subcircuit.cli import run_cli
from subcircuit.discover import CHECKPOINT_FILE, DiscoverOptions, discover
from subcircuit.errors import UserError
from subcircuit.evaluation.sweep import sweep
from subcircuit.files import load_state


def strip(d: dict) -> dict:
    """A circuit (or summary) file without timings and run-cost counters."""
    out = {k: v for k, v in d.items() if k not in ("timings_s", "seconds")}
    if "results" in out:
        out["results"] = {k: v for k, v in d["results"].items() if k != "forward_configs"}
    return out


def read(path: Path) -> dict:
    return strip(json.loads(Path(path).read_text()))


def assert_same_run(a: dict, b: dict) -> None:
    """Same circuit, same decisions, same options; ACDC's measured scores equal up to float rounding
    (the fast path batches trials differently after a resume, and batched matmuls may round
    differently in the last bits)."""
    assert [(e["edge"], e["in_circuit"]) for e in a["edges"]] == [(e["edge"], e["in_circuit"]) for e in b["edges"]]
    assert [e["score"] for e in a["edges"]] == pytest.approx([e["score"] for e in b["edges"]], rel=1e-5, abs=1e-6)
    assert {k: v for k, v in a.items() if k != "edges"} == {k: v for k, v in b.items() if k != "edges"}


class Interrupt:
    """A progress callback that raises KeyboardInterrupt (as Ctrl-C would) at its n-th call."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, 0

    def __call__(self, done: int, total: int, what: str) -> None:
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt


@pytest.mark.parametrize("method", ["edge-pruning", "sp"])
def test_gate_training_resumes_to_the_same_circuit(tmp_path, method):
    opts = DiscoverOptions(method=method, edges=6, train_steps=14, n_examples=4, seed=3)
    discover("toy-induction-2l", "induction", opts, out=tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        discover("toy-induction-2l", "induction", opts, out=tmp_path / "cut", progress=Interrupt(13))
    assert not (tmp_path / "cut" / "circuit.json").exists()
    _, meta = load_state(tmp_path / "cut" / CHECKPOINT_FILE)
    assert meta["step"] == 10 and len(meta["history"]) == 10  # the last checkpoint before the interruption
    assert run_cli(["discover", "--resume", str(tmp_path / "cut")]) == 0
    assert read(tmp_path / "cut" / "circuit.json") == read(tmp_path / "whole" / "circuit.json")


def test_resume_with_other_options_is_refused(tmp_path):
    opts = DiscoverOptions(method="edge-pruning", edges=6, train_steps=12, n_examples=4)
    with pytest.raises(KeyboardInterrupt):
        discover("toy-induction-2l", "induction", opts, out=tmp_path, progress=Interrupt(11))
    other = DiscoverOptions(method="edge-pruning", edges=6, train_steps=12, n_examples=4, seed=1)
    with pytest.raises(UserError, match=r"options differ \(seed, train.seed\)"):
        discover("toy-induction-2l", "induction", other, out=tmp_path, resume=True)


def test_acdc_sweep_resumes_keeping_finished_runs(tmp_path):
    opts = DiscoverOptions(n_examples=4)
    taus = [0.001, 0.03, 1.0]
    whole = sweep("toy-induction-2l", "induction", opts, taus, out=tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):  # 29 edges per run: stops inside the second run
        sweep("toy-induction-2l", "induction", opts, taus, out=tmp_path / "cut", progress=Interrupt(40))
    first = tmp_path / "cut" / "tau-0.001" / "circuit.json"
    assert first.exists() and not (tmp_path / "cut" / "tau-0.03" / "circuit.json").exists()
    assert (tmp_path / "cut" / "tau-0.03" / "acdc-trace.json").exists()  # the unfinished run's checkpoint
    before = first.read_text()
    with pytest.raises(UserError, match="already holds a sweep"):
        sweep("toy-induction-2l", "induction", opts, taus, out=tmp_path / "cut")
    with pytest.raises(UserError, match=r"options differ \(thresholds\)"):
        sweep("toy-induction-2l", "induction", opts, [0.5], out=tmp_path / "cut", resume=True)
    assert run_cli(["sweep", "-m", "toy-induction-2l", "-t", "induction", "--n-examples", "4", "--thresholds",
                    "0.001,0.03,1", "-o", str(tmp_path / "cut"), "--resume"]) == 0
    assert first.read_text() == before  # finished runs are kept as they were
    for name in whole.circuits:
        assert_same_run(read(tmp_path / "cut" / name / "circuit.json"), read(tmp_path / "whole" / name / "circuit.json"))
    assert read(tmp_path / "cut" / "summary.json") == read(tmp_path / "whole" / "summary.json")


def test_score_sweep_redoes_only_missing_runs(tmp_path):
    opts = DiscoverOptions(method="eap", n_examples=4)
    sweep("toy-induction-2l", "induction", opts, sizes=[3, 8], out=tmp_path / "s")
    kept = (tmp_path / "s" / "edges-3" / "circuit.json").read_text()
    lost = tmp_path / "s" / "edges-8" / "circuit.json"
    expected = read(lost)
    lost.unlink()  # as if the sweep had been killed before writing it
    sweep("toy-induction-2l", "induction", opts, sizes=[3, 8], out=tmp_path / "s", resume=True)
    assert (tmp_path / "s" / "edges-3" / "circuit.json").read_text() == kept
    assert read(lost) == expected


def _env() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[1] / "src")
    return {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}


KILL_ARGS = ["--model", "toy-induction-2l", "--task", "induction", "--n-examples", "2", "--method", "edge-pruning",
             "--edges", "6", "--train-steps", "60", "--seed", "1"]  # long enough (seconds) to be killed mid-run


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("whole") / "run"
    assert run_cli(["discover", *KILL_ARGS, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_process_resumes(tmp_path, sig, uninterrupted):
    """A real process killed (SIGKILL: no cleanup at all; SIGINT: Ctrl-C) during edge pruning: no
    half-written file, and `--resume` finishes with the uninterrupted run's circuit."""
    cmd = [sys.executable, "-m", "subcircuit", "discover", *KILL_ARGS, "--out", str(tmp_path / "cut")]
    p = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt = tmp_path / "cut" / CHECKPOINT_FILE
    deadline = time.monotonic() + 120
    while not ckpt.exists() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    if p.returncode == 0:
        pytest.skip("the run finished before it could be interrupted")
    if sig == signal.SIGINT:
        assert p.returncode == 130 and err.strip().splitlines()[-1] == "error: interrupted", err
    assert not (tmp_path / "cut" / "circuit.json").exists()
    _, meta = load_state(ckpt)  # complete and readable whatever the moment of the kill
    assert 0 < meta["step"] < 60
    assert run_cli(["discover", "--resume", str(tmp_path / "cut")]) == 0
    assert read(tmp_path / "cut" / "circuit.json") == read(uninterrupted / "circuit.json")


def test_an_interrupted_write_leaves_the_old_file(tmp_path, monkeypatch):
    """circuit.json, traces, summaries (atomic_write_text) and checkpoints (save_state): a write
    stopped before its rename leaves the previous file intact and no temporary file behind."""
    import torch

    from subcircuit.circuit import atomic_write_text
    from subcircuit.files import save_state

    path, ckpt = tmp_path / "circuit.json", tmp_path / "c.safetensors"
    atomic_write_text(path, "old")
    save_state(ckpt, {"x": torch.zeros(2)}, {"step": 1})

    def interrupted(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(path, "new" * 1000)
    with pytest.raises(KeyboardInterrupt):
        save_state(ckpt, {"x": torch.ones(2)}, {"step": 2})
    monkeypatch.undo()
    assert path.read_text() == "old" and load_state(ckpt)[1] == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.safetensors", "circuit.json"]
