"""Hand-built micro models: attention circuits whose weights are set by construction.

The tracr models compose only through values and MLPs in the ways RASP compiles, and
`toy-induction-2l` was trained, so its circuit is measured rather than known. These models are
written by hand instead: every component reads and writes named one-hot subspaces of the
residual stream (listed in the meta as `residual_labels`), attention patterns are made sharp by
the size of the query/key weights, and the circuit is known because it was built. Each model has:

- key composition or query composition (a head's key or query reads an earlier head's output),
- several parallel paths (two heads computing the same thing, both read downstream),
- distractor heads (and MLP units) that read the real inputs, even the circuit's own
  intermediate subspaces, but write subspaces nothing on a path to the logits reads.

`micro-induction` (attention-only, 2 layers x 3 heads, causal): prompt `BOS x1 … xn` of distinct
tokens, except that the last token repeats an earlier x_s; answer x_{s+1}.
- `a0.h0`, `a0.h1`: previous-token heads (query and key read positions, value the token),
  writing `prev0` and `prev1`;
- `a1.h0`, `a1.h1`: induction heads, query the current token, key `prev0` / `prev1` (K-composition),
  value the token, both writing `ans` (two parallel induction paths, each half the logit);
- `a0.h2` (distractor): reads tokens and positions, writes `junk`; `a1.h2` (distractor): query
  `junk`, key `prev0` (so a weight-based reading would draw `a0.h0->a1.h2<k>`), writes `junk2`.

`micro-pointer` (2 layers x 3 heads with MLPs, causal): prompt `BOS p x1 … x6`, where the pointer
token p = `P{k}` names a position; answer x_k.
- `a0.h0`, `a0.h1`: pointer readers, attend to position 1 from everywhere and copy the pointer
  into `ptr` (two parallel heads, each half the query's strength downstream);
- `m0`: copies `ptr` to `ptr2` (ReLU of a one-hot is itself); its other units read `junk` and
  write `junk2` (distractor units: `a0.h2->m0` is an edge by the weights, not by function);
- `a1.h0`: lookup head, query `ptr2` (Q-composition through the MLP), key the position, value the
  token, writes `ans`; `a1.h1` (distractor): the same query and key, writes `junk3`;
- `a0.h2` (distractor): reads tokens, writes `junk`.

`GROUND_TRUTH[name]` lists the circuit's edges (heads-qkv names, DESIGN.md) by construction;
`tests/test_micro.py` checks by zero-ablation patching that every listed edge matters and that
the listed edges alone reproduce the model, and `data/reference/micro-*.json` hold them for the
evaluation code (checked equal to `GROUND_TRUTH`). The models are built in memory on loading;
nothing is shipped but the reference files.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from subcircuit.models.config import ModelConfig
from subcircuit.models.loading import LoadedModel
from subcircuit.models.registry import ModelEntry, register
from subcircuit.models.transformer import Transformer

SOURCE = "by construction (subcircuit.models.micro): the weights were written to compute this circuit"

# micro-induction
IND_TOKENS = 10  # content tokens 1..10 (0 = BOS)
IND_CTX = 12
IND_QK = 8.0  # attention logit of a match (others 0)

# micro-pointer
PTR_K = 4  # pointer tokens P1..P4 = ids 1..4
PTR_C = 8  # content tokens ids 5..12
PTR_LEN = 6  # content tokens per prompt (positions 2..7)
PTR_READ = 8.0  # pointer readers' attention logit on position 1
PTR_QK = 2.5  # lookup logit per unit of ptr2 (two readers: 5.0)
PTR_JUNK_UNITS = 4


class _Layout:
    """Named blocks of residual directions, allocated in order."""

    def __init__(self) -> None:
        self.labels: list[str] = []
        self.blocks: dict[str, list[int]] = {}

    def add(self, name: str, size: int) -> list[int]:
        idx = list(range(len(self.labels), len(self.labels) + size))
        self.labels += [f"{name}:{i}" for i in range(size)]
        self.blocks[name] = idx
        return idx


def _cfg(n_layers: int, d_model: int, n_heads: int, d_head: int, d_mlp: int, vocab: int, n_ctx: int,
         mlp: str) -> ModelConfig:
    return ModelConfig(family="gpt2", n_layers=n_layers, d_model=d_model, n_heads=n_heads, d_head=d_head, d_mlp=d_mlp,
                       vocab_size=vocab, n_ctx=n_ctx, norm="none", positional="learned", mlp=mlp, act="relu",
                       causal=True, attn_scale=1.0, final_norm=False)


def build_micro_induction() -> tuple[Transformer, dict[str, Any]]:
    V, P = IND_TOKENS + 1, IND_CTX
    lay = _Layout()
    tok, pos = lay.add("tokens", V), lay.add("indices", P)
    prev = [lay.add("prev0", V), lay.add("prev1", V)]
    ans, junk, junk2 = lay.add("ans", V), lay.add("junk", P), lay.add("junk2", V)
    E = max(V, P)
    model = Transformer(_cfg(2, len(lay.labels), 3, E, 1, V, P, "none"))
    with torch.no_grad():
        for v in range(V):
            model.W_E[v, tok[v]] = 1.0
        for p in range(P):
            model.W_pos[p, pos[p]] = 1.0
        b0, b1 = model.blocks
        for h in (0, 1):  # previous-token heads: query pos i -> e_i, key pos j -> e_{j+1}
            for p in range(P):
                b0.W_Q[h, pos[p], p] = IND_QK
                if p + 1 < E:
                    b0.W_K[h, pos[p], p + 1] = 1.0
            for v in range(V):
                b0.W_V[h, tok[v], v] = 1.0
                b0.W_O[h, v, prev[h][v]] = 1.0
        for v in range(1, V):  # distractor a0.h2: attends to equal tokens, copies positions to junk
            b0.W_Q[2, tok[v], v] = IND_QK
            b0.W_K[2, tok[v], v] = 1.0
        for p in range(P):
            b0.W_V[2, pos[p], p] = 1.0
            b0.W_O[2, p, junk[p]] = 1.0
        for h in (0, 1):  # induction heads: query token v, key prev_h = v
            for v in range(1, V):
                b1.W_Q[h, tok[v], v] = IND_QK
                b1.W_K[h, prev[h][v], v] = 1.0
            for v in range(V):
                b1.W_V[h, tok[v], v] = 1.0
                b1.W_O[h, v, ans[v]] = 1.0
        for p in range(P):  # distractor a1.h2: query junk, key prev0 (reads the circuit), writes junk2
            b1.W_Q[2, junk[p], p] = 1.0
        for v in range(V):
            b1.W_K[2, prev[0][v], v % P] = 1.0
            b1.W_V[2, tok[v], v] = 1.0
            b1.W_O[2, v, junk2[v]] = 1.0
        for v in range(V):
            model.W_U[ans[v], v] = 1.0
    meta = {"micro": {"kind": "induction", "n_tokens": IND_TOKENS, "bos_token_id": 0}, "residual_labels": lay.labels}
    return model, meta


def build_micro_pointer() -> tuple[Transformer, dict[str, Any]]:
    V, P = 1 + PTR_K + PTR_C, 2 + PTR_LEN
    lay = _Layout()
    tok, pos = lay.add("tokens", V), lay.add("indices", P)
    ptr, ptr2, ans = lay.add("ptr", PTR_K), lay.add("ptr2", PTR_K), lay.add("ans", V)
    junk, junk2, junk3 = lay.add("junk", V), lay.add("junk2", PTR_JUNK_UNITS), lay.add("junk3", V)
    E = max(V, P)
    model = Transformer(_cfg(2, len(lay.labels), 3, E, PTR_K + PTR_JUNK_UNITS, V, P, "plain"))
    content = range(1 + PTR_K, V)
    with torch.no_grad():
        for v in range(V):
            model.W_E[v, tok[v]] = 1.0
        for p in range(P):
            model.W_pos[p, pos[p]] = 1.0
        b0, b1 = model.blocks
        for h in (0, 1):  # pointer readers: every query position -> e_0, key position 1 -> e_0
            for p in range(P):
                b0.W_Q[h, pos[p], 0] = PTR_READ
            b0.W_K[h, pos[1], 0] = 1.0
            for k in range(PTR_K):
                b0.W_V[h, tok[1 + k], k] = 1.0
                b0.W_O[h, k, ptr[k]] = 1.0
        for v in content:  # distractor a0.h2: attends to equal tokens, copies them to junk
            b0.W_Q[2, tok[v], v] = PTR_READ
            b0.W_K[2, tok[v], v] = 1.0
            b0.W_V[2, tok[v], v] = 1.0
            b0.W_O[2, v, junk[v]] = 1.0
        for k in range(PTR_K):  # m0: ptr -> ptr2 (ReLU of a non-negative value is itself)
            b0.W_in[ptr[k], k] = 1.0
            b0.W_out[k, ptr2[k]] = 1.0
        for u in range(PTR_JUNK_UNITS):  # distractor units: junk -> junk2
            for v in range(V):
                b0.W_in[junk[v], PTR_K + u] = 1.0 if v % PTR_JUNK_UNITS == u else 0.0
            b0.W_out[PTR_K + u, junk2[u]] = 1.0
        for h, out in ((0, ans), (1, junk3)):  # lookup a1.h0 (and its distractor twin a1.h1)
            for k in range(PTR_K):
                b1.W_Q[h, ptr2[k], k] = PTR_QK
                b1.W_K[h, pos[k + 2], k] = 1.0  # x_{k+1} sits at position k + 2
            for v in content:
                b1.W_V[h, tok[v], v] = 1.0
                b1.W_O[h, v, out[v]] = 1.0
        for v in range(V):
            model.W_U[ans[v], v] = 1.0
    meta = {"micro": {"kind": "pointer", "n_pointers": PTR_K, "n_content": PTR_C, "length": PTR_LEN,
                      "bos_token_id": 0},
            "residual_labels": lay.labels}
    return model, meta


def _qkv(head: str, parts: str = "qkv") -> list[str]:
    return [f"input->{head}<{p}>" for p in parts]


GROUND_TRUTH: dict[str, tuple[str, ...]] = {
    "micro-induction": (
        *_qkv("a0.h0"), *_qkv("a0.h1"),
        "a0.h0->a1.h0<k>", "a0.h1->a1.h1<k>",
        *_qkv("a1.h0", "qv"), *_qkv("a1.h1", "qv"),
        "a1.h0->logits", "a1.h1->logits",
    ),
    "micro-pointer": (
        *_qkv("a0.h0"), *_qkv("a0.h1"),
        "a0.h0->m0", "a0.h1->m0", "m0->a1.h0<q>",
        *_qkv("a1.h0", "kv"),
        "a1.h0->logits",
    ),
}

BUILDERS: dict[str, tuple[str, Callable[[], tuple[Transformer, dict[str, Any]]]]] = {
    "micro-induction": ("hand-built induction, K-composition, two parallel paths and distractor heads "
                        "(2 layers x 3 heads, attention-only)", build_micro_induction),
    "micro-pointer": ("hand-built pointer lookup, Q-composition through an MLP, parallel heads, distractor heads "
                      "and MLP units (2 layers x 3 heads)", build_micro_pointer),
}


def load_micro(name: str) -> LoadedModel:
    """Build a micro model (deterministic, no files)."""
    description, build = BUILDERS[name]
    model, meta = build()
    model.requires_grad_(False).eval()
    meta = {"description": description, "tokenizer": None, **meta,
            "ground_truth": {"edges": list(GROUND_TRUTH[name]), "source": SOURCE}}
    return LoadedModel(name, model, None, "built by construction (subcircuit.models.micro)", meta)


def _loader(name: str) -> Callable[[], LoadedModel]:
    return lambda: load_micro(name)


N_PARAMS = {"micro-induction": 26_297, "micro-pointer": 28_487}  # checked by tests/test_micro.py

for _name, (_description, _build) in BUILDERS.items():
    register(ModelEntry(_name, _description, "built in memory by construction (subcircuit.models.micro)",
                        N_PARAMS[_name], _loader(_name), lambda: True))

__all__ = ["BUILDERS", "GROUND_TRUTH", "N_PARAMS", "SOURCE", "build_micro_induction", "build_micro_pointer", "load_micro"]
