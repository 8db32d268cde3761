"""The computational graph: senders, receivers and the edges between them, as data.

Because of the residual stream, every component reads the sum of the outputs of every earlier
component. So the graph has an edge from every earlier *sender* (the embeddings `input`, each
attention head `a{L}.h{H}`, each MLP `m{L}`) to every later *receiver* (each head's query, key
and value input `a{L}.h{H}<q>` ..., each MLP's input `m{L}`, and `logits`). Names follow
DESIGN.md; with grouped-query attention the key and value inputs are per KV group
(`a{L}.g{G}<k>`), since one key/value projection serves a whole group of heads.

Granularities:
- `heads-qkv` (default): one receiver per head query, per key/value (head, or KV group), per MLP.
- `heads`: one receiver per head (its query, key and value read the same mixture).
- `layers`: one sender and one receiver per attention layer (`a{L}`) and per MLP.

Computation order is captured by a *stage* per node: attention of layer L runs at stage 2L, its
MLP at 2L+1 (2L for parallel attention/MLP models such as GPT-NeoX, where the MLP reads the same
residual as the attention of its layer), `logits` at 2·n_layers, `input` at -1. An edge s→r
exists iff stage(s) < stage(r). Senders are sorted by stage, so the senders a receiver can read
form a prefix of the sender list: that is what makes the dense (receivers × senders) layout and
the prefix-cached patched forward pass cheap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal, get_args

import torch
from torch import Tensor

from subcircuit.errors import UserError, suggest, unknown
from subcircuit.models.config import ModelConfig

Granularity = Literal["heads-qkv", "heads", "layers"]
GRANULARITIES: tuple[str, ...] = get_args(Granularity)
NodeKind = Literal["input", "head", "attn", "mlp", "q", "k", "v", "head_in", "attn_in", "mlp_in", "logits"]


@dataclass(frozen=True)
class Node:
    """A sender or receiver, with its meaning as fields (never parse `name` for it).

    `layer` is -1 for `input` and n_layers for `logits`; `index` is the head (or the KV group
    for `k`/`v` under grouped-query attention); `stage` orders computation. `heads` are the
    attention heads of `layer` the node stands for: one for a head and its query (and its
    key/value without GQA), a KV group's heads for a grouped key/value, every head of the layer
    for a layer-level `attn`/`attn_in` node, none for `input`, MLPs and `logits`. `group` is
    the KV group of a grouped key/value receiver (else None). `component` is the sender-style
    name of the component the node belongs to (`a3.h1<q>` -> `a3.h1`, `a3.g0<k>` -> `a3.g0`)."""

    name: str
    kind: NodeKind
    layer: int
    stage: int
    index: int | None = None
    heads: tuple[int, ...] = ()
    group: int | None = None
    component: str = ""
    span: str | None = None  # the prompt span of a positional receiver (`positions.py`), else None

    def __post_init__(self) -> None:
        if not self.component:
            object.__setattr__(self, "component", self.name.split("@")[0].split("<")[0])

    @property
    def head(self) -> int | None:
        """The one attention head this node stands for (None for groups, layers and non-heads)."""
        return self.heads[0] if len(self.heads) == 1 and self.group is None else None

    @property
    def is_head(self) -> bool:
        """Whether the node is one attention head (`a{L}.h{H}`) or one of its inputs."""
        return self.kind in ("head", "q", "head_in") or (self.kind in ("k", "v") and self.group is None)


@dataclass(frozen=True)
class StageLayout:
    """Receiver rows and readable sender columns of one computation stage.

    For attention stages `q`, `k`, `v` are slices of the stage's receiver rows (relative to
    `rows.start`) giving each query/key/value slot's input."""

    stage: int
    kind: Literal["attn", "mlp", "logits"]
    layer: int
    rows: slice
    n_senders_before: int
    senders: slice  # the senders this stage writes (empty for logits)
    q: slice | None = None
    k: slice | None = None
    v: slice | None = None


