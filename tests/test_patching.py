"""The patching primitive against the plain forward pass and an independent slow reference."""

from __future__ import annotations

import random

import pytest
import torch
from reference import reference_logits

from subcircuit.graph import GRANULARITIES, build_graph
from subcircuit.patching import Patcher, make_ablation, sender_outputs


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
        return (p.logits_with_grad(mask)[0] * target).sum()

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


# ------------------------------------------------------------------ every model family's features
# One tiny config per family (conftest.FAMILY_CONFIGS: parallel attention/MLP and partial rotary,
# post-norms, q/k norms, soft-caps, per-layer windows and rotary bases, the OLMo clip). Fewer
# combinations than above, to keep the fast tier fast.


@pytest.mark.parametrize("gran", GRANULARITIES)
def test_families_all_ones_is_the_model_all_zeros_the_corrupted_run(family_model, gran):
    graph = build_graph(family_model.cfg, gran)
    clean, corr = _batch(family_model, p=9)  # longer than the sliding windows
    p = Patcher(family_model, graph, clean, make_ablation(family_model, graph, "corrupted", clean, corr))
    both = p.logits(torch.stack([graph.full_mask(), torch.zeros(graph.shape)]))
    torch.testing.assert_close(both[0], family_model(clean), atol=1e-5, rtol=0)
    torch.testing.assert_close(both[1], family_model(corr), atol=1e-5, rtol=0)


def test_families_edges_match_path_patching_reference(family_model):
    graph = build_graph(family_model.cfg, "heads-qkv")
    clean, corr = _batch(family_model, seed=3, p=9)
    abl = make_ablation(family_model, graph, "corrupted", clean, corr)
    p = Patcher(family_model, graph, clean, abl)
    full = graph.full_mask()
    edges = random.Random(0).sample(graph.edges, 3)
    removed = [{e} for e in edges] + list(_random_edge_sets(graph, 1, int(graph.n_edges * 5 / 6), seed=1))
    got = p.logits(torch.stack([full - graph.mask_from_edges(r) for r in removed]))
    for i, r in enumerate(removed):
        want = reference_logits(family_model, graph, clean, abl.outputs, r)
        torch.testing.assert_close(got[i], want, atol=1e-5, rtol=0, msg=f"removed {sorted(r)[:3]}")


def test_families_batches_where_one_receiver_differs(family_model):
    """ACDC's batches: configurations that differ in one receiver's row only. Heads whose inputs
    agree are computed once and shared; with post-norms they still share one norm scale, so a
    head that reads an unchanged input changes too (batch B: no receiver reads a0.h1, whose
    query input differs, but all read the other heads of layer 0)."""
    graph = build_graph(family_model.cfg)
    clean, corr = _batch(family_model, p=9)
    p = Patcher(family_model, graph, clean, make_ablation(family_model, graph, "corrupted", clean, corr))
    full = graph.full_mask()
    batch_a = full.repeat(4, 1, 1)
    q, logits = graph.receiver_pos["a1.h0<q>"], graph.receiver_pos["logits"]
    batch_a[1, q, 0] = 0
    batch_a[2, q, :] = 0
    batch_a[3, logits, 1] = 0
    base_b = full.clone()
    base_b[:, graph.sender_pos["a0.h1"]] = 0
    batch_b = base_b.repeat(3, 1, 1)
    q = graph.receiver_pos["a0.h1<q>"]
    batch_b[1, q, 0] = 0
    batch_b[2, q, :] = 0
    for masks in (batch_a, batch_b):
        together = p.logits(masks)
        for i in range(len(masks)):
            torch.testing.assert_close(together[i], p.logits(masks[i])[0], atol=1e-5, rtol=0)
            removed = set(graph.edges_from_mask(full - masks[i]))
            want = reference_logits(family_model, graph, clean, p.ablation.outputs, removed)
            torch.testing.assert_close(together[i], want, atol=1e-5, rtol=0)


def test_families_prefix_start_equals_full_run(family_model):
    graph = build_graph(family_model.cfg)
    clean, corr = _batch(family_model, p=9)
    p = Patcher(family_model, graph, clean, make_ablation(family_model, graph, "corrupted", clean, corr))
    gen = torch.Generator().manual_seed(1)
    base_mask = (torch.rand(graph.shape, generator=gen) > 0.2).float()
    for si, st in enumerate(graph.stages):
        masks = base_mask.repeat(2, 1, 1)
        masks[1, st.rows.start:] = (torch.rand(graph.shape[0] - st.rows.start, graph.shape[1], generator=gen) > 0.5)
        torch.testing.assert_close(p.logits(masks, start=p.prefix(base_mask, si)), p.logits(masks), atol=1e-5, rtol=0)


