"""Evaluation: CPR/CMD and AUC on hand-computed examples, faithfulness ends, top-k masks, nodes,
reference circuits (every name valid in a GPT-2-small-shaped graph), the reference build script."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from subcircuit.errors import UserError
from subcircuit.evaluation.curves import FRACTIONS, area_from_one, area_under, sizes, topk_masks, trapezoid
from subcircuit.evaluation.faithfulness import faithfulness_value
from subcircuit.evaluation.reference import (
    GPT2_SMALL,
    canonical_name,
    list_references,
    load_reference,
    reference_dir,
)
from subcircuit.evaluation.roc import (
    auc_of_circuits,
    auc_of_ranking,
    node_incidence,
    node_names,
    node_scores,
    nodes_of,
    pareto,
    pessimistic_auc,
    rates,
)
from subcircuit.graph import build_graph
from subcircuit.models.config import ModelConfig

ROOT = Path(__file__).resolve().parent.parent
TINY = ModelConfig(family="gpt2", n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, vocab_size=23, n_ctx=32)

# ------------------------------------------------------------------------------- CPR / CMD


def test_trapezoid_by_hand() -> None:
    # (0.5 - 0) * (0 + 1) / 2 + (1 - 0.5) * (1 + 1) / 2 = 0.25 + 0.5
    assert trapezoid([0, 0.5, 1], [0, 1, 1]) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        trapezoid([1, 0], [0, 0])


def test_cpr_cmd_on_toy_curves() -> None:
    xs = [0.1, 0.2, 0.5, 1.0]
    f = [0.0, 0.5, 1.0, 1.0]
    # CPR: 0.1*(0+0.5)/2 + 0.3*(0.5+1)/2 + 0.5*(1+1)/2 = 0.025 + 0.225 + 0.5
    assert area_under(xs, f) == pytest.approx(0.75)
    # CMD: |1-f| = 1, 0.5, 0, 0: 0.1*1.5/2 + 0.3*0.5/2 + 0 = 0.075 + 0.075
    assert area_from_one(xs, f) == pytest.approx(0.15)
    # overshoot counts in CMD: f = 2 everywhere is as far from 1 as f = 0
    assert area_from_one(xs, [2.0] * 4) == pytest.approx(area_from_one(xs, [0.0] * 4)) == pytest.approx(0.9)


def test_perfect_curve_over_mib_fractions() -> None:
    ones = [1.0] * len(FRACTIONS)
    assert area_under(FRACTIONS, ones) == pytest.approx(0.999)  # x runs from 0.001 to 1
    assert area_from_one(FRACTIONS, ones) == 0


def test_sizes_floor_like_mib() -> None:
    assert sizes(32491) == [32, 64, 162, 324, 649, 1624, 3249, 6498, 16245, 32491]
    with pytest.raises(UserError):
        sizes(10, [1.5])


def test_topk_masks_signed_and_absolute() -> None:
    g = build_graph(TINY)
    scores = torch.zeros(g.n_edges)
    scores[3], scores[7], scores[5] = 2.0, -5.0, 1.0
    m = g.to_flat(topk_masks(g, scores, [0, 1, 2, g.n_edges]))
    assert m.sum(1).tolist() == [0, 1, 2, g.n_edges]
    assert m[2].nonzero().flatten().tolist() == [3, 5]
    ma = g.to_flat(topk_masks(g, scores, [2], absolute=True))
    assert ma[0].nonzero().flatten().tolist() == [3, 7]


# ------------------------------------------------------------------------------ faithfulness


def test_faithfulness_value() -> None:
    assert faithfulness_value(3.0, full=3.0, empty=1.0) == 1
    assert faithfulness_value(1.0, full=3.0, empty=1.0) == 0
    assert faithfulness_value(2.0, full=3.0, empty=1.0) == 0.5
    assert faithfulness_value(2.0, full=1.0, empty=1.0) is None


def test_faithfulness_full_graph_is_1_and_empty_is_0() -> None:
    from subcircuit.evaluation.faithfulness import baseline, faithfulness_many
    from subcircuit.methods import make_problem
    from subcircuit.tasks import get_metric
    from subcircuit.tasks.base import make_task
    from tests.conftest import random_model

    model = random_model(TINY, seed=3)
    g = build_graph(TINY)
    gen = torch.Generator().manual_seed(0)
    clean = torch.randint(0, 23, (6, 8), generator=gen).tolist()
    corrupted = torch.randint(0, 23, (6, 8), generator=gen).tolist()
    task = make_task("toy", clean, corrupted, [[1]] * 6, [[2]] * 6, metric="logit-diff")
    for metric in ("kl", "logit-diff"):
        p = make_problem(model, g, task, get_metric(metric), "corrupted")
        base = baseline(p)
        half = g.full_mask()
        half[: half.shape[0] // 2] = 0
        values, f = faithfulness_many(p, torch.stack([g.full_mask(), torch.zeros(g.shape), half]), base)
        assert f[0] == pytest.approx(1, abs=1e-5) and f[1] == pytest.approx(0, abs=1e-5)
        assert values[0] == pytest.approx(base.full, abs=1e-5)


# ----------------------------------------------------------------------------------- ROC/AUC


def test_pessimistic_auc_by_hand() -> None:
    assert pessimistic_auc([(0, 0), (1, 1)]) == 0  # the diagonal's steps: right first, then up
    assert pessimistic_auc([(0, 0), (0.5, 0.5), (1, 1)]) == 0.25  # the ACDC repo's own checks
    assert pessimistic_auc([(0, 1), (1, 1)]) == 1
    # (0.2, 0.6) and (0.5, 0.9): 0.8*0.6 + 0.5*0.3 (+ 0 at x = 1)
    assert pessimistic_auc([(0, 0), (0.2, 0.6), (0.5, 0.9), (1, 1)]) == pytest.approx(0.63)


def test_pareto_drops_dominated_points_and_adds_ends() -> None:
    pts = [(0.2, 0.6), (0.3, 0.5), (0.5, 0.9), (0.5, 0.8)]
    assert pareto(pts) == [(0.0, 0.0), (0.2, 0.6), (0.5, 0.9), (1.0, 1.0)]
    assert pessimistic_auc(pareto(pts)) == pytest.approx(0.63)


def test_auc_of_circuits_perfect_and_partial() -> None:
    ref = torch.tensor([1, 1, 0, 0, 0], dtype=torch.bool)
    exact = ref.clone()
    assert auc_of_circuits([exact], ref)[0] == 1
    half = torch.tensor([1, 0, 0, 0, 0], dtype=torch.bool)
    assert auc_of_circuits([half], ref)[0] == 0.5
    r = rates(torch.tensor([1, 0, 1, 0, 0], dtype=torch.bool), ref)
    assert (r.tp, r.fp, r.fn, r.tn, r.tpr, r.fpr) == (1, 1, 1, 2, 0.5, 1 / 3)


def test_auc_of_ranking_matches_rank_statistic_and_ties_are_pessimistic() -> None:
    ref = torch.tensor([1, 0, 1, 0], dtype=torch.bool)
    assert auc_of_ranking(torch.tensor([4.0, 3, 2, 1]), ref)[0] == 0.75  # P(pos > neg) = 3/4
    assert auc_of_ranking(torch.tensor([4.0, 3, 2, 1]), ~ref)[0] == 0.25
    assert auc_of_ranking(torch.tensor([1.0, 1, 1, 1]), ref)[0] == 0  # one tie: one cut, pessimistic


def test_nodes_of_edges() -> None:
    g = build_graph(TINY)
    inc = node_incidence(g)
    names = node_names(g)
    mask = g.to_flat(g.mask_from_edges(["a0.h1->a1.h0<k>"], torch.bool))
    assert {names[i] for i in nodes_of(mask, inc).nonzero().flatten().tolist()} == {"a0.h1", "a1.h0"}
    s = torch.zeros(g.n_edges)
    s[g.edge_position("input->logits")] = 5.0
    ns = node_scores(s, inc)
    assert ns[names.index("input")] == 5 and ns[names.index("logits")] == 5 and ns[names.index("m1")] == 0


def test_gqa_key_groups_count_for_every_head_of_the_group() -> None:
    cfg = ModelConfig(family="llama", n_layers=2, d_model=16, n_heads=4, n_kv_heads=2, d_head=4, d_mlp=24,
                      vocab_size=23, norm="rmsnorm", positional="rotary", mlp="gated", act="silu")
    g = build_graph(cfg)
    names = node_names(g)
    mask = g.to_flat(g.mask_from_edges(["input->a1.g1<v>"], torch.bool))
    assert {names[i] for i in nodes_of(mask, node_incidence(g)).nonzero().flatten().tolist()} == {
        "input", "a1.h2", "a1.h3"}


# ----------------------------------------------------------------------- reference circuits


def test_shipped_references_load_and_every_name_is_valid() -> None:
    assert {"gpt2-ioi", "gpt2-greater-than", "tracr-reverse", "tracr-proportion"} <= set(list_references())
    gpt2 = build_graph(GPT2_SMALL, "heads-qkv")
    assert gpt2.n_edges == 32491  # MIB's GPT-2 edge count
    ioi = load_reference("gpt2-ioi", gpt2)
    gt = load_reference("gpt2-greater-than", gpt2)
    assert len(ioi.edges) == 963 and len(gt.edges) == 235
    assert int(ioi.edge_mask.sum()) == 963
    for name in ("tracr-reverse", "tracr-proportion"):
        assert load_reference(name).edges  # the graph of the shipped tracr model


def test_ioi_reference_structure() -> None:
    ioi = set(load_reference("gpt2-ioi").edges)
    assert "a9.h9->logits" in ioi and "a7.h3->a9.h9<q>" in ioi and "a7.h3->a9.h9<k>" not in ioi
    assert "input->a9.h9<k>" in ioi and "input->a9.h9<q>" not in ioi
    assert "a5.h5->a8.h6<v>" in ioi and "a2.h2->a5.h5<k>" in ioi and "a2.h2->a5.h5<q>" not in ioi
    assert "m3->a9.h9<q>" in ioi and "a9.h9->m10" in ioi and "input->m0" in ioi and "m11->logits" in ioi
    assert not any(e.startswith("a1.h0->") or "a1.h0<" in e for e in ioi)  # not a circuit head
    assert "a0.h1->logits" not in ioi  # duplicate-token heads do not feed the output directly


def test_greater_than_reference_structure() -> None:
    gt = set(load_reference("gpt2-greater-than").edges)
    assert {"input->a0.h3<q>", "input->m2", "a0.h1->m0", "a9.h1->logits", "m11->logits", "m8->m10",
            "a6.h9->m8", "m1->a5.h5<v>", "m6->a7.h10<q>", "m4->m7"} <= gt
    assert "m6->a7.h10<k>" not in gt and "a0.h3->m1" not in gt and "m8->logits" in gt
    assert "input->logits" not in gt and "a5.h5->a6.h1<q>" not in gt


def test_reference_with_a_bad_edge_is_a_user_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model": "gpt2", "granularity": "heads-qkv", "edges": ["input->a12.h0<q>"]}))
    with pytest.raises(UserError, match="a12.h0<q>"):
        load_reference(bad)
    bad.write_text(json.dumps({"model": "gpt2", "edges": ["a3.h0->a2.h0<q>"]}))
    with pytest.raises(UserError, match="does not exist"):
        load_reference(bad)
    bad.write_text(json.dumps({"model": "gpt2", "edges": ["input->m0", "input->m0"]}))
    with pytest.raises(UserError, match="twice"):
        load_reference(bad)
    with pytest.raises(UserError, match="unknown reference circuit 'nope'"):
        load_reference("nope")


def test_canonical_reference_lookup() -> None:
    assert canonical_name("gpt2", "ioi") == "gpt2-ioi"
    assert canonical_name("gpt2", "greater-than") == "gpt2-greater-than"
    assert canonical_name("tracr-reverse", "tracr-reverse") == "tracr-reverse"
    assert canonical_name("smollm2-135m", "ioi") is None


def test_build_script_reproduces_the_shipped_gpt2_files() -> None:
    spec = importlib.util.spec_from_file_location("build_ref", ROOT / "scripts" / "build_reference_circuits.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for name, content in mod.reference_files().items():
        assert json.loads((reference_dir() / f"{name}.json").read_text()) == content