@dataclass(frozen=True, eq=False)
class Graph:
    """Senders, receivers and which edges exist, for one model config and granularity.

    `exists` [receiver sender] is the dense layout every mask and score tensor uses.
    Edges are listed receiver-major in `edges` (the order of `exists.nonzero()`)."""

    cfg: ModelConfig
    granularity: Granularity
    senders: tuple[Node, ...]
    receivers: tuple[Node, ...]
    stages: tuple[StageLayout, ...] = field(repr=False)

    @cached_property
    def exists(self) -> Tensor:
        s = torch.tensor([n.stage for n in self.senders])
        r = torch.tensor([n.stage for n in self.receivers])
        return r[:, None] > s[None, :]

    @cached_property
    def edge_index(self) -> Tensor:
        """[n_edges 2] (receiver, sender) index pairs, receiver-major."""
        return self.exists.nonzero()

    @cached_property
    def edges(self) -> tuple[str, ...]:
        return tuple(f"{self.senders[s].name}->{self.receivers[r].name}" for r, s in self.edge_index.tolist())

    @cached_property
    def sender_pos(self) -> dict[str, int]:
        return {n.name: i for i, n in enumerate(self.senders)}

    @cached_property
    def receiver_pos(self) -> dict[str, int]:
        return {n.name: i for i, n in enumerate(self.receivers)}

    @cached_property
    def _edge_pos(self) -> dict[str, int]:
        return {e: i for i, e in enumerate(self.edges)}

    @property
    def n_edges(self) -> int:
        return len(self.edges)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.receivers), len(self.senders)

    def __repr__(self) -> str:
        return (
            f"Graph({self.granularity}: {len(self.senders)} senders, {len(self.receivers)} receivers, "
            f"{self.n_edges} edges)"
        )

    # --------------------------------------------------------------------- names <-> positions

    def edge(self, name: str) -> tuple[int, int]:
        """(receiver, sender) position of an edge name; a UserError for unknown or malformed names."""
        i = self._edge_pos.get(name)
        if i is not None:
            r, s = self.edge_index[i].tolist()
            return r, s
        sender, receiver = parse_edge(name)
        if sender not in self.sender_pos:
            raise unknown_node("sender", sender, self.sender_pos, name)
        if receiver not in self.receiver_pos:
            raise unknown_node("receiver", receiver, self.receiver_pos, name)
        raise UserError(f"edge {name!r} does not exist: {sender} is not computed before {receiver}")

    def edge_position(self, name: str) -> int:
        """Index of an edge in `edges`."""
        self.edge(name)
        return self._edge_pos[name]

    def mask_from_edges(self, names, dtype: torch.dtype = torch.float32) -> Tensor:
        """A [receiver sender] mask with 1 for the named edges, 0 elsewhere. Duplicates are errors."""
        mask = torch.zeros(self.shape, dtype=dtype)
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise UserError(f"edge {name!r} is listed twice")
            seen.add(name)
            r, s = self.edge(name)
            mask[r, s] = 1
        return mask

    def edges_from_mask(self, mask: Tensor) -> list[str]:
        """Names of the existing edges where `mask` [receiver sender] is nonzero."""
        keep = (mask.detach().cpu() != 0) & self.exists
        return [self.edges[i] for i in keep[self.exists].nonzero().flatten().tolist()]

    def full_mask(self, dtype: torch.dtype = torch.float32) -> Tensor:
        return self.exists.to(dtype)

    def to_flat(self, dense: Tensor) -> Tensor:
        """[... receiver sender] -> [... n_edges] in `edges` order."""
        return dense[..., self.exists]

    def from_flat(self, flat: Tensor, fill: float = 0.0) -> Tensor:
        """[... n_edges] -> [... receiver sender] (non-edges set to `fill`)."""
        out = torch.full((*flat.shape[:-1], *self.shape), fill, dtype=flat.dtype, device=flat.device)
        out[..., self.exists.to(flat.device)] = flat
        return out

    @cached_property
    def feeds(self) -> tuple[tuple[int, ...], ...]:
        """For each receiver, the sender positions of the component(s) it is an input of: its
        head, MLP or attention layer; every head of the group for a grouped key/value receiver;
        none for `logits`."""
        out = []
        for r in self.receivers:
            if r.kind == "logits":
                out.append(())
            elif r.kind in ("mlp_in", "attn_in"):
                out.append((self.sender_pos[r.component],))
            else:
                out.append(tuple(self.sender_pos[f"a{r.layer}.h{h}"] for h in r.heads))
        return tuple(out)

    @cached_property
    def node_pos(self) -> dict[str, Node]:
        """Every sender and receiver by name."""
        return {**{n.name: n for n in self.receivers}, **{n.name: n for n in self.senders}}

    def stage_of_receiver(self, r: int) -> StageLayout:
        for st in self.stages:
            if st.rows.start <= r < st.rows.stop:
                return st
        raise IndexError(r)


