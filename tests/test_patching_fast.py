"""The patched run without autograd (`Patcher.logits`) against its reference, the autograd path,
which computes every component for every configuration."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_CONFIGS, random_model
from hypothesis import given, settings
from hypothesis import strategies as st

from subcircuit.graph import GRANULARITIES, build_graph
from subcircuit.patching import Patcher, Prefix, make_ablation


def _both(p: Patcher, masks: torch.Tensor, start=None) -> tuple[torch.Tensor, torch.Tensor]:
    fast = p.logits(masks, start=start)  # the engine without autograd
    ref = p.logits_with_grad(masks, start=start).detach()  # the autograd engine, whatever the grad mode
    return fast, ref


def _acdc_like(graph, gen: torch.Generator, c: int, density: float) -> tuple[torch.Tensor, int]:
    """c cumulative removals at the receivers of one stage of a random graph (ACDC's batches),
    with a few fractional weights; returns the masks and the stage's index."""
    base = (torch.rand(graph.shape, generator=gen) < density).float()
    base[torch.rand(graph.shape, generator=gen) < 0.05] = 0.5
    si = int(torch.randint(0, len(graph.stages), (1,), generator=gen))
    rows = graph.stages[si].rows
    masks = base.repeat(c, 1, 1)
    for j in range(1, c):
        r = int(torch.randint(rows.start, rows.stop, (1,), generator=gen))
        s = int(torch.randint(0, graph.shape[1], (1,), generator=gen))
        masks[j:, r, s] = 0
    return masks, si


@pytest.mark.parametrize("gran", GRANULARITIES)
def test_fast_run_equals_autograd_run(family_model, gran):
    graph = build_graph(family_model.cfg, gran)
    g = torch.Generator().manual_seed(0)
    v = family_model.cfg.vocab_size
    clean, corr = torch.randint(0, v, (3, 8), generator=g), torch.randint(0, v, (3, 8), generator=g)
    abl = make_ablation(family_model, graph, "corrupted", clean, corr)
    for positions in (None, torch.tensor([7, 2, 5])):
        p = Patcher(family_model, graph, clean, abl, positions)
        for density in (0.1, 0.6, 0.95):
            masks, si = _acdc_like(graph, g, 4, density)
            torch.testing.assert_close(*_both(p, masks), atol=1e-5, rtol=0)
            pre = p.prefix(masks[0], si)
            torch.testing.assert_close(*_both(p, masks, pre), atol=1e-5, rtol=0)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), c=st.integers(1, 5), density=st.floats(0.0, 1.0))
def test_fast_run_equals_autograd_run_on_random_batches(seed, c, density):
    """Random configurations (unrelated to each other) on a tiny GPT-2-style model."""
    model = random_model(TINY_CONFIGS[sorted(TINY_CONFIGS)[0]], seed=1)
    graph = build_graph(model.cfg, "heads-qkv")
    g = torch.Generator().manual_seed(seed)
    v = model.cfg.vocab_size
    clean, corr = torch.randint(0, v, (2, 6), generator=g), torch.randint(0, v, (2, 6), generator=g)
    p = Patcher(model, graph, clean, make_ablation(model, graph, "corrupted", clean, corr))
    masks = (torch.rand(c, *graph.shape, generator=g) < density).float()
    torch.testing.assert_close(*_both(p, masks), atol=1e-5, rtol=0)


def test_memo_reuses_outputs_without_changing_results(family_model):
    """ACDC's sequence of batches (later stages first, each from its prefix, the graph pruned a
    little after each): with a `Memo` the logits are those of runs without one, and components
    whose inputs did not change are reused."""
    from subcircuit.patching import Memo

    graph = build_graph(family_model.cfg, "heads-qkv")
    g = torch.Generator().manual_seed(2)
    v = family_model.cfg.vocab_size
    clean, corr = torch.randint(0, v, (3, 8), generator=g), torch.randint(0, v, (3, 8), generator=g)
    p = Patcher(family_model, graph, clean, make_ablation(family_model, graph, "corrupted", clean, corr),
                torch.tensor([7, 3, 5]))
    start = graph.full_mask()
    n = len(graph.stages)
    deltas = p.prefix(start, n - 1).deltas
    memo, cur = Memo(), start.clone()
    for si in reversed(range(n)):
        st = graph.stages[si]
        pre = Prefix(si, deltas[: st.senders.start])
        for _ in range(3):
            masks = cur.repeat(3, 1, 1)
            for j in range(1, 3):
                r = int(torch.randint(st.rows.start, st.rows.stop, (1,), generator=g))
                masks[j:, r, int(torch.randint(0, graph.shape[1], (1,), generator=g))] = 0
            torch.testing.assert_close(p.logits(masks, start=pre, memo=memo), p.logits(masks, start=pre),
                                       atol=1e-6, rtol=0)
            cur = masks[-1] if bool(torch.rand(1, generator=g) < 0.5) else cur  # "removed"
    assert memo.hits > 0


def test_memo_forgets_entries_of_another_batch(tiny_model):
    """A `Memo` used with another batch (or ablation, or prefix cache) starts over instead of
    reusing outputs that do not apply."""
    from subcircuit.patching import Memo

    graph = build_graph(tiny_model.cfg)
    g = torch.Generator().manual_seed(3)
    v = tiny_model.cfg.vocab_size
    memo = Memo()
    for _ in range(2):
        clean, corr = torch.randint(0, v, (2, 6), generator=g), torch.randint(0, v, (2, 6), generator=g)
        p = Patcher(tiny_model, graph, clean, make_ablation(tiny_model, graph, "corrupted", clean, corr))
        mask = graph.full_mask()
        torch.testing.assert_close(p.logits(mask, memo=memo), p.logits(mask), atol=1e-6, rtol=0)
