"""Hand-built micro models: they compute their tasks, their ground truths (by construction) are
what they compute (patching), and a weight-based reading would be fooled by their distractors."""

from __future__ import annotations

import json

import pytest
import torch

from subcircuit.evaluation.ground_truth_suite import setup, suite_model
from subcircuit.evaluation.reference import reference_dir
from subcircuit.models import MODELS, load
from subcircuit.models.micro import BUILDERS, GROUND_TRUTH, N_PARAMS
from subcircuit.models.tracr import derive_ground_truth
from subcircuit.tasks import get_task

NAMES = sorted(BUILDERS)


@pytest.mark.parametrize("name", NAMES)
def test_registered_deterministic_and_does_its_task(name):
    assert name in MODELS and MODELS[name].available()
    a, b = load(name), load(name)
    assert a.model.n_params() == N_PARAMS[name] == MODELS[name].n_params
    assert all(torch.equal(v, b.model.state_dict()[k]) for k, v in a.model.state_dict().items())
    task = get_task(name, a, 64, 1)
    with torch.no_grad():
        logits = a.model(task.clean)[torch.arange(task.n), task.positions]
    assert (logits.argmax(-1) == task.correct[:, 0]).all()


@pytest.mark.parametrize("name", NAMES)
def test_shipped_reference_is_the_construction(name):
    d = json.loads((reference_dir() / f"{name}.json").read_text())
    assert d["model"] == name and tuple(d["edges"]) == GROUND_TRUTH[name]
    assert load(name).meta["ground_truth"]["edges"] == list(GROUND_TRUTH[name])


def test_micro_circuits_compose_through_keys_and_queries():
    assert "a0.h0->a1.h0<k>" in GROUND_TRUTH["micro-induction"]  # K-composition
    assert "m0->a1.h0<q>" in GROUND_TRUTH["micro-pointer"]  # Q-composition (through the MLP)
    for edges in GROUND_TRUTH.values():  # two parallel paths, distractor heads in no edge
        assert sum(e.startswith("a0.h0->") for e in edges) and sum(e.startswith("a0.h1->") for e in edges)
        assert not any("a0.h2" in e or "a1.h2" in e for e in edges)


def test_weight_reading_agrees_on_induction_and_is_wrong_both_ways_on_pointer():
    """Reading which subspaces each component touches (tracr's derivation, `derive_ground_truth`)
    gives micro-induction's circuit exactly. On micro-pointer it is wrong both ways: it draws the
    distractor a0.h2 -> m0 (m0's junk units), and it drops the pointer readers' query and key (their
    query/key block is constant over the key rows it reads, tracr's test for a TRUE selector; but
    every other key position has no row, so the pattern does depend on the key). Patching decides:
    the extra edges do nothing, the missing ones matter (test_ground_truth_is_what_the_model_computes)."""
    for name in NAMES:
        loaded = load(name)
        derived = set(derive_ground_truth(loaded.model, loaded.meta["residual_labels"], name)["edges"])
        truth = set(GROUND_TRUTH[name])
        if name == "micro-induction":
            assert derived == truth
            continue
        assert derived - truth == {"input->a0.h2<q>", "input->a0.h2<k>", "input->a0.h2<v>", "a0.h2->m0"}
        assert truth - derived == {f"input->a0.h{h}<{p}>" for h in (0, 1) for p in "qk"}
        s = setup(suite_model(name), n_examples=16)
        g, p = s.graph, s.problem
        full = g.full_mask()
        for e in derived - truth:
            m = full.clone()
            r, c = g.edge(e)
            m[r, c] = 0
            assert float(p.loss(m.unsqueeze(0))[0]) == pytest.approx(0.0, abs=1e-9)
