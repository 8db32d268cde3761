"""`discover` end to end: circuit.json, resume after an interruption, target size, the CLI."""

from __future__ import annotations

import json

import pytest

from subcircuit.circuit import load_circuit
from subcircuit.cli import run_cli
from subcircuit.errors import UserError
from subcircuit.graph import build_graph
from subcircuit.methods.acdc import TRACE_FILE
from subcircuit.models import load
from subcircuit.runs.discover import discover
from subcircuit.runs.options import DiscoverOptions


def _strip(d: dict) -> dict:
    """A circuit file without timings and run-cost counters (a resumed run does less work), its
    floats to be compared to 1e-7 (`_approx`): the trials after a resume are batched differently, and batch
    composition changes float rounding (about 1e-9 here), never a decision."""
    out = {k: v for k, v in d.items() if k != "timings_s"}
    out["results"] = {k: v for k, v in d["results"].items() if k != "forward_configs"}
    return out


def _approx(v):
    if isinstance(v, float):
        return pytest.approx(v, rel=1e-6, abs=1e-7)
    if isinstance(v, dict):
        return {k: _approx(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_approx(x) for x in v]
    return v


def test_tracr_reverse_recovers_ground_truth(tmp_path):
    c = discover("tracr-reverse", "tracr-reverse", DiscoverOptions.build(ablation="zero"), out=tmp_path)
    from subcircuit.models.tracr import load_ground_truth

    assert set(c.in_circuit) == set(load_ground_truth("tracr-reverse")["edges"])
    loaded = load_circuit(tmp_path, build_graph(load("tracr-reverse").cfg))
    assert loaded.in_circuit == c.in_circuit and loaded.results["faithfulness"] == pytest.approx(1.0)


def test_interrupted_run_resumes_to_the_same_circuit(tmp_path):
    opts = DiscoverOptions.build(threshold=0.002, n_examples=8)
    discover("toy-induction-2l", "induction", opts, out=tmp_path / "whole")
    calls = {"n": 0}

    def interrupt(done, total, what):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        discover("toy-induction-2l", "induction", opts, out=tmp_path / "cut", progress=interrupt)
    assert (tmp_path / "cut" / TRACE_FILE).exists() and not (tmp_path / "cut" / "circuit.json").exists()
    assert run_cli(["discover", "--resume", str(tmp_path / "cut")]) == 0
    a = json.loads((tmp_path / "whole" / "circuit.json").read_text())
    b = json.loads((tmp_path / "cut" / "circuit.json").read_text())
    assert _strip(b) == _approx(_strip(a))


@pytest.mark.parametrize("stop_at", [10, 40])  # inside the first τ run; in a later run of the search
def test_interrupted_target_size_search_resumes_to_the_same_circuit(tmp_path, stop_at):
    """`--edges N` runs several thresholds; a Ctrl-C anywhere in the search leaves a checkpoint of
    every run's trace, and `--resume` finishes with the uninterrupted search's circuit and τ."""
    opts = DiscoverOptions.build(edges=6, n_examples=8)
    discover("toy-induction-2l", "induction", opts, out=tmp_path / "whole", report=False)
    calls = {"n": 0}

    def interrupt(done, total, what):
        calls["n"] += 1
        if calls["n"] == stop_at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        discover("toy-induction-2l", "induction", opts, out=tmp_path / "cut", progress=interrupt, report=False)
    assert (tmp_path / "cut" / TRACE_FILE).exists() and not (tmp_path / "cut" / "circuit.json").exists()
    discover("toy-induction-2l", "induction", opts, out=tmp_path / "cut", resume=True, report=False)
    a = json.loads((tmp_path / "whole" / "circuit.json").read_text())
    b = json.loads((tmp_path / "cut" / "circuit.json").read_text())
    assert _strip(b) == _approx(_strip(a)) and a["params"]["threshold"] == b["params"]["threshold"]


def test_target_size_gives_at_most_n_edges(tmp_path):
    c = discover("tracr-reverse", "tracr-reverse", DiscoverOptions.build(ablation="zero", edges=6), out=tmp_path)
    assert 0 < c.results["n_edges_in_circuit"] <= 6
    assert c.params["target_edges"] == 6 and c.params["threshold"] > 0
    with pytest.raises(UserError, match="larger than the graph"):
        discover("tracr-reverse", "tracr-reverse", DiscoverOptions.build(ablation="zero", edges=10_000))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--threshold", "nan"], "--threshold"),
        (["--threshold", "-1"], "--threshold"),
        (["--edges", "0"], "--edges"),
        (["--method", "acdcc"], "did you mean 'acdc'"),
        (["--ablation", "mean2"], "unknown ablation"),
        (["--granularity", "head"], "unknown granularity"),
    ],
)
def test_cli_bad_options_exit_2(tmp_path, capsys, args, message):
    rc = run_cli(["discover", "--model", "tracr-reverse", "--task", "tracr-reverse", "--out", str(tmp_path)] + args)
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1


def test_cli_refuses_to_overwrite(tmp_path, capsys):
    base = ["discover", "--model", "tracr-proportion", "--task", "tracr-proportion", "--out", str(tmp_path),
            "--ablation", "zero"]
    assert run_cli(base) == 0
    assert run_cli(base) == 2 and "already holds a run" in capsys.readouterr().err
    assert run_cli(base + ["--overwrite"]) == 0
