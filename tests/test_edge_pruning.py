"""Edge Pruning: exactly the requested number of edges, deterministic, and the gates learn."""

from __future__ import annotations

import pytest
import torch
from test_attribution import problem_for

from subcircuit.errors import UserError
from subcircuit.methods import Context, run_method
from subcircuit.methods.selection import target_edges
from subcircuit.methods.training import expected_density, hard_concrete


@pytest.mark.parametrize("edges,sparsity", [(7, None), (None, 0.75)])
def test_exact_size_and_deterministic(edges, sparsity):
    prob = problem_for("gpt2", metric="kl")
    a = run_method("edge-pruning", prob, Context(seed=3), edges=edges, sparsity=sparsity, train_steps=15)
    b = run_method("edge-pruning", prob, Context(seed=3), edges=edges, sparsity=sparsity, train_steps=15)
    n = edges if edges is not None else round(0.25 * prob.graph.n_edges)
    assert int(a.in_circuit.sum()) == n
    assert torch.equal(a.scores, b.scores) and torch.equal(a.in_circuit, b.in_circuit)
    assert a.scores[a.in_circuit].min() >= a.scores[~a.in_circuit].max()  # top-N by log α


def test_lagrangian_drives_density_down():
    prob = problem_for("gpt2", metric="kl")
    res = run_method("edge-pruning", prob, sparsity=0.8, train_steps=60)
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