def test_families_sender_outputs_sum_to_the_residual(family_model):
    from subcircuit.models.transformer import unembed

    graph = build_graph(family_model.cfg, "heads")
    clean, _ = _batch(family_model, p=9)
    outs = sender_outputs(family_model, graph, clean)
    bias = sum(b.b_O for b in family_model.blocks)
    torch.testing.assert_close(unembed(family_model, outs.sum(0) + bias), family_model(clean), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["gemma2", "olmo2"])
def test_families_mask_gradients_match_finite_differences(name):
    """Post-norms, q/k norms over the whole projection and soft-caps are differentiable too."""
    from conftest import FAMILY_CONFIGS, random_model

    model = random_model(FAMILY_CONFIGS[name], seed=1).to(torch.float64)
    graph = build_graph(model.cfg)
    clean, corr = _batch(model, p=6)
    p = Patcher(model, graph, clean, make_ablation(model, graph, "corrupted", clean, corr), torch.tensor([5, 5, 5]))
    target = torch.randn(3, model.cfg.vocab_size, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def f(mask):
        return (p.logits_with_grad(mask)[0] * target).sum()

    mask = 0.25 + 0.5 * torch.rand(graph.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.enable_grad():
        m = mask.clone().requires_grad_(True)
        f(m).backward()
    for r, s in graph.edge_index[:: max(1, graph.n_edges // 8)].tolist():
        plus, minus = mask.clone(), mask.clone()
        plus[r, s] += 1e-6
        minus[r, s] -= 1e-6
        torch.testing.assert_close(m.grad[r, s], (f(plus) - f(minus)) / 2e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("gran", GRANULARITIES)
def test_families_sender_outputs_equal_the_all_ones_patched_run(family_model, gran):
    """The recording plain forward (`Transformer.run`) gives every sender the output the patched
    run with all-ones masks computes (the construction it replaced, kept here as the reference)."""
    from subcircuit.patching._fast import run_fast

    graph = build_graph(family_model.cfg, gran)
    clean, _ = _batch(family_model, p=9)
    zero = make_ablation(family_model, graph, "zero", clean)
    _, deltas = run_fast(family_model, graph, clean, zero, graph.full_mask()[None], None, None, want_deltas=True)
    torch.testing.assert_close(sender_outputs(family_model, graph, clean), deltas[0].unflatten(1, clean.shape),
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_shared_input_norm_gives_each_slot_its_own_gradient(norm):
    """The norm of slots that share one input (computed once) equals the per-slot norm, values
    and per-slot input gradients."""
    import dataclasses

    from conftest import TINY_CONFIGS

    from subcircuit.models.norms import _SharedInputNorm, normalize

    cfg = dataclasses.replace(TINY_CONFIGS["gpt2"], norm=norm)
    gen = torch.Generator().manual_seed(0)
    w, b = torch.randn(8, generator=gen, dtype=torch.float64), torch.randn(8, generator=gen, dtype=torch.float64)
    x1 = torch.randn(2, 1, 3, 4, 8, generator=gen, dtype=torch.float64)
    dy = torch.randn(2, 5, 3, 4, 8, generator=gen, dtype=torch.float64)
    with torch.enable_grad():
        a = x1.expand(2, 5, 3, 4, 8).clone().requires_grad_(True)  # the reference: five separate copies
        fast_in = x1.clone().requires_grad_(True)
        ref = normalize(a, w, b, cfg)
        out = _SharedInputNorm.apply(fast_in.expand(2, 5, 3, 4, 8), w, b, cfg)
        torch.testing.assert_close(out, ref)
        (g_ref,) = torch.autograd.grad(ref, a, dy)
        slot_grads = {}

        def keep(g):
            slot_grads["g"] = g

        x = fast_in.expand(2, 5, 3, 4, 8)
        x.register_hook(keep)
        _SharedInputNorm.apply(x, w, b, cfg).backward(dy)
        torch.testing.assert_close(slot_grads["g"], g_ref)
