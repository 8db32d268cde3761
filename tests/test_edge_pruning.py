"""Edge Pruning: exactly the requested number of edges, deterministic, and the gates learn."""

from __future__ import annotations

import pytest
import torch
from test_attribution import problem_for

from subcircuit.errors import UserError
from subcircuit.methods import get_method
from subcircuit.methods.edge_pruning import expected_density, hard_concrete, target_edges


@pytest.mark.parametrize("edges,sparsity", [(7, None), (None, 0.75)])
def test_exact_size_and_deterministic(edges, sparsity):
    prob = problem_for("gpt2", metric="kl")
    fn = get_method("edge-pruning").fn
    a = fn(prob, edges=edges, sparsity=sparsity, steps=15, seed=3)
    b = fn(prob, edges=edges, sparsity=sparsity, steps=15, seed=3)
    n = edges if edges is not None else round(0.25 * prob.graph.n_edges)
    assert int(a.in_circuit.sum()) == n
    assert torch.equal(a.scores, b.scores) and torch.equal(a.in_circuit, b.in_circuit)
    assert a.scores[a.in_circuit].min() >= a.scores[~a.in_circuit].max()  # top-N by log α


def test_lagrangian_drives_density_down():
    prob = problem_for("gpt2", metric="kl")
    res = get_method("edge-pruning").fn(prob, sparsity=0.8, steps=60, seed=0)
    assert res.info["expected_density"] < 0.9  # started at ≈ 1 (log α = 3)


def test_hard_concrete_range_and_density():
    la = torch.tensor([-10.0, 0.0, 10.0])
    z = hard_concrete(la, torch.Generator().manual_seed(0))
    assert ((z >= 0) & (z <= 1)).all()
    assert hard_concrete(la, None, train=False).tolist() == pytest.approx([0.0, 0.5, 1.0], abs=1e-3)
    assert 0.4 < float(expected_density(torch.zeros(100))) < 1.0


def test_target_edges():
    assert target_edges(100, 10, None) == 10
    assert target_edges(100, None, 0.9) == 10
    with pytest.raises(UserError):
        target_edges(100, 10, 0.5)
    with pytest.raises(UserError):
        target_edges(100, None, 1.0)