_EDGE_RE = re.compile(r"^\s*(\S+?)\s*->\s*(\S+?)\s*$")
_SPAN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def split_span(name: str) -> tuple[str, str | None]:
    """`'a9.h9<k>@S2'` -> `('a9.h9<k>', 'S2')`; a name without `@SPAN` -> `(name, None)`."""
    base, at, span = name.partition("@")
    return (base, span) if at else (name, None)
_NODE_RE = re.compile(r"^(input|logits|m\d+|a\d+|a\d+\.h\d+|a\d+\.h\d+<[qkv]>|a\d+\.g\d+<[kv]>)$")


def parse_edge(name: str) -> tuple[str, str]:
    """`'a5.h5->a9.h9<q>'` -> `('a5.h5', 'a9.h9<q>')`; a UserError naming the problem otherwise.
    A positional edge keeps its span on the receiver: `'a5.h5->a9.h9<k>@S2'` -> `('a5.h5',
    'a9.h9<k>@S2')` (`split_span` separates it)."""
    if not isinstance(name, str):
        raise UserError(f"edge name must be a string, got {type(name).__name__}")
    m = _EDGE_RE.match(name)
    if not m:
        raise UserError(f"malformed edge name {name!r}; expected SENDER->RECEIVER, e.g. 'a5.h5->a9.h9<q>'")
    sender, receiver = m.groups()
    receiver_base, span = split_span(receiver)
    if span is not None and not _SPAN_RE.match(span):
        raise UserError(f"malformed span {span!r} in edge {name!r}; expected SENDER->RECEIVER@SPAN with a span "
                        "name of letters, digits and _, e.g. 'a5.h5->a9.h9<k>@S2'")
    for node in (sender, receiver_base):
        if not _NODE_RE.match(node):
            raise UserError(
                f"malformed node name {node!r} in edge {name!r}; expected input, a{{L}}.h{{H}}, m{{L}}, "
                "a{L}.h{H}<q|k|v>, a{L}.g{G}<k|v>, a{L} or logits"
            )
    return sender, receiver


@dataclass(frozen=True)
class NodeName:
    """What a node name says: `kind` (input, head, group, attn, mlp, logits), the layer, the head
    or KV group, and the port (q, k, v) of a receiver name (None for a sender-style name)."""

    kind: Literal["input", "head", "group", "attn", "mlp", "logits"]
    layer: int | None = None
    index: int | None = None
    port: Literal["q", "k", "v"] | None = None

    @property
    def component(self) -> str:
        """The sender-style name (`a3.h1<q>` -> `a3.h1`)."""
        if self.kind in ("input", "logits"):
            return self.kind
        if self.kind == "mlp":
            return f"m{self.layer}"
        if self.kind == "attn":
            return f"a{self.layer}"
        return f"a{self.layer}.{'h' if self.kind == 'head' else 'g'}{self.index}"


_PARTS_RE = re.compile(r"^(?:(input|logits)|m(\d+)|a(\d+)(?:\.([hg])(\d+))?(?:<([qkv])>)?)$")


def parse_node(name: str) -> NodeName:
    """`'a9.h9<q>'` -> NodeName('head', 9, 9, 'q'): the one place node names are parsed. A
    UserError for anything that is not a node name of DESIGN.md."""
    m = _PARTS_RE.match(name) if isinstance(name, str) and _NODE_RE.match(name) else None
    if m is None:
        raise UserError(f"malformed node name {name!r}; expected input, a{{L}}.h{{H}}, m{{L}}, "
                        "a{L}.h{H}<q|k|v>, a{L}.g{G}<k|v>, a{L} or logits")
    special, mlp_layer, layer, hg, idx, port = m.groups()
    if special:
        return NodeName(special)  # type: ignore[arg-type]
    if mlp_layer is not None:
        return NodeName("mlp", int(mlp_layer))
    if hg is None:
        return NodeName("attn", int(layer))
    return NodeName("head" if hg == "h" else "group", int(layer), int(idx), port)  # type: ignore[arg-type]


