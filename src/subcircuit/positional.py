"""The position-aware graph (`--positions spans`): every edge of the plain graph once per prompt span.

A task cuts each prompt into named spans (`tasks/spans.py`: IOI `IO`, `S1`, `S2`, `END`, ...;
induction the two halves). In the positional graph the edge `SENDER->RECEIVER@SPAN` is the
receiver, *at the tokens of that span*, reading the sender's output at the same tokens.
Information crosses positions only inside attention, so this is complete: a head's query at
span s reads the residual at span s; its key and value at span s are separate receivers (a key
or value at span s is read by the queries at any later position); an MLP works token by token.
The `logits` receiver exists only at the spans where the metric reads.

Layout. A positional graph is a `Graph` whose receivers are (plain receiver, span) pairs, span
inner: row `r·K + k` is plain receiver r at span k (K spans), named `RECEIVER@SPAN`. Senders,
stages and their sender prefixes are the plain graph's, so every method that works on dense
[receiver sender] masks and scores works unchanged; `span_view` shows a mask as
[receiver sender span]. The patching engines mix each token's receiver input with the weights
of its own span (`patching/_positions.py`). With one span covering every token the positional
graph is the plain one with `@SPAN` on its receiver names, and every result is the same.

A plain circuit converts to the positional one that keeps each of its edges at every span
(`to_positional`); `fold` goes back (an edge is kept if it is kept at any span).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

from torch import Tensor

from subcircuit.errors import UserError
from subcircuit.graph import Graph, StageLayout, split_span


@dataclass(frozen=True, eq=False)
class PositionalGraph(Graph):
    """A `Graph` with receivers per span (see the module docstring). `plain` is the position-blind
    graph; `spans` the span names; `metric_spans` the spans where the metric reads (the only
    spans with a `logits` receiver)."""

    plain: Graph | None = None
    spans: tuple[str, ...] = ()
    metric_spans: tuple[int, ...] = ()

    @cached_property
    def exists(self) -> Tensor:
        ex = Graph.exists.func(self).clone()  # type: ignore[attr-defined]
        K = len(self.spans)
        for i, r in enumerate(self.receivers):
            if r.kind == "logits" and i % K not in self.metric_spans:
                ex[i] = False
        return ex

    @property
    def n_spans(self) -> int:
        return len(self.spans)

    def __repr__(self) -> str:
        return (f"PositionalGraph({self.granularity}, spans {'/'.join(self.spans)}: {len(self.senders)} senders, "
                f"{len(self.receivers)} receivers, {self.n_edges} edges)")

    def span_view(self, t: Tensor) -> Tensor:
        """[... receiver·span sender] -> [... receiver sender span] (a view)."""
        R, K = len(self.plain.receivers), self.n_spans  # type: ignore[union-attr]
        return t.reshape(*t.shape[:-2], R, K, t.shape[-1]).transpose(-1, -2)

    def to_positional(self, plain_mask: Tensor) -> Tensor:
        """A plain [receiver sender] mask (or scores) -> this graph's [receiver·span sender]: each
        edge kept at every span where it exists."""
        return plain_mask.repeat_interleave(self.n_spans, dim=-2) * self.exists.to(plain_mask.device, plain_mask.dtype)

    def fold(self, mask: Tensor) -> Tensor:
        """[... receiver·span sender] -> the plain [... receiver sender]: nonzero where any span is."""
        R, K = len(self.plain.receivers), self.n_spans  # type: ignore[union-attr]
        return (mask.reshape(*mask.shape[:-2], R, K, mask.shape[-1]) != 0).any(-2).to(mask.dtype)

    def positional_edges(self, plain_names) -> list[str]:
        """Plain edge names (a position-blind circuit) -> this graph's edges keeping each of them at
        every span where it exists (unknown plain names are errors of the plain graph)."""
        return self.edges_from_mask(self.to_positional(self.plain.mask_from_edges(plain_names)))  # type: ignore[union-attr]

    def fold_edges(self, names) -> list[str]:
        """Positional edge names -> the plain edges they belong to (each once, in plain order)."""
        keep = set()
        for n in names:
            sender, _, receiver = n.partition("->")
            keep.add(f"{sender}->{split_span(receiver)[0]}")
        return [e for e in self.plain.edges if e in keep]  # type: ignore[union-attr]


def positional_graph(plain: Graph, spans: tuple[str, ...] | list[str], metric_spans=()) -> PositionalGraph:
    """The positional graph of `plain` for the span names `spans` (see the module docstring);
    `metric_spans`: indices of the spans where the metric reads (default: the last span)."""
    spans = tuple(spans)
    if not spans:
        raise UserError("a positional graph needs at least one span")
    if len(set(spans)) != len(spans):
        raise UserError(f"span names must be distinct, got {list(spans)}")
    K = len(spans)
    metric = tuple(sorted(set(metric_spans))) or (K - 1,)
    if any(not 0 <= k < K for k in metric):
        raise UserError(f"metric span indices {list(metric)} are outside the {K} spans {list(spans)}")
    receivers = tuple(replace(r, name=f"{r.name}@{s}", span=s, component=r.component)
                      for r in plain.receivers for s in spans)

    def scale(sl: slice | None) -> slice | None:
        return None if sl is None else slice(sl.start * K, sl.stop * K)

    stages = tuple(StageLayout(st.stage, st.kind, st.layer, scale(st.rows), st.n_senders_before, st.senders,  # type: ignore[arg-type]
                               scale(st.q), scale(st.k), scale(st.v)) for st in plain.stages)
    return PositionalGraph(plain.cfg, plain.granularity, plain.senders, receivers, stages,
                           plain=plain, spans=spans, metric_spans=metric)


def is_positional(graph: Graph) -> bool:
    return isinstance(graph, PositionalGraph)


def engine_masks(graph: Graph, masks: Tensor) -> tuple[Graph, Tensor]:
    """What the patching engines run: (the plain graph, masks [c receiver sender span]) for a
    positional graph's masks [c receiver·span sender] (one span: [c receiver sender], exactly the
    plain run); a plain graph's masks unchanged."""
    if not isinstance(graph, PositionalGraph):
        return graph, masks
    c = masks.shape[0]
    R, K = len(graph.plain.receivers), graph.n_spans  # type: ignore[union-attr]
    masks = masks * graph.exists.to(masks.device, masks.dtype)
    m = masks.reshape(c, R, K, masks.shape[-1]).transpose(2, 3)  # [c R S K]
    return graph.plain, (m[..., 0] if K == 1 else m)  # type: ignore[return-value]


def fold_circuit(circuit, span: str | None = None):
    """A positional `Circuit` seen position-blind: every plain edge once, in the circuit when it
    is at any span, with its largest score over the spans. With `span`, only that span's edges
    (names without `@SPAN`): one column of the report's diagram. A plain circuit is returned as is."""
    if not getattr(circuit, "spans", None):
        return circuit
    best: dict[str, dict] = {}
    for e in circuit.edges:
        sender, _, receiver = e["edge"].partition("->")
        base, at = split_span(receiver)
        if span is not None and at != span:
            continue
        name = f"{sender}->{base}"
        old = best.get(name)
        if old is None:
            best[name] = {"edge": name, "score": e["score"], "in_circuit": e["in_circuit"]}
        else:
            old["score"] = max(old["score"], e["score"])
            old["in_circuit"] = old["in_circuit"] or e["in_circuit"]
    edges = list(best.values())
    results = dict(circuit.results, n_edges_total=len(edges), n_edges_in_circuit=sum(e["in_circuit"] for e in edges))
    return replace(circuit, edges=edges, results=results, spans=None)
