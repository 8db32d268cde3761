"""tracr models: shipped conversions compute their RASP programs exactly, equal a fresh compile
and tracr's own model, and their ground-truth circuits are the ones derived from the weights.

Tests that need tracr (JAX) skip without the `tracr` extra and are marked slow."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from subcircuit.models import MODELS, load
from subcircuit.models.tracr import (
    PROGRAMS,
    derive_ground_truth,
    load_ground_truth,
    reference_path,
    shipped_dir,
)
from subcircuit.tasks import get_metric, get_task
from subcircuit.tasks.metrics import logits_at

NAMES = sorted(PROGRAMS)


def _encode(meta: dict, xs) -> list[int]:
    ids = {t["value"]: t["id"] for t in meta["tokens"]}
    return [meta["bos_token_id"], *(ids[v] for v in xs)]


def _all_tokens(name: str, meta: dict, length: int) -> tuple[list, torch.Tensor]:
    inputs = list(itertools.product(PROGRAMS[name].vocab, repeat=length))
    return inputs, torch.tensor([_encode(meta, xs) for xs in inputs])


@pytest.mark.parametrize("name", NAMES)
def test_registered_and_shipped(name):
    assert name in MODELS and MODELS[name].available()
    loaded = load(name)
    assert loaded.tokenizer is None
    cfg = loaded.cfg
    assert (cfg.norm, cfg.final_norm, cfg.act, cfg.positional, cfg.mlp) == ("none", False, "relu", "learned", "plain")
    assert cfg.attn_scale == pytest.approx(cfg.d_head**-0.5)
    assert MODELS[name].n_params == loaded.model.n_params()
    meta = loaded.meta
    assert meta["compiler"]["compiler_bos"] == "BOS" and meta["bos_token_id"] == _encode(meta, [])[0]
    assert len(meta["residual_labels"]) == cfg.d_model
    assert sum(f.stat().st_size for f in shipped_dir(name).iterdir()) < 1_000_000


@pytest.mark.parametrize("length", [1, 2, 3, 4, 5])
def test_reverse_is_exact(length):
    """Every input of every length: argmax over the output values is the reversed token, the
    output logits are one-hot (1 on the answer, 0 elsewhere), BOS/pad are never predicted."""
    loaded = load("tracr-reverse")
    meta = loaded.meta
    inputs, tokens = _all_tokens("tracr-reverse", meta, length)
    logits = loaded.model(tokens)  # [b p v]
    out_ids = {v["value"]: v["id"] for v in meta["output"]["values"]}
    expected = torch.zeros(len(inputs), length, loaded.cfg.vocab_size)
    for i, xs in enumerate(inputs):
        for p in range(1, length + 1):
            expected[i, p - 1, out_ids[xs[length - p]]] = 1.0
    ids = list(out_ids.values())
    torch.testing.assert_close(logits[:, 1:, ids], expected[..., ids], atol=1e-5, rtol=0)
    unused = [i for i in range(loaded.cfg.vocab_size) if i not in ids]
    assert (logits[:, :, unused] == meta["output"]["unused_logit_bias"]).all()


@pytest.mark.parametrize("length", [1, 3, 5])
def test_proportion_is_exact(length):
    loaded = load("tracr-proportion")
    inputs, tokens = _all_tokens("tracr-proportion", loaded.meta, length)
    logits = loaded.model(tokens)
    expected = torch.tensor([[sum(v == "x" for v in xs[:p]) / p for p in range(1, length + 1)] for xs in inputs])
    torch.testing.assert_close(logits[:, 1:, 0], expected, atol=1e-5, rtol=0)
    assert (logits[..., 1:] == 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_ground_truth_is_derived(name):
    """The shipped JSON is what `derive_ground_truth` computes from the shipped weights."""
    loaded = load(name)
    derived = derive_ground_truth(loaded.model, loaded.meta["residual_labels"], name)
    shipped = load_ground_truth(name)
    assert shipped == json.loads(json.dumps(derived))
    assert shipped["granularity"] == "heads-qkv" and shipped["source"].startswith("derived")
    assert reference_path(name).exists()


def test_ground_truth_circuits():
    """The circuits the programs imply (ACDC paper, Fig. 1 / appendix): reverse computes length
    (a0 + m0), opp_idx (m1), opp_idx-1 (m2) and aggregates in a3; proportion maps tokens==x
    (m0) and averages it in a1."""
    rev = load_ground_truth("tracr-reverse")
    assert rev["nodes"] == ["a0.h0", "m0", "m1", "m2", "a3.h0"]
    assert {"a0.h0->m0", "m0->m1", "m1->m2", "m2->a3.h0<q>", "a3.h0->logits", "input->a3.h0<v>"} <= set(rev["edges"])
    prop = load_ground_truth("tracr-proportion")
    assert prop["nodes"] == ["m0", "a1.h0"]
    assert set(prop["edges"]) == {"input->m0", "input->a1.h0<q>", "input->a1.h0<k>", "m0->a1.h0<v>", "a1.h0->logits"}


@pytest.mark.parametrize("name", NAMES)
def test_ground_truth_edges_are_graph_edges(name):
    graph_mod = pytest.importorskip("subcircuit.graph")
    loaded = load(name)
    graph = graph_mod.build_graph(loaded.cfg, "heads-qkv")
    truth = load_ground_truth(name)
    assert set(truth["edges"]) <= set(graph.edges)
    used = {e.split("->")[0] for e in truth["edges"]} | {e.split("->")[1].split("<")[0] for e in truth["edges"]}
    assert set(truth["nodes"]) == used - {"input", "logits"}


def test_empty_components_are_not_in_the_circuit():
    loaded = load("tracr-reverse")
    truth = load_ground_truth("tracr-reverse")
    for layer, blk in enumerate(loaded.model.blocks):
        empty = not (blk.W_Q.any() or blk.W_K.any() or blk.W_V.any() or blk.W_O.any())
        assert empty == (f"a{layer}.h0" not in truth["nodes"])
        assert (not blk.W_in.any()) == (f"m{layer}" not in truth["nodes"])


# ------------------------------------------------------------------------------ tasks


@pytest.mark.parametrize("name", NAMES)
def test_tasks_are_deterministic_and_line_up(name):
    loaded = load(name)
    a, b = get_task(name, loaded, n=12, seed=3), get_task(name, loaded, n=12, seed=3)
    assert torch.equal(a.clean, b.clean) and torch.equal(a.corrupted, b.corrupted)
    assert not torch.equal(a.clean, get_task(name, loaded, n=12, seed=4).clean)
    assert a.clean.shape == a.corrupted.shape == (12, 5)
    assert a.positions.tolist() == [1, 2, 3, 4] * 3
    assert (a.clean[:, 0] == loaded.meta["bos_token_id"]).all() and (a.corrupted[:, 0] == a.clean[:, 0]).all()
    assert a.metric == "l2"
    clean = logits_at(loaded.model(a.clean), a.positions)
    corr = logits_at(loaded.model(a.corrupted), a.positions)
    l2 = get_metric("l2")
    assert float(l2(clean, a, clean)) == 0.0
    # the corrupted input changes the output at every example's position
    assert ((clean - corr).abs().amax(-1) > 0.1).all()
    assert float(l2(corr, a, clean)) > 0.1


def test_reverse_task_answers():
    loaded = load("tracr-reverse")
    task = get_task("tracr-reverse", loaded, n=40, seed=0)
    logits = logits_at(loaded.model(task.clean), task.positions)
    assert float(get_metric("accuracy")(logits, task, logits)) == 1.0
    for i in range(task.n):
        p = int(task.positions[i])
        assert int(task.correct[i, 0]) == int(task.clean[i, 5 - p])  # reverse: token L+1-p (L = 4)
        assert int(task.correct[i, 0]) not in task.wrong[i].tolist()


def test_proportion_task_targets():
    loaded = load("tracr-proportion")
    task = get_task("tracr-proportion", loaded, n=40, seed=0)
    logits = logits_at(loaded.model(task.clean), task.positions)
    torch.testing.assert_close(logits[:, 0], torch.tensor(task.meta["target"], dtype=torch.float32), atol=1e-5, rtol=0)


def test_tracr_task_refuses_other_models():
    from subcircuit.errors import UserError

    with pytest.raises(UserError):
        get_task("tracr-reverse", load("tracr-proportion"), n=4)


# ------------------------------------------------------------------------------ against tracr (JAX)


PAPER = ["tracr-proportion", "tracr-reverse"]  # the ACDC paper's two: checked on every input
EXTRA = [n for n in NAMES if n not in PAPER]  # the benchmark's four more: one compile, inputs of length 4


@pytest.mark.slow
@pytest.mark.parametrize("name", PAPER)
def test_conversion_equals_tracr_and_shipped(name):
    pytest.importorskip("tracr")
    from subcircuit.models.tracr import build, compare_with_tracr, compile_program

    fresh, truth = build(name)
    shipped = load(name)
    assert fresh.cfg == shipped.cfg
    for key, value in shipped.model.state_dict().items():
        assert torch.equal(value, fresh.model.state_dict()[key]), key
    assert load_ground_truth(name) == json.loads(json.dumps(truth))
    assembled, sop = compile_program(name)
    cmp = compare_with_tracr(assembled, sop, shipped)
    assert cmp["residual_max_abs_diff"] <= 1e-5
    assert cmp["output_max_abs_diff"] <= 1e-5
    assert cmp["decoded_equal"]
    assert cmp["n_inputs"] == sum(len(PROGRAMS[name].vocab) ** k for k in range(1, 6))


@pytest.mark.slow
@pytest.mark.parametrize("name", EXTRA)
def test_extra_programs_equal_tracr_and_shipped(name):
    """The same checks for the ground-truth benchmark's extra programs, lean: one compile, and the
    comparison with tracr on every input of the tasks' length (4 tokens after BOS)."""
    pytest.importorskip("tracr")
    from subcircuit.models.tracr import compare_with_tracr, compile_program, convert

    assembled, sop = compile_program(name)
    model, meta = convert(assembled, sop, name)
    shipped = load(name)
    assert model.cfg == shipped.cfg
    for key, value in shipped.model.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key
    truth = derive_ground_truth(model, meta["residual_labels"], name)
    assert load_ground_truth(name) == json.loads(json.dumps(truth))
    cmp = compare_with_tracr(assembled, sop, shipped, lengths=[4])
    assert cmp["residual_max_abs_diff"] <= 1e-5 and cmp["output_max_abs_diff"] <= 1e-5 and cmp["decoded_equal"]
