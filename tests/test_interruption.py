"""Interruption: a run stopped at any moment leaves a consistent checkpoint, and resuming it gives
the same circuit.json as an uninterrupted run (apart from timings). Tiny runs on toy-induction-2l.

Every interruption happens at a fixed point of the run, whatever the machine's speed: in-process, the
progress callback raises KeyboardInterrupt (as Ctrl-C would) at its N-th call; a real process sends
itself the signal from its progress callback or from inside a checkpoint write."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from subcircuit.cli import run_cli
from subcircuit.errors import UserError
from subcircuit.files import load_state
from subcircuit.methods.training import CHECKPOINT_FILE
from subcircuit.runs.discover import discover
from subcircuit.runs.options import DiscoverOptions
from subcircuit.runs.sweep import sweep


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
    opts = DiscoverOptions.build(method=method, edges=6, train_steps=14, n_examples=4, seed=3)
    discover("toy-induction-2l", "induction", opts, out=tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        discover("toy-induction-2l", "induction", opts, out=tmp_path / "cut", progress=Interrupt(13))
    assert not (tmp_path / "cut" / "circuit.json").exists()
    _, meta = load_state(tmp_path / "cut" / CHECKPOINT_FILE)
    assert meta["step"] == 10 and len(meta["history"]) == 10  # the last checkpoint before the interruption
    assert run_cli(["discover", "--resume", str(tmp_path / "cut")]) == 0
    assert read(tmp_path / "cut" / "circuit.json") == read(tmp_path / "whole" / "circuit.json")


def test_resume_with_other_options_is_refused(tmp_path):
    opts = DiscoverOptions.build(method="edge-pruning", edges=6, train_steps=12, n_examples=4)
    with pytest.raises(KeyboardInterrupt):
        discover("toy-induction-2l", "induction", opts, out=tmp_path, progress=Interrupt(11))
    other = DiscoverOptions.build(method="edge-pruning", edges=6, train_steps=12, n_examples=4, seed=1)
    with pytest.raises(UserError, match=r"options differ \(seed, train.seed\)"):
        discover("toy-induction-2l", "induction", other, out=tmp_path, resume=True)


def test_acdc_sweep_resumes_keeping_finished_runs(tmp_path):
    opts = DiscoverOptions.build(n_examples=4)
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
    opts = DiscoverOptions.build(method="eap", n_examples=4)
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


# A real process is stopped by a signal it sends itself at a chosen moment (no timing, no race with
# the machine's speed): after the N-th progress call of `discover`, or inside the rename of the
# K-th checkpoint write. Edge pruning writes its checkpoint every 10 steps, then reports the step.
KILL_OPTIONS = dict(method="edge-pruning", edges=6, train_steps=30, n_examples=2, seed=1)
KILL_ARGS = ["--model", "toy-induction-2l", "--task", "induction", "--n-examples", "2", "--method", "edge-pruning",
             "--edges", "6", "--train-steps", "30", "--seed", "1"]  # the same run on the command line
SIGNALS = [signal.SIGKILL, signal.SIGINT, signal.SIGTERM]

# runs `discover` and signals itself at the N-th progress call (Ctrl-C: exit 130 as the CLI does)
DISCOVER_SCRIPT = """
import json, os, sys
from subcircuit.runs.discover import discover
from subcircuit.runs.options import DiscoverOptions
sig, n, out, options = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
calls = 0
def progress(done, total, what):
    global calls
    calls += 1
    if calls == n:
        os.kill(os.getpid(), sig)
try:
    discover("toy-induction-2l", "induction", DiscoverOptions.build(**options), out=out, progress=progress)
except KeyboardInterrupt:
    sys.exit(130)
"""

# runs the command line and signals itself inside the K-th write of the checkpoint, before the
# rename that would replace the previous one
CLI_SCRIPT = """
import os, sys
from subcircuit.cli import run_cli
sig, k, name, argv = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4:]
rename, writes = os.replace, 0
def replace(src, dst):
    global writes
    if os.path.basename(dst) == name:
        writes += 1
        if writes == k:
            os.kill(os.getpid(), sig)
    return rename(src, dst)
os.replace = replace
sys.exit(run_cli(argv))
"""


def _run_script(script: str, *args: str) -> subprocess.CompletedProcess:
    # the timeout only guards against a hang; the signal comes at a fixed point of the run
    return subprocess.run([sys.executable, "-c", script, *args], env=_env(), capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("whole") / "run"
    assert run_cli(["discover", *KILL_ARGS, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: s.name)
def test_killed_process_resumes(tmp_path, sig, uninterrupted):
    """A real process stopped during edge pruning (SIGKILL: no cleanup at all; SIGINT: Ctrl-C;
    SIGTERM: the default of `kill`, a batch scheduler's stop) right after step 25: the last checkpoint
    (step 20) is complete, no circuit.json, and `--resume` finishes with the uninterrupted circuit."""
    cut = tmp_path / "cut"
    p = _run_script(DISCOVER_SCRIPT, str(int(sig)), "25", str(cut), json.dumps(KILL_OPTIONS))
    assert p.returncode == (130 if sig == signal.SIGINT else -sig), p.stderr  # SIGINT: KeyboardInterrupt
    assert not (cut / "circuit.json").exists()
    _, meta = load_state(cut / CHECKPOINT_FILE)
    assert meta["step"] == 20
    assert run_cli(["discover", "--resume", str(cut)]) == 0
    assert read(cut / "circuit.json") == read(uninterrupted / "circuit.json")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=lambda s: s.name)
def test_cli_stopped_while_writing_a_checkpoint(tmp_path, sig, uninterrupted):
    """`subcircuit discover` stopped inside the second checkpoint write (step 20), before its rename:
    the step-10 checkpoint is intact; Ctrl-C exits 130 with `error: interrupted` and leaves no
    temporary file; SIGKILL may leave one, which `--resume` does not mind."""
    cut = tmp_path / "cut"
    p = _run_script(CLI_SCRIPT, str(int(sig)), "2", CHECKPOINT_FILE, "discover", *KILL_ARGS, "--out", str(cut))
    if sig == signal.SIGINT:
        assert p.returncode == 130 and p.stderr.strip().splitlines()[-1] == "error: interrupted", p.stderr
        assert sorted(f.name for f in cut.iterdir()) == [CHECKPOINT_FILE]
    else:
        assert p.returncode == -sig, p.stderr
    assert not (cut / "circuit.json").exists()
    _, meta = load_state(cut / CHECKPOINT_FILE)
    assert meta["step"] == 10
    assert run_cli(["discover", "--resume", str(cut)]) == 0
    assert read(cut / "circuit.json") == read(uninterrupted / "circuit.json")


def test_an_interrupted_write_leaves_the_old_file(tmp_path, monkeypatch):
    """circuit.json, traces, summaries (atomic_write_text) and checkpoints (save_state): a write
    stopped before its rename leaves the previous file intact and no temporary file behind."""
    import torch

    from subcircuit.files import atomic_write_text, save_state

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
