"""The patching primitive: a patched forward pass with all-ones masks against the plain forward."""

from __future__ import annotations

import torch
from common import medians

from subcircuit.graph import build_graph
from subcircuit.models import load
from subcircuit.patching import Patcher, make_ablation


def _compare(name: str, b: int, p: int, gran: str = "heads-qkv", repeats: int = 5) -> list[dict]:
    model = load(name).model
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(0, model.cfg.vocab_size, (b, p), generator=g)
    corr = torch.randint(0, model.cfg.vocab_size, (b, p), generator=g)
    graph = build_graph(model.cfg, gran)
    abl = make_ablation(model, graph, "corrupted", clean, corr)
    full = graph.full_mask()
    everywhere = Patcher(model, graph, clean, abl)
    at_end = Patcher(model, graph, clean, abl, torch.full((b,), p - 1))
    def plain():
        with torch.no_grad():
            return model(clean)

    t = medians({
        "plain": plain,
        "patched": lambda: everywhere.logits(full),
        "patched@pos": lambda: at_end.logits(full),
    }, repeats=repeats)
    return [{
        "model": name, "graph": f"{gran} ({graph.n_edges} edges)", "batch": f"{b}x{p}",
        "plain_s": t["plain"], "patched_s": t["patched"], "ratio": t["patched"] / t["plain"],
        "patched_at_metric_pos_s": t["patched@pos"], "ratio_at_pos": t["patched@pos"] / t["plain"],
    }]


def _memory(configs: int = 8) -> list[dict]:
    model = load("smollm2-135m").model
    g = torch.Generator().manual_seed(0)
    clean = torch.randint(0, model.cfg.vocab_size, (16, 16), generator=g)
    corr = torch.randint(0, model.cfg.vocab_size, (16, 16), generator=g)
    graph = build_graph(model.cfg, "heads-qkv")
    p = Patcher(model, graph, clean, make_ablation(model, graph, "corrupted", clean, corr), torch.full((16,), 15))
    # Random masks (80% ones): no sender can be skipped and both mixing forms are exercised.
    masks = (torch.rand(configs, *graph.shape, generator=g) < 0.8).float()
    t = medians({"run": lambda: p.logits(masks)}, repeats=2)
    return [{"model": "smollm2-135m", "configs": configs, "batch": "16x16", "median_s": t["run"],
             "note": "peak_mb is the whole process (model weights ≈ 650 MB included)"}]


CASES = {
    "smollm2": lambda: _compare("smollm2-135m", 16, 16),
    "toy": lambda: _compare("toy-induction-2l", 16, 32),
    "smollm2-8-configs-memory": _memory,
}
