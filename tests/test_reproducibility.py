"""Reproducibility: the same command twice gives the same circuit.json apart from timings, and the
file records the seed, the versions and every option of the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from subcircuit.circuit import load_circuit
from subcircuit.cli import run_cli
from subcircuit.runs.options import DiscoverOptions


def without_timings(path: Path) -> dict:
    d = json.loads((path / "circuit.json").read_text())
    d.pop("timings_s")
    return d


@pytest.mark.parametrize(
    "extra",
    [
        ["--method", "acdc", "--threshold", "0.01"],
        ["--method", "edge-pruning", "--edges", "6", "--train-steps", "8", "--seed", "7"],
        ["--method", "random", "--edges", "5", "--seed", "11"],
    ],
)
def test_same_command_twice_gives_the_same_file(tmp_path, extra):
    base = ["discover", "--model", "toy-induction-2l", "--task", "induction", "--n-examples", "4", *extra]
    assert run_cli([*base, "--out", str(tmp_path / "a")]) == 0
    assert run_cli([*base, "--out", str(tmp_path / "b")]) == 0
    a, b = without_timings(tmp_path / "a"), without_timings(tmp_path / "b")
    assert a == b
    assert set(a["versions"]) >= {"subcircuit", "torch", "transformers", "python"}
    assert set(a["options"]) == set(DiscoverOptions.build(extra[1]).flat())  # every option, by name
    assert a["options"]["method"] == extra[1] and a["params"]["seed"] == a["options"]["seed"]
    assert load_circuit(tmp_path / "a").options == a["options"]


def test_different_seed_gives_a_different_random_circuit(tmp_path):
    base = ["discover", "--model", "toy-induction-2l", "--task", "induction", "--n-examples", "4", "--method", "random",
            "--edges", "5"]
    assert run_cli([*base, "--seed", "1", "--out", str(tmp_path / "a")]) == 0
    assert run_cli([*base, "--seed", "2", "--out", str(tmp_path / "b")]) == 0
    assert without_timings(tmp_path / "a")["edges"] != without_timings(tmp_path / "b")["edges"]


def test_recorded_options_rebuild_the_run(tmp_path):
    """The options in circuit.json are every option of the run, by name: they rebuild the run."""
    args = ["discover", "--model", "toy-induction-2l", "--task", "induction", "--n-examples", "4", "--method", "eap",
            "--edges", "4", "--metric", "logit-diff", "--out", str(tmp_path)]
    assert run_cli(args) == 0
    opts = DiscoverOptions.build(**json.loads((tmp_path / "circuit.json").read_text())["options"])
    assert opts.metric == "logit-diff" and opts.select.edges == 4 and opts.method == "eap"
    assert opts.flat() == json.loads((tmp_path / "circuit.json").read_text())["options"]
