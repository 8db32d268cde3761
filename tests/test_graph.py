"""The graph: names, counts and the dense layout."""

from __future__ import annotations

import pytest
import torch

from subcircuit.errors import UserError
from subcircuit.graph import GRANULARITIES, build_graph, edge_counts, parse_edge
from subcircuit.models import ModelConfig

GPT2_SMALL = ModelConfig(family="gpt2", n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, vocab_size=50257)
SMOLLM2 = ModelConfig(
    family="llama", n_layers=30, d_model=576, n_heads=9, n_kv_heads=3, d_head=64, d_mlp=1536, vocab_size=49152,
    norm="rmsnorm", positional="rotary", mlp="gated", act="silu",
)


def test_gpt2_small_heads_qkv_counts():
    g = build_graph(GPT2_SMALL, "heads-qkv")
    assert (len(g.senders), len(g.receivers), g.n_edges) == (157, 445, 32491)


def test_edge_counts_table():
    # The numbers quoted in docs/graph.md.
    assert edge_counts(GPT2_SMALL) == {
        "heads-qkv": (157, 445, 32491), "heads": (157, 157, 11611), "layers": (25, 25, 325)}
    assert edge_counts(SMOLLM2) == {
        "heads-qkv": (301, 481, 70651), "heads": (301, 301, 44371), "layers": (61, 61, 1891)}


def test_gqa_names_use_groups():
    g = build_graph(SMOLLM2, "heads-qkv")
    names = {r.name for r in g.receivers}
    assert "a3.g2<k>" in names and "a3.g2<v>" in names and "a3.h8<q>" in names
    assert "a3.h8<k>" not in names


def test_edges_are_earlier_to_later():
    g = build_graph(GPT2_SMALL, "heads-qkv")
    assert "a5.h5->a9.h9<q>" in g.edges and "input->m0" in g.edges and "m11->logits" in g.edges
    assert "a0.h0->m0" in g.edges  # an MLP reads its own layer's heads
    assert "a5.h5->a5.h6<q>" not in g.edges and "m0->a0.h0<q>" not in g.edges


def test_parallel_mlp_gets_no_edges_from_its_own_layer():
    cfg = ModelConfig(family="neox", n_layers=2, d_model=8, n_heads=2, d_head=4, d_mlp=8, vocab_size=5,
                      parallel_attn_mlp=True)
    g = build_graph(cfg, "heads-qkv")
    assert "a0.h0->m0" not in g.edges and "a0.h0->m1" in g.edges and "m0->a1.h0<q>" in g.edges


@pytest.mark.parametrize("gran", GRANULARITIES)
def test_mask_round_trip(gran):
    g = build_graph(GPT2_SMALL, gran)
    chosen = list(g.edges[::97])
    mask = g.mask_from_edges(chosen)
    assert g.edges_from_mask(mask) == chosen
    flat = torch.arange(g.n_edges, dtype=torch.float32)
    assert torch.equal(g.to_flat(g.from_flat(flat)), flat)


@pytest.mark.parametrize(
    "bad, message",
    [
        ("a5.h5->a9.h99<q>", "unknown receiver 'a9.h99<q>'"),
        ("a5.h5-a9.h9<q>", "malformed edge name"),
        ("a9.h9->a5.h5<q>", "does not exist"),
        ("a5.h5->a9.h9<z>", "malformed node name"),
    ],
)
def test_bad_edge_names(bad, message):
    g = build_graph(GPT2_SMALL)
    with pytest.raises(UserError, match=message):
        g.edge(bad)


def test_duplicate_edges_are_an_error():
    g = build_graph(GPT2_SMALL)
    with pytest.raises(UserError, match="twice"):
        g.mask_from_edges(["input->m0", "input->m0"])


def test_parse_edge():
    assert parse_edge("a5.h5->a9.h9<q>") == ("a5.h5", "a9.h9<q>")
    with pytest.raises(UserError):
        build_graph(GPT2_SMALL, "head")