def unknown_node(kind: str, node: str, valid, edge: str) -> UserError:
    return UserError(f"unknown {kind} {node!r} in edge {edge!r}{suggest(node, valid)}")


def build_graph(cfg: ModelConfig, granularity: str = "heads-qkv") -> Graph:
    """The graph of a model config at a granularity (see the module docstring)."""
    if granularity not in GRANULARITIES:
        raise unknown("granularity", granularity, GRANULARITIES)
    H, K, n = cfg.n_heads, cfg.kv_heads, cfg.n_layers
    senders: list[Node] = [Node("input", "input", -1, -1)]
    receivers: list[Node] = []
    stages: list[StageLayout] = []
    for L in range(n):
        st = 2 * L
        s0, r0 = len(senders), len(receivers)
        every = tuple(range(H))
        if granularity == "layers":
            senders.append(Node(f"a{L}", "attn", L, st, heads=every))
            receivers.append(Node(f"a{L}", "attn_in", L, st, heads=every))
            q = k = v = slice(0, 1)
        elif granularity == "heads":
            senders += [Node(f"a{L}.h{h}", "head", L, st, h, (h,)) for h in range(H)]
            receivers += [Node(f"a{L}.h{h}", "head_in", L, st, h, (h,)) for h in range(H)]
            q = k = v = slice(0, H)
        else:
            senders += [Node(f"a{L}.h{h}", "head", L, st, h, (h,)) for h in range(H)]
            receivers += [Node(f"a{L}.h{h}<q>", "q", L, st, h, (h,)) for h in range(H)]
            gs = cfg.group_size
            kv = ([(f"a{L}.g{g}", g, tuple(range(g * gs, (g + 1) * gs)), g) for g in range(K)] if cfg.is_gqa
                  else [(f"a{L}.h{h}", h, (h,), None) for h in range(H)])
            receivers += [Node(f"{nm}<k>", "k", L, st, i, hs, grp) for nm, i, hs, grp in kv]
            receivers += [Node(f"{nm}<v>", "v", L, st, i, hs, grp) for nm, i, hs, grp in kv]
            nk = len(kv)
            q, k, v = slice(0, H), slice(H, H + nk), slice(H + nk, H + 2 * nk)
        stages.append(StageLayout(st, "attn", L, slice(r0, len(receivers)), s0, slice(s0, len(senders)), q, k, v))
        if cfg.has_mlp:
            mst = 2 * L if cfg.parallel_attn_mlp else 2 * L + 1
            # Parallel models: the MLP reads the residual before this layer's attention writes.
            n_before = s0 if cfg.parallel_attn_mlp else len(senders)
            r0, s1 = len(receivers), len(senders)
            receivers.append(Node(f"m{L}", "mlp_in", L, mst))
            senders.append(Node(f"m{L}", "mlp", L, 2 * L + 1))
            stages.append(StageLayout(mst, "mlp", L, slice(r0, r0 + 1), n_before, slice(s1, s1 + 1)))
    r0 = len(receivers)
    receivers.append(Node("logits", "logits", n, 2 * n))
    stages.append(StageLayout(2 * n, "logits", n, slice(r0, r0 + 1), len(senders), slice(len(senders), len(senders))))
    return Graph(cfg, granularity, tuple(senders), tuple(receivers), tuple(stages))  # type: ignore[arg-type]


def edge_counts(cfg: ModelConfig) -> dict[str, tuple[int, int, int]]:
    """{granularity: (senders, receivers, edges)} for a config."""
    out = {}
    for g in GRANULARITIES:
        gr = build_graph(cfg, g)
        out[g] = (len(gr.senders), len(gr.receivers), gr.n_edges)
    return out
