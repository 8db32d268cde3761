"""The ground-truth circuit of a tracr model, derived from its converted weights.

A component reads the residual directions where its input weights (W_Q, W_K, W_V per head; W_in
for MLPs; W_U for the logits) have a nonzero row and writes the directions where its output
weights (W_O, W_out, W_E/W_pos for `input`) have a nonzero column. An edge sender -> receiver
is in the circuit when the sender is earlier and writes a direction the receiver reads (for
queries and keys: a direction that changes the attention scores, see `_qk_reads`). Empty heads
and MLPs (tracr pads layers with all-zero components) read and write nothing and so are in no
edge. The shipped circuits are in `subcircuit/data/reference/tracr-*.json`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import torch

from subcircuit.models.tracr.programs import reference_path
from subcircuit.models.transformer import Transformer

SOURCE = "derived from the compiled RASP program by scripts/build_tracr_models.py"


def _rows(W: torch.Tensor) -> set[int]:
    """Residual directions a [D, ...] input weight reads (nonzero rows)."""
    return set(torch.nonzero(W.reshape(W.shape[0], -1).abs().amax(1) > 0).flatten().tolist())


def _cols(W: torch.Tensor) -> set[int]:
    """Residual directions a [..., D] output weight writes (nonzero columns)."""
    return set(torch.nonzero(W.reshape(-1, W.shape[-1]).abs().amax(0) > 0).flatten().tolist())


def _subspaces(dims: set[int], labels: Sequence[str]) -> list[str]:
    """Group residual directions by subspace name (`tokens:1` -> `tokens`), in residual order."""
    out: list[str] = []
    for i in sorted(dims):
        s = labels[i].split(":")[0]
        if s not in out:
            out.append(s)
    return out


def _qk_reads(W_Q: torch.Tensor, W_K: torch.Tensor, labels: Sequence[str],
              selector_width: bool = False) -> tuple[set[int], set[int]]:
    """The residual directions a head's query and key read *that change its attention scores*.

    Two parts of tracr's attention weights carry no information about the task:
    - the compiler's always-attend-to-BOS term (query `one` × key `tokens:BOS`), added to every
      head so that a query with no selected key attends to BOS;
    - a selector whose predicate is TRUE (e.g. `length`'s Select(tokens, tokens, TRUE)): every
      query/key value pair gets the same score, so the pattern does not depend on the inputs.
    So after dropping the BOS term, a (query subspace, key subspace) block of W_Q W_Kᵀ counts
    only if it is not constant; its rows and columns are then the reads.

    A `SelectorWidth` head (`selector_width`: it writes a `*_selector_width_attn_output`) is the
    exception: it computes the width from how much attention goes to BOS, so with a selector that
    is not TRUE its BOS term carries the answer, and its `one` / `tokens:BOS` rows are reads too
    (tracr-sort's `target_pos` head: without them the width is wrong on every input)."""
    qk = W_Q @ W_K.T  # [d d]
    group = [lab.split(":")[0] for lab in labels]
    bos_q = {i for i, lab in enumerate(labels) if lab == "one"}
    bos_k = {i for i, lab in enumerate(labels) if lab == "tokens:BOS"}
    q_rows = sorted(_rows(W_Q) - bos_q)
    k_rows = sorted(_rows(W_K) - bos_k)
    q_out: set[int] = set()
    k_out: set[int] = set()
    for qg in dict.fromkeys(group[i] for i in q_rows):
        qi = [i for i in q_rows if group[i] == qg]
        for kg in dict.fromkeys(group[j] for j in k_rows):
            kj = [j for j in k_rows if group[j] == kg]
            block = qk[qi][:, kj]
            if block.numel() and float(block.max() - block.min()) > 1e-9:
                q_out.update(qi)
                k_out.update(kj)
    if selector_width and q_out:
        q_out |= _rows(W_Q) & bos_q
        k_out |= _rows(W_K) & bos_k
    return q_out, k_out


def derive_ground_truth(model: Transformer, labels: Sequence[str], name: str) -> dict[str, Any]:
    """The circuit of a tracr model at `heads-qkv` granularity, from its weights.

    Query and key reads are those that change the attention scores (see `_qk_reads`).

    Senders: `input` (W_E, W_pos), `a{L}.h{H}` (W_O[h]), `m{L}` (W_out, b_out). Receivers:
    `a{L}.h{H}<q|k|v>` (W_Q/W_K/W_V[h]), `m{L}` (W_in), `logits` (W_U). Edge s -> r when s is
    earlier than r and writes a direction r reads. Then only components on a path to the
    logits are kept (in tracr every compiled component feeds the output, so this removes
    nothing for the shipped programs; it guards against dead components)."""
    cfg = model.cfg
    writes: dict[str, set[int]] = {"input": _cols(model.W_E) | _cols(model.W_pos)}
    reads: dict[str, set[int]] = {}
    order: list[tuple[str, int]] = [("input", -1)]  # (sender, layer it belongs to; MLPs at L + 0.5)
    receivers: list[tuple[str, str, float]] = []  # (receiver name, its component, position)
    for L, blk in enumerate(model.blocks):
        for h in range(cfg.n_heads):
            node = f"a{L}.h{h}"
            writes[node] = _cols(blk.W_O[h]) if _rows(blk.W_V[h]) else set()
            sw = any("selector_width_attn_output" in labels[i] for i in _cols(blk.W_O[h]))
            q_reads, k_reads = _qk_reads(blk.W_Q[h], blk.W_K[h], labels, sw)
            for part, dims in (("q", q_reads), ("k", k_reads), ("v", _rows(blk.W_V[h]))):
                reads[f"{node}<{part}>"] = dims
                receivers.append((f"{node}<{part}>", node, L))
            order.append((node, L))
        if not cfg.has_mlp:  # attention-only (the hand-built micro models)
            continue
        node = f"m{L}"
        writes[node] = (_cols(blk.W_out) | _cols(blk.b_out[None])) if _rows(blk.W_in) else _cols(blk.b_out[None])
        reads[node] = _rows(blk.W_in)
        receivers.append((node, node, L + 0.5))
        order.append((node, L + 0.5))
    reads["logits"] = _rows(model.W_U)
    receivers.append(("logits", "logits", cfg.n_layers))
    pos = dict(order)

    edges = [
        (s, r, comp)
        for r, comp, rpos in receivers
        for s, spos in order
        if spos < rpos and writes[s] & reads[r]
    ]
    alive = {"logits"}
    changed = True
    while changed:
        changed = False
        for s, _r, comp in edges:
            if comp in alive and s not in alive:
                alive.add(s)
                changed = True
    kept = [(s, r) for s, r, comp in edges if comp in alive and (s in alive)]
    nodes = sorted({n for n in alive if n not in ("logits", "input")}, key=lambda n: (pos[n], n))
    components = {
        n: {
            "writes": _subspaces(writes[n], labels),
            **(
                {"reads": {p: _subspaces(reads[f"{n}<{p}>"], labels) for p in "qkv"}}
                if n.startswith("a")
                else {"reads": _subspaces(reads[n], labels)}
            ),
        }
        for n in nodes
    }
    components["input"] = {"writes": _subspaces(writes["input"], labels)}
    components["logits"] = {"reads": _subspaces(reads["logits"], labels)}
    return {
        "model": name,
        "granularity": "heads-qkv",
        "edges": [f"{s}->{r}" for s, r in kept],
        "nodes": nodes,
        "components": components,
        "n_edges_before_dead_pruning": len(edges),
        "source": SOURCE,
    }


def load_ground_truth(name: str) -> dict[str, Any]:
    """The shipped ground-truth circuit of a tracr model (see `derive_ground_truth`)."""
    return json.loads(reference_path(name).read_text())
