"""The patching primitive against the plain forward pass and an independent slow reference."""

from __future__ import annotations

import random

import pytest
import torch
from reference import reference_logits

from subcircuit.graph import GRANULARITIES, build_graph
from subcircuit.patching import Patcher, make_ablation, sender_outputs

torch.set_grad_enabled(False)


def _batch(model, seed=0, b=3, p=7):
    g = torch.Generator().manual_seed(seed)
    v = model.cfg.vocab_size
    return torch.randint(0, v, (b, p), generator=g), torch.randint(0, v, (b, p), generator=g)


@pytest.mark.parametrize("gran", GRANULARITIES)
@pytest.mark.parametrize("kind", ["corrupted", "mean", "zero"])
def test_all_ones_is_the_model(tiny_model, gran, kind):
    graph = build_graph(tiny_model.cfg, gran)
    clean, corr = _batch(tiny_model)
    p = Patcher(tiny_model, graph, clean, make_ablation(tiny_model, graph, kind, clean, corr))
    torch.testing.assert_close(p.logits(graph.full_mask())[0], tiny_model(clean), atol=1e-5, rtol=0)


@pytest.mark.parametrize("gran", GRANULARITIES)
def test_all_zeros_is_the_corrupted_run(tiny_model, gran):
    graph = build_graph(tiny_model.cfg, gran)
    clean, corr = _batch(tiny_model)
    p = Patcher(tiny_model, graph, clean, make_ablation(tiny_model, graph, "corrupted", clean, corr))
    torch.testing.assert_close(p.logits(torch.zeros(graph.shape))[0], tiny_model(corr), atol=1e-5, rtol=0)


def _random_edge_sets(graph, n_sets, size, seed):
    rng = random.Random(seed)
    return [frozenset(rng.sample(graph.edges, size)) for _ in range(n_sets)]


@pytest.mark.parametrize("gran", GRANULARITIES)
@pytest.mark.parametrize("kind", ["corrupted", "mean", "zero"])
def test_single_edges_match_path_patching_reference(tiny_model, gran, kind):
    graph = build_graph(tiny_model.cfg, gran)
    clean, corr = _batch(tiny_model, seed=3)
    abl = make_ablation(tiny_model, graph, kind, clean, corr)
    p = Patcher(tiny_model, graph, clean, abl)
    edges = random.Random(0).sample(graph.edges, min(6, graph.n_edges))
    full = graph.full_mask()
    masks = torch.stack([full - graph.mask_from_edges([e]) for e in edges])
    got = p.logits(masks)
    for i, e in enumerate(edges):
        want = reference_logits(tiny_model, graph, clean, abl.outputs, {e})
        torch.testing.assert_close(got[i], want, atol=1e-5, rtol=0, msg=f"edge {e}")


@pytest.mark.parametrize("gran", GRANULARITIES)
@pytest.mark.parametrize("frac", [1 / 3, 5 / 6])
def test_many_removed_edges_match_reference(tiny_model, gran, frac):
    """Upstream removals propagate: senders' clean values are those of the patched run. Both
    fractions exercise the two sparse forms (few edges removed / few edges kept)."""
    graph = build_graph(tiny_model.cfg, gran)
    clean, corr = _batch(tiny_model, seed=5)
    abl = make_ablation(tiny_model, graph, "corrupted", clean, corr)
    p = Patcher(tiny_model, graph, clean, abl)
    for removed in _random_edge_sets(graph, 2, int(graph.n_edges * frac), seed=1):
        got = p.logits(graph.full_mask() - graph.mask_from_edges(removed))[0]
        torch.testing.assert_close(got, reference_logits(tiny_model, graph, clean, abl.outputs, removed),
                                   atol=1e-5, rtol=0)


def test_batched_configurations_equal_separate_runs(tiny_model):
    graph = build_graph(tiny_model.cfg)
    clean, corr = _batch(tiny_model)
    positions = torch.tensor([6, 3, 0])
    p = Patcher(tiny_model, graph, clean, make_ablation(tiny_model, graph, "corrupted", clean, corr), positions)
    masks = (torch.rand(5, *graph.shape, generator=torch.Generator().manual_seed(0)) > 0.3).float()
    together = p.logits(masks)
    assert together.shape == (5, 3, tiny_model.cfg.vocab_size)
    for i in range(5):
        torch.testing.assert_close(together[i], p.logits(masks[i])[0], atol=1e-5, rtol=0)
    full = tiny_model(clean)[torch.arange(3), positions]
    torch.testing.assert_close(p.logits(graph.full_mask())[0], full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("gran", GRANULARITIES)
def test_prefix_start_equals_full_run(tiny_model, gran):
    graph = build_graph(tiny_model.cfg, gran)
    clean, corr = _batch(tiny_model)
    p = Patcher(tiny_model, graph, clean, make_ablation(tiny_model, graph, "corrupted", clean, corr))
    gen = torch.Generator().manual_seed(1)
    base_mask = (torch.rand(graph.shape, generator=gen) > 0.2).float()
    for si in range(len(graph.stages)):
        st = graph.stages[si]
        pre = p.prefix(base_mask, si)
        # Later receivers may differ from the prefix's mask; earlier rows must match it.
        masks = base_mask.repeat(3, 1, 1)
        masks[1:, st.rows.start:] = (torch.rand(2, graph.shape[0] - st.rows.start, graph.shape[1],
                                                generator=gen) > 0.5).float()
        torch.testing.assert_close(p.logits(masks, start=pre), p.logits(masks), atol=1e-5, rtol=0)


def test_sender_outputs_sum_to_the_residual(tiny_model):
    graph = build_graph(tiny_model.cfg, "heads")
    clean, _ = _batch(tiny_model)
    outs = sender_outputs(tiny_model, graph, clean)
    assert outs.shape == (len(graph.senders), *clean.shape, tiny_model.cfg.d_model)
    bias = sum(b.b_O for b in tiny_model.blocks)
    from subcircuit.models.transformer import unembed

    torch.testing.assert_close(unembed(tiny_model, outs.sum(0) + bias), tiny_model(clean), atol=1e-5, rtol=0)


def test_mask_gradients_match_finite_differences(tiny_model):
    graph = build_graph(tiny_model.cfg)
    clean, corr = _batch(tiny_model)
    p = Patcher(tiny_model, graph, clean, make_ablation(tiny_model, graph, "corrupted", clean, corr),
                torch.tensor([6, 6, 6]))
    dtype = torch.float64
    model64 = tiny_model.to(dtype)
    p = Patcher(model64, graph, clean, make_ablation(model64, graph, "corrupted", clean, corr), p.positions)
    target = torch.randn(3, model64.cfg.vocab_size, dtype=dtype, generator=torch.Generator().manual_seed(0))

    def f(mask):
        return (p.logits(mask)[0] * target).sum()

    mask = (0.25 + 0.5 * torch.rand(graph.shape, dtype=dtype, generator=torch.Generator().manual_seed(2)))
    with torch.enable_grad():
        m = mask.clone().requires_grad_(True)
        f(m).backward()
    grad = m.grad
    assert grad is not None and grad[graph.exists].abs().sum() > 0
    for r, s in graph.edge_index[:: max(1, graph.n_edges // 15)].tolist():
        eps = 1e-6
        plus, minus = mask.clone(), mask.clone()
        plus[r, s] += eps
        minus[r, s] -= eps
        fd = (f(plus) - f(minus)) / (2 * eps)
        torch.testing.assert_close(grad[r, s], fd, atol=1e-6, rtol=1e-4)
    tiny_model.to(torch.float32)
