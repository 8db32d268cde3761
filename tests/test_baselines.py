"""Baselines (node patching, HISP, SP, random) and every method's scores in circuit.json."""

from __future__ import annotations

import pytest
import torch
from test_attribution import problem_for

from subcircuit.circuit import load_circuit
from subcircuit.graph import build_graph
from subcircuit.methods import METHODS, get_method, run_method
from subcircuit.methods.base import Context, option_fields
from subcircuit.methods.baselines import node_to_edge_scores
from subcircuit.models import load
from subcircuit.runs.discover import discover
from subcircuit.runs.options import DiscoverOptions


def test_node_patching_is_exact_sender_ablation():
    prob = problem_for("llama-gqa", metric="kl")
    g = prob.graph
    res = run_method("node-patching", prob)
    full = g.full_mask()
    with torch.no_grad():
        base = float(prob.loss(full)[0])
        for name in ("a1.h2", "m0", "input"):
            s = g.sender_pos[name]
            m = full.clone()
            m[:, s] = 0
            assert res.info["node_scores"][name] == pytest.approx(float(prob.loss(m)[0]) - base, abs=1e-5)
            e = g.edges.index(next(x for x in g.edges if x.startswith(name + "->")))
            assert float(res.scores[e]) == pytest.approx(res.info["node_scores"][name], abs=1e-5)


def test_node_to_edge_min_rule():
    prob = problem_for("gpt2")
    g = prob.graph
    node = torch.arange(len(g.senders), dtype=torch.float32)
    sc = node_to_edge_scores(g, node)
    assert float(sc[g.edge_position("a0.h1->a1.h0<q>")]) == min(node[g.sender_pos["a0.h1"]],
                                                               node[g.sender_pos["a1.h0"]])
    assert float(sc[g.edge_position("input->logits")]) == float(node.max())


def test_hisp_sp_random_shapes_and_determinism():
    prob = problem_for("gpt2", metric="logit-diff")
    n = prob.graph.n_edges
    h = run_method("hisp", prob).scores
    assert h.shape == (n,) and (h >= 0).all() and h.max() > 0
    a = run_method("sp", prob, Context(seed=1), train_steps=10).scores
    b = run_method("sp", prob, Context(seed=1), train_steps=10).scores
    assert torch.equal(a, b)
    r1, r2 = run_method("random", prob, Context(seed=5)).scores, run_method("random", prob, Context(seed=5)).scores
    assert torch.equal(r1, r2) and not torch.equal(r1, run_method("random", prob, Context(seed=6)).scores)


@pytest.mark.parametrize("method", sorted(set(METHODS) - {"acdc"}))
def test_every_method_writes_circuit_json(method, tmp_path):
    lm = load("toy-induction-2l")
    fields = {f.name for f in option_fields(get_method(method).options)}
    extra = {k: v for k, v in (("train_steps", 5), ("ig_steps", 2)) if k in fields}
    opts = DiscoverOptions.build(method=method, edges=12, n_examples=8, **extra)
    discover(lm, "induction", opts, out=tmp_path)
    graph = build_graph(lm.cfg, "heads-qkv")
    c = load_circuit(tmp_path / "circuit.json", graph)
    assert c.method == method and len(c.edges) == graph.n_edges
    assert c.results["n_edges_in_circuit"] == 12
    assert all(isinstance(e["score"], float) for e in c.edges)


def test_acdc_candidates_writes_circuit_json(tmp_path):
    lm = load("toy-induction-2l")
    opts = DiscoverOptions.build(method="acdc", candidates=20, n_examples=8, ig_steps=2)
    c = discover(lm, "induction", opts, out=tmp_path)
    assert c.params["candidates"] == 20 and c.results["n_edges_in_circuit"] <= 20
    load_circuit(tmp_path / "circuit.json", build_graph(lm.cfg, "heads-qkv"))


def test_acdc_initial_mask_fast_equals_reference_and_tries_only_candidates():
    from subcircuit.methods.acdc import acdc_fast, acdc_reference

    prob = problem_for("gpt2", metric="kl")
    g = prob.graph
    init = g.from_flat((torch.rand(g.n_edges, generator=torch.Generator().manual_seed(2)) < 0.5).float())
    ref = acdc_reference(prob, 0.003, initial_mask=init)
    fast = acdc_fast(prob, 0.003, initial_mask=init)
    assert torch.equal(ref.mask, fast.mask)
    assert [(t.receiver, t.sender, t.removed) for t in ref.trace] == [
        (t.receiver, t.sender, t.removed) for t in fast.trace]
    assert all(init[t.receiver, t.sender] == 1 for t in ref.trace)
    assert bool(((ref.mask != 0) <= (init != 0)).all())


def test_an_option_the_method_does_not_take_is_refused(capsys):
    """`--abs` with `--method eap-ig` was accepted and ignored; now one line naming the flag and the
    method's options (exit 2 on the command line)."""
    from subcircuit.cli import run_cli
    from subcircuit.errors import UserError

    with pytest.raises(UserError, match=r"^--abs is not an option of eap-ig \(its options: --ig-steps, --ig, "
                                         r"--edges, --threshold, --sparsity, --selection, --prune, --ranking\)$"):
        discover("toy-induction-2l", "induction", DiscoverOptions.build(method="eap-ig", abs_value=True, edges=200))
    rc = run_cli(["discover", "--model", "toy-induction-2l", "--task", "induction", "--method", "acdc",
                  "--selection", "greedy", "--out", "/nonexistent/never-written"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "--selection is not an option of acdc" in err


def test_sweep_passes_every_method_option(tmp_path):
    from subcircuit.runs.sweep import sweep

    res = sweep("toy-induction-2l", "induction", DiscoverOptions.build(method="eap-ig", ig_steps=2, ig="activations",
                                                                 n_examples=4), sizes=[3], out=tmp_path)
    assert res.circuits["edges-3"].params["ig_steps"] == 2 and res.circuits["edges-3"].params["ig"] == "activations"
