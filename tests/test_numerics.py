"""Numerical care: a NaN metric stops a run with a message naming the edge (never a silently wrong
circuit); non-finite scores are never written."""

from __future__ import annotations

import pytest
import torch

from subcircuit import cli
from subcircuit.errors import UserError
from subcircuit.graph import build_graph
from subcircuit.methods import make_problem, run_method
from subcircuit.methods.acdc import acdc_fast, acdc_reference
from subcircuit.methods.base import METHODS, MethodResult, MethodSpec
from subcircuit.methods.baselines import RandomOptions
from subcircuit.models import load
from subcircuit.runs.pipeline import check_results, check_scores
from subcircuit.tasks import get_task
from subcircuit.tasks.metrics import Metric, kl_divergence


def _nan_when_patched(logits, task, base):
    """KL to the full model, but NaN as soon as the patched output differs from it (an overflow
    stand-in: the full graph is finite, the first edge that matters is not)."""
    kl = kl_divergence(logits, task, base)
    return torch.where(kl.abs() < 1e-9, kl, torch.full_like(kl, float("nan")))


@pytest.fixture(scope="module")
def nan_problem():
    lm = load("toy-induction-2l")
    task = get_task("induction", lm, 4, 0)
    metric = Metric.custom(_nan_when_patched, "nan-when-patched")
    return make_problem(lm.model, build_graph(lm.cfg), task, metric)


@pytest.mark.parametrize("acdc", [acdc_fast, acdc_reference])
def test_acdc_nan_metric_names_edge_and_receiver(nan_problem, acdc):
    # ACDC visits `logits` first and its latest sender first: the edge a1.h1 -> logits
    with pytest.raises(UserError, match=r"the metric is nan with edge a1\.h1->logits removed") as e:
        acdc(nan_problem, 0.01)
    assert "\n" not in str(e.value)


def test_edge_pruning_nan_metric_stops(nan_problem):
    with pytest.raises(UserError, match=r"edge-pruning steps: the metric is nan at step 1"):
        run_method("edge-pruning", nan_problem, edges=5, train_steps=3)


def test_non_finite_scores_are_not_written(capsys, tmp_path, monkeypatch):
    def fn(problem, options, ctx):
        s = torch.ones(problem.graph.n_edges)
        s[3] = float("inf")
        s[7] = float("nan")
        return MethodResult(scores=s)

    monkeypatch.setitem(METHODS, "bad-scores", MethodSpec("bad-scores", fn, RandomOptions, "test"))
    rc = cli.run_cli(["discover", "--model", "toy-induction-2l", "--task", "induction", "--n-examples", "4",
                      "--method", "bad-scores", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    edge = build_graph(load("toy-induction-2l").cfg).edges[3]
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert f"bad-scores: the score of edge {edge}" in err and "is inf (2 non-finite scores)" in err
    assert not (tmp_path / "circuit.json").exists()


def test_check_scores_and_results():
    g = build_graph(load("toy-induction-2l").cfg)
    check_scores(torch.zeros(g.n_edges), g, "m")
    with pytest.raises(UserError, match=r"receiver 'logits', sender 'a1.h1'"):
        check_scores(torch.tensor([0.0] * (g.n_edges - 1) + [float("-inf")]), g, "m")
    check_results({"metric_full_model": 1.0, "metric_circuit": 0.5, "faithfulness": None}, "m")
    with pytest.raises(UserError, match="metric_circuit is nan"):
        check_results({"metric_full_model": 1.0, "metric_circuit": float("nan")}, "m")


def test_metrics_are_computed_in_fp32_or_better_from_half_precision_logits():
    """KL from fp16/bf16 logits matches fp64 arithmetic (log-softmax in fp64), no overflow to inf."""
    from subcircuit.tasks.base import make_task

    task = make_task("t", [[1, 2, 3]], [[1, 2, 4]], [[5]], [[6]], pad=0)
    base = torch.randn(1, 50, dtype=torch.float64) * 30
    patched = base + torch.randn(1, 50, dtype=torch.float64)
    exact = kl_divergence(patched[None], task, base)
    for dt in (torch.float16, torch.bfloat16):
        got = kl_divergence(patched.to(dt)[None].float(), task, base.to(dt).float())
        assert torch.isfinite(got).all()
        assert float(got) == pytest.approx(float(exact), rel=0.2, abs=0.05)
