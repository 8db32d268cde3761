"""Metrics on hand-made logits: values, signs, padding, batching over configurations."""

from __future__ import annotations

import math

import pytest
import torch

from subcircuit.errors import UserError
from subcircuit.tasks import METRICS, Metric, get_metric, logits_at
from subcircuit.tasks.base import Task

V = 6


def _task(correct: list[list[int]], wrong: list[list[int]]) -> Task:
    b = len(correct)
    toks = torch.zeros(b, 3, dtype=torch.long)
    return Task(
        "t", toks, toks.clone(), torch.full((b,), 2), torch.tensor(correct), torch.tensor(wrong)
    )


TASK = _task([[0, -1], [1, 2]], [[3, 4], [5, -1]])  # b=2, padded answer lists


def _logits(seed: int = 0, c: int = 3) -> torch.Tensor:
    return torch.randn(c, 2, V, generator=torch.Generator().manual_seed(seed))


def test_kl_of_identical_logits_is_zero():
    base = _logits(1, c=1)[0]
    assert torch.allclose(METRICS["kl"](base.expand(4, 2, V), TASK, base), torch.zeros(4), atol=1e-7)


def test_kl_matches_torch_and_is_full_to_patched():
    x, base = _logits(2), _logits(3, c=1)[0]
    got = METRICS["kl"](x, TASK, base)
    for i in range(3):
        ref = torch.nn.functional.kl_div(
            torch.log_softmax(x[i], -1), torch.log_softmax(base, -1), log_target=True, reduction="batchmean"
        )
        assert got[i] == pytest.approx(float(ref), rel=1e-5)
    assert (got > 0).all()


def test_logit_diff_means_over_valid_answers():
    x = torch.zeros(1, 2, V)
    x[0, 0, 0], x[0, 0, 3], x[0, 0, 4] = 5.0, 1.0, 3.0  # example 0: 5 - mean(1, 3) = 3
    x[0, 1, 1], x[0, 1, 2], x[0, 1, 5] = 2.0, 4.0, 1.0  # example 1: mean(2, 4) - 1 = 2
    assert METRICS["logit-diff"](x, TASK, x[0]).tolist() == [pytest.approx(2.5)]
    assert METRICS["logit-diff"](-x, TASK, x[0]).item() < 0  # sign flips with preference


def test_prob_diff_and_nll_and_accuracy_by_hand():
    x = _logits(4, c=1)
    p = torch.softmax(x[0], -1)
    pd = ((p[0, 0] - p[0, 3] - p[0, 4]) + (p[1, 1] + p[1, 2] - p[1, 5])) / 2
    assert METRICS["prob-diff"](x, TASK, x[0]).item() == pytest.approx(float(pd), rel=1e-5)
    lp = torch.log_softmax(x[0], -1)
    nll = (-lp[0, 0] + -(lp[1, 1] + lp[1, 2]) / 2) / 2
    assert METRICS["nll"](x, TASK, x[0]).item() == pytest.approx(float(nll), rel=1e-5)
    acc = (float(x[0, 0, 0] > x[0, 0, [3, 4]].max()) + float(x[0, 1, [1, 2]].max() > x[0, 1, 5])) / 2
    assert METRICS["accuracy"](x, TASK, x[0]).item() == acc


def test_accuracy_extremes():
    x = torch.zeros(1, 2, V)
    x[0, 0, 0] = x[0, 1, 2] = 10.0
    assert METRICS["accuracy"](x, TASK, x[0]).item() == 1.0
    assert METRICS["accuracy"](-x, TASK, x[0]).item() == 0.0


BUILTIN = ["accuracy", "kl", "logit-diff", "nll", "prob-diff"]


@pytest.mark.parametrize("name", BUILTIN)
def test_batched_configurations_equal_one_at_a_time(name):
    m, x, base = METRICS[name], _logits(5), _logits(6, c=1)[0]
    batched = m(x, TASK, base)
    assert batched.shape == (3,) and batched.dtype == torch.float32
    for i in range(3):
        assert batched[i].item() == pytest.approx(m(x[i], TASK, base).item(), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("name", BUILTIN)
def test_loss_is_lower_is_better(name):
    m, x, base = METRICS[name], _logits(7), _logits(8, c=1)[0]
    sign = -1 if m.higher_is_better else 1
    assert torch.allclose(m.loss(x, TASK, base), sign * m(x, TASK, base))


def test_directions():
    builtin = {"kl", "logit-diff", "prob-diff", "nll", "accuracy"}  # others may register more (tracr: l2)
    assert builtin <= set(METRICS)
    assert {n for n in builtin if METRICS[n].higher_is_better} == {"logit-diff", "prob-diff", "accuracy"}


def test_half_precision_input_is_computed_in_fp32():
    x = _logits(9)
    lo = METRICS["logit-diff"](x.half(), TASK, x[0].half())
    assert lo.dtype == torch.float32
    kl = METRICS["kl"](x.half(), TASK, x[0].half())
    assert kl.dtype == torch.float32 and kl[0].item() == pytest.approx(0.0, abs=1e-6)


def test_get_metric_and_custom():
    assert get_metric("kl") is METRICS["kl"]
    with pytest.raises(UserError, match="did you mean 'logit-diff'"):
        get_metric("logit_diff")

    def top(logits, task, base):
        return logits[..., 0].mean(-1)

    m = Metric.custom(top, "first-logit", higher_is_better=True)
    x = _logits(10)
    assert torch.allclose(m.loss(x, TASK, x[0]), -x[..., 0].mean(-1))
    assert get_metric(top).name == "top" and not get_metric(top).higher_is_better
    with pytest.raises(UserError):
        Metric.custom(3, "bad")  # type: ignore[arg-type]


def test_logits_at():
    logits = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)
    pos = torch.tensor([3, 1])
    assert torch.equal(logits_at(logits, pos), torch.stack([logits[0, 3], logits[1, 1]]))
    stacked = torch.stack([logits, logits + 1])
    assert torch.equal(logits_at(stacked, pos)[1], logits_at(logits, pos) + 1)


def test_kl_is_finite_with_extreme_logits():
    x = torch.full((1, 2, V), -1e4)
    x[..., 0] = 1e4
    base = torch.zeros(2, V)
    assert math.isfinite(METRICS["kl"](x, TASK, base).item())
