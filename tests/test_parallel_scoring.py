"""Data-parallel scoring (runs.parallel): the shards' sums over N give one process's EAP, EAP-IG
scores and faithfulness within 1e-5 (float32), for every ablation. The shards run in this process
here (`ShardScorer` directly); tests/test_ray_sweep.py runs them as Ray actors."""

from __future__ import annotations

import pytest
import torch

from subcircuit.errors import UserError
from subcircuit.evaluation.faithfulness import measure
from subcircuit.methods import Context
from subcircuit.runs.options import DiscoverOptions
from subcircuit.runs.parallel import ShardScorer, shard_bounds
from subcircuit.runs.pipeline import open_session


def one_process(model, task, opts):
    s = open_session(model, task, opts)
    torch.manual_seed(opts.seed)
    return s, opts.spec.fn(s.problem, opts.method_options, Context(seed=opts.seed)).scores


def sharded(model, task, opts, shards):
    scorer = ShardScorer(model, task, opts)
    bounds = shard_bounds(scorer.n_total(), shards)
    return scorer, bounds, (sum(scorer.score_sum(lo, hi) for lo, hi in bounds) / scorer.n_total()).float()


@pytest.mark.parametrize(("method", "extra", "ablation", "model", "task"), [
    ("eap", {"metric": "logit-diff"}, "corrupted", "toy-induction-2l", "induction"),
    ("eap-ig", {"ig_steps": 2}, "corrupted", "toy-induction-2l", "induction"),
    ("eap-ig", {"ig_steps": 2, "ig": "activations"}, "mean", "toy-induction-2l", "induction"),
    ("eap-ig", {"ig_steps": 2}, "zero", "tracr-reverse", "tracr-reverse"),
])
def test_shard_sums_equal_one_process(method, extra, ablation, model, task):
    opts = DiscoverOptions.build(method, n_examples=10, ablation=ablation, **extra)
    session, want = one_process(model, task, opts)
    scorer, bounds, got = sharded(model, task, opts, 3)
    n = scorer.n_total()
    assert n == session.task.n == 10 and len(bounds) == 3 and float(want.abs().max()) > 1e-3
    torch.testing.assert_close(got, want.float(), rtol=0, atol=1e-5)
    # faithfulness of a circuit (the top 10 edges): the three metric values, summed over shards
    g = session.graph
    keep = torch.zeros(g.n_edges)
    keep[want.abs().topk(10).indices] = 1
    mask = g.from_flat(keep)
    one = measure(session.problem, mask, session.baseline)
    masks = torch.stack([g.full_mask(), torch.zeros(g.shape), mask])
    sums = sum(scorer.value_sums(lo, hi, masks) for lo, hi in bounds) / n
    assert sums.tolist() == pytest.approx([one["metric_full_model"], one["metric_empty_circuit"],
                                           one["metric_circuit"]], abs=1e-5)


def test_shard_bounds():
    assert shard_bounds(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert shard_bounds(64, 4) == [(0, 16), (16, 32), (32, 48), (48, 64)]
    with pytest.raises(UserError, match="--shards 5"):
        shard_bounds(4, 5)
