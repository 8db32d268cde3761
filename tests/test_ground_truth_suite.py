"""The ground-truth suite: every reference is what its model computes (patching), the suite runs end
to end, and the `benchmark` commands (ground-truth, paper) work and fail in one line."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from conftest import random_model

from subcircuit import cli
from subcircuit.errors import UserError
from subcircuit.evaluation.benchmark_output import markdown, write_outputs
from subcircuit.evaluation.ground_truth_suite import SUITE, check_ground_truth, run_suite, setup
from subcircuit.evaluation.paper_benchmark import PAPER_TASKS, check_shape, run_paper
from subcircuit.models import LoadedModel, ModelConfig

# models whose truth is exact (compiled or built); toy-induction-2l was trained
EXACT = [s for s in SUITE if s.model != "toy-induction-2l"]


def test_suite_has_at_least_eight_models_with_references():
    assert len(SUITE) >= 8
    assert len({s.model for s in SUITE}) == len(SUITE)


@pytest.mark.parametrize("entry", SUITE, ids=lambda s: s.model)
def test_ground_truth_is_what_the_model_computes(entry):
    """With the suite's ablation: the reference alone keeps the full model's metric, and removing
    any one reference edge from the full model moves it."""
    chk = check_ground_truth(setup(entry, n_examples=16))
    if entry in EXACT:
        assert chk["loss_truth"] == pytest.approx(chk["loss_full"], abs=1e-6)
        assert chk["faithfulness_truth"] == pytest.approx(1.0, abs=1e-4)
    else:
        assert chk["faithfulness_truth"] > 0.9
    worst = min(chk["drop_from_full"].values())
    assert worst > 1e-3, min(chk["drop_from_full"].items(), key=lambda kv: kv[1])
    assert min(chk["drop_from_truth"].values()) > 1e-3


def test_suite_end_to_end_on_a_subset(tmp_path):
    res = run_suite(["tracr-proportion", "micro-induction"], ["acdc", "eap-ig", "random"], n_examples=8,
                    taus=(0.0, 1e-6, 1e-3, 0.1))
    assert res["models"] == ["tracr-proportion", "micro-induction"] and res["methods"] == ["acdc", "eap-ig", "random"]
    by = {(s.model, s.method): s for s in res["scores"]}
    assert len(by) == 6
    for m in res["models"]:
        assert by[(m, "acdc")].auc_edge == 1.0 and by[(m, "acdc")].recovery == 1.0
    for s in res["scores"]:
        assert 0 <= s.auc_edge <= 1 and 0 <= s.recovery <= 1 and s.roc_edge
    files = write_outputs(res, tmp_path, "subcircuit benchmark ground-truth ...")
    assert [f.name for f in files] == ["results.json", "results.md", "roc.png"]
    assert all(f.stat().st_size > 0 for f in files)
    d = json.loads((tmp_path / "results.json").read_text())
    assert {s["method"] for s in d["scores"]} == {"acdc", "eap-ig", "random"}
    md = markdown(res)
    assert "| tracr-proportion | 1.000 |" in md and "**node AUC**" in md


def test_benchmark_cli_ground_truth(tmp_path, capsys):
    rc = cli.run_cli(["benchmark", "ground-truth", "--models", "tracr-hist", "--methods", "acdc,eap",
                      "--thresholds", "0,1e-6,0.01", "--n-examples", "8", "-o", str(tmp_path)])
    o = capsys.readouterr()
    assert rc == 0, o.err
    assert "tracr-hist" in o.out and "n/a" in o.out  # hist's reference holds every node: node AUC undefined
    assert (tmp_path / "results.md").exists() and (tmp_path / "roc.png").exists()


@pytest.mark.parametrize("argv, message", [
    (["benchmark", "ground-truth", "--models", "nope"], "unknown suite model 'nope'"),
    (["benchmark", "ground-truth", "--methods", "nope"], "unknown method 'nope'"),
    (["benchmark", "ground-truth", "--thresholds", "x"], "--thresholds: 'x' is not a float"),
    (["benchmark", "paper", "--tasks", "docstring", "--model", "toy-induction-2l"], "unknown paper task 'docstring'"),
    (["benchmark", "paper", "--model", "toy-induction-2l"], "2 layers x 2 heads"),
])
def test_benchmark_cli_bad_input_is_one_line(argv, message, capsys):
    rc = cli.run_cli(argv)
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and message in err, err


def test_benchmark_paper_without_gpt2_weights_is_one_line(tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    rc = cli.run_cli(["benchmark", "paper", "--model", "gpt2"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "gpt2" in err and "offline" in err, err


def _gpt2_shaped():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from word_tokenizer import word_tokenizer

    tok = word_tokenizer(two_digit=True)
    cfg = ModelConfig(family="gpt2", n_layers=12, d_model=24, n_heads=12, d_head=2, d_mlp=32, vocab_size=len(tok),
                      n_ctx=128)
    return LoadedModel("gpt2-shaped-random", random_model(cfg), tok)


def test_paper_refuses_a_model_of_another_shape():
    lm = _gpt2_shaped()
    small = dataclasses.replace(lm.cfg, n_layers=2)
    with pytest.raises(UserError, match="2 layers x 12 heads"):
        check_shape(LoadedModel("small", random_model(small), lm.tokenizer))


@pytest.mark.slow
def test_paper_on_a_random_gpt2_shaped_model():
    """The paper's setup end to end on random weights (small n, two thresholds): the format only."""
    res = run_paper(_gpt2_shaped(), methods=("acdc", "hisp"), n_examples=2, taus=(0.1, 1.0))
    assert res["models"] == [f"gpt2-shaped-random/{t}" for t in PAPER_TASKS]
    by = {(s.model, s.method): s for s in res["scores"]}
    assert len(by) == 4
    t = res["truth"]["gpt2-shaped-random/ioi"]
    assert (t["n_edges"], t["n_true_edges"], t["n_true_nodes"]) == (32491, 963, 40)
    assert res["truth"]["gpt2-shaped-random/greater-than"]["n_true_edges"] == 235
    assert t["published_auc_edge"]["acdc"] == 0.869
    for s in res["scores"]:
        assert 0 <= s.auc_edge <= 1 and (math.isnan(s.auc_node) or 0 <= s.auc_node <= 1)
    assert "| gpt2-shaped-random/ioi |" in markdown(res)


def test_acdc_recovers_every_exact_ground_truth():
    """As the ACDC paper reports for tracr (zero ablation, l2): edge and node AUC 1.0, on all six
    tracr models and both micro models (a short τ grid; the docs' table uses the full one)."""
    res = run_suite([s.model for s in EXACT], ["acdc"], n_examples=16, taus=(0.0, 1e-6, 1e-3, 0.1))
    for s in res["scores"]:
        assert (s.auc_edge, s.recovery) == (1.0, 1.0), (s.model, s.auc_edge, s.recovery)
        assert math.isnan(s.auc_node) or s.auc_node == 1.0, s.model
