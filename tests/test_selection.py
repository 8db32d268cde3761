"""Selection from scores: top-n, threshold, greedy growth from the logits, disconnected pruning."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_CONFIGS
from test_attribution import problem_for

from subcircuit.errors import UserError
from subcircuit.graph import build_graph
from subcircuit.methods.selection import prune_disconnected, select_greedy, select_threshold, select_top


def graph(name="gpt2", gran="heads-qkv"):
    return build_graph(TINY_CONFIGS[name], gran)


def keep_of(g, names):
    k = torch.zeros(g.n_edges, dtype=torch.bool)
    for n in names:
        k[g.edge_position(n)] = True
    return k


def test_top_and_threshold():
    s = torch.tensor([0.1, 0.5, 0.3, 0.5])
    assert select_top(s, 2).tolist() == [False, True, False, True]
    assert select_threshold(s, 0.3).tolist() == [False, True, True, True]
    with pytest.raises(UserError):
        select_top(s, 0)


def test_prune_keeps_paths_and_drops_dangling():
    g = graph()
    path = ["input->a0.h0<v>", "a0.h0->m1", "m1->logits"]
    dangling_in = ["a0.h1->a1.h0<q>"]  # a1.h0 feeds nothing kept; a0.h1 has no input
    no_source = ["m0->logits"]  # m0 has no kept input
    keep = keep_of(g, path + dangling_in + no_source)
    out = prune_disconnected(g, keep)
    assert set(g.edges[i] for i in out.nonzero().flatten().tolist()) == set(path)


def test_prune_is_exact_under_corrupted_ablation():
    """Edges off every input→logits path change nothing when the ablation is the corrupted run."""
    prob = problem_for("gpt2", metric="kl")
    g = prob.graph
    keep = select_top(torch.rand(g.n_edges, generator=torch.Generator().manual_seed(0)), g.n_edges // 4)
    pruned = prune_disconnected(g, keep)
    assert int(pruned.sum()) < int(keep.sum())
    with torch.no_grad():
        a, b = prob.loss(torch.stack([g.from_flat(keep.float()), g.from_flat(pruned.float())]))
    assert float(a) == pytest.approx(float(b), abs=1e-5)


def test_greedy_grows_from_logits():
    g = graph("llama-gqa")
    scores = torch.rand(g.n_edges, generator=torch.Generator().manual_seed(1))
    keep = select_greedy(g, scores, 15)
    assert int(keep.sum()) == 15
    # the first edge is the best edge into logits, and every kept edge's receiver is logits or
    # belongs to a component that is the sender of a kept edge
    into_logits = [i for i, e in enumerate(g.edges) if e.endswith("->logits")]
    best = max(into_logits, key=lambda i: float(scores[i]))
    assert keep[best]
    kept = [g.edges[i] for i in keep.nonzero().flatten().tolist()]
    senders = {e.split("->")[0] for e in kept}
    for e in kept:
        r = e.split("->")[1]
        comp = r.split("<")[0]
        if ".g" in comp:  # a key/value group: any head of the group
            L, G = comp[1:].split(".g")
            gs = TINY_CONFIGS["llama-gqa"].group_size
            assert any(f"a{L}.h{h}" in senders for h in range(int(G) * gs, (int(G) + 1) * gs))
        else:
            assert r == "logits" or comp in senders
