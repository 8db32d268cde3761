"""EAP-IG's circuit JSON, both ways.

The format (hannamw/EAP-IG, `src/eap/graph.py`: `Graph.to_json`, read back by `Graph.from_json`
and by MIB's `load_graph_from_json`):

    {"cfg":   {"n_layers": 12, "n_heads": 12, "parallel_attn_mlp": false, "d_model": 768},
     "nodes": {"input": {"in_graph": true}, "a0.h0": {...}, ..., "m11": {...}, "logits": {...}},
     "edges": {"input->a0.h0<q>": {"score": 0.0123, "in_graph": false}, ...}}

EAP-IG's graph is our `heads-qkv` graph with the same names (`input`, `a{L}.h{H}`, `m{L}`,
`logits`; `a5.h5->a9.h9<q>`): GPT-2 small has 32,491 edges in both. EAP-IG lists the edges in
the order `Graph.from_model` adds them (per layer: every earlier sender to every head's q, k, v;
then every sender to the MLP; at the end every sender to the logits); `write` uses that order, so
a file EAP-IG wrote comes back byte for byte after import and export. `score` may be missing (MIB's
binary circuits); it is read as 0.0, as MIB's loader does.

Grouped-query models (SmolLM2): EAP-IG (with TransformerLens' `ungroup_grouped_query_attention`)
has per-head key and value inputs where our graph has one per KV group. Writing gives every head
of a group the group's edge (same score, same membership); reading maps a head's key/value edge
to its group: the group is in the circuit when any of its heads is, and its score is the heads'
score when they agree, else their mean.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from subcircuit.circuit import Circuit
from subcircuit.errors import UserError
from subcircuit.graph import Graph

FORMAT_NAME = "eap-ig"


def eap_ig_cfg(graph: Graph) -> dict[str, Any]:
    cfg = graph.cfg
    return {"n_layers": cfg.n_layers, "n_heads": cfg.n_heads, "parallel_attn_mlp": bool(cfg.parallel_attn_mlp),
            "d_model": cfg.d_model}


def _check_graph(graph: Graph) -> None:
    if graph.granularity != "heads-qkv":
        raise UserError(f"EAP-IG files hold heads-qkv graphs; this circuit's graph is {graph.granularity!r} "
                        "(rerun with --granularity heads-qkv)")


def eap_ig_edges(graph: Graph) -> list[tuple[str, str]]:
    """(EAP-IG edge name, our edge name) in EAP-IG's order (`Graph.from_model`)."""
    _check_graph(graph)
    cfg = graph.cfg
    H, gs = cfg.n_heads, cfg.group_size
    out: list[tuple[str, str]] = []
    stream = ["input"]
    for L in range(cfg.n_layers):
        heads = [f"a{L}.h{h}" for h in range(H)]

        def kv(h: int, port: str, L: int = L) -> str:
            return f"a{L}.g{h // gs}<{port}>" if cfg.is_gqa else f"a{L}.h{h}<{port}>"

        for s in stream:
            for h, head in enumerate(heads):
                for port in "qkv":
                    ours = f"{head}<q>" if port == "q" else kv(h, port)
                    out.append((f"{s}->{head}<{port}>", f"{s}->{ours}"))
            if cfg.parallel_attn_mlp and cfg.has_mlp:
                out.append((f"{s}->m{L}", f"{s}->m{L}"))
        stream = stream + heads
        if cfg.has_mlp:
            if not cfg.parallel_attn_mlp:
                out += [(f"{s}->m{L}", f"{s}->m{L}") for s in stream]
            stream = stream + [f"m{L}"]
    out += [(f"{s}->logits", f"{s}->logits") for s in stream]
    return out


def _nodes(graph: Graph) -> list[str]:
    cfg = graph.cfg
    names = ["input"]
    for L in range(cfg.n_layers):
        names += [f"a{L}.h{h}" for h in range(cfg.n_heads)]
        if cfg.has_mlp:
            names.append(f"m{L}")
    return names + ["logits"]


def to_eap_ig(circuit: Circuit, graph: Graph, binary: bool = False, edges: set[str] | None = None) -> dict[str, Any]:
    """The EAP-IG JSON object of a circuit (`binary`: membership only, no scores, as MIB's binary
    circuits; `edges`: this set of our edge names is the circuit instead of `circuit.in_circuit`)."""
    by_name = {e["edge"]: e for e in circuit.edges}
    member = set(circuit.in_circuit) if edges is None else edges
    src = circuit.params.get("eap_ig", {}) if isinstance(circuit.params.get("eap_ig"), dict) else {}
    cfg = src.get("cfg") or eap_ig_cfg(graph)
    edge_dict: dict[str, dict[str, Any]] = {}
    out_deg: set[str] = set()
    in_deg: set[str] = set()
    for theirs, ours in eap_ig_edges(graph):
        e = by_name.get(ours)
        keep = ours in member
        rec: dict[str, Any] = {} if binary else {"score": float(e["score"]) if e is not None else 0.0}
        rec["in_graph"] = keep
        edge_dict[theirs] = rec
        if keep:
            s, r = theirs.split("->")
            out_deg.add(s)
            in_deg.add(r.split("<")[0])
    if edges is None and isinstance(src.get("nodes_in_graph"), list):
        on = set(src["nodes_in_graph"])
    else:  # EAP-IG's prune(): a node is in the graph when it has an outgoing and an incoming edge
        on = {n for n in out_deg if n == "input" or n in in_deg}
    node_dict: dict[str, dict[str, Any]] = {}
    node_scores = src.get("node_scores") if isinstance(src.get("node_scores"), dict) else None
    for n in _nodes(graph):
        node_dict[n] = {"in_graph": True if n == "logits" else n in on}
        if node_scores is not None and n in node_scores:
            node_dict[n]["score"] = node_scores[n]
    return {"cfg": cfg, "nodes": node_dict, "edges": edge_dict}


def write(circuit: Circuit, graph: Graph, path: str | Path, binary: bool = False,
          edges: set[str] | None = None) -> Path:
    """Write EAP-IG JSON (as `json.dump(d, f)` in `Graph.to_json`: one line, default separators)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_eap_ig(circuit, graph, binary, edges)), encoding="utf-8")
    return path


def read_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"no file at {str(path)!r}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(d, dict) or not all(k in d for k in ("cfg", "nodes", "edges")):
        raise UserError(f"{path}: not an EAP-IG/MIB circuit file (expected an object with 'cfg', 'nodes' and 'edges')")
    if not isinstance(d["edges"], dict) or not isinstance(d["nodes"], dict) or not isinstance(d["cfg"], dict):
        raise UserError(f"{path}: 'cfg', 'nodes' and 'edges' must be JSON objects")
    return d


def from_eap_ig(d: dict[str, Any], graph: Graph, model: str, source: str = "file", task: str = "imported",
                method: str = "imported") -> Circuit:
    """A `Circuit` from an EAP-IG JSON object; every edge name is checked against `graph` (an
    unknown name, or a file for another model shape, is a one-line UserError)."""
    _check_graph(graph)
    cfg = d["cfg"]
    want = eap_ig_cfg(graph)
    for k in ("n_layers", "n_heads"):
        if k in cfg and cfg[k] != want[k]:
            raise UserError(f"{source}: cfg {k}={cfg[k]!r} does not match model {model!r} ({k}={want[k]})")
    theirs_to_ours = dict(eap_ig_edges(graph))
    grouped: dict[str, list[tuple[float, bool]]] = {}
    for name, info in d["edges"].items():
        if not isinstance(info, dict) or not isinstance(info.get("in_graph"), bool):
            raise UserError(f"{source}: edge {name!r} needs an object with a boolean 'in_graph'")
        ours = theirs_to_ours.get(name)
        if ours is None:
            try:  # the graph's own message names the unknown node and suggests a near one
                graph.edge(name)
            except UserError as err:
                raise UserError(f"{source}: {err} (model {model!r}, heads-qkv)") from None
            ours = name
        score = info.get("score", 0.0)
        if not isinstance(score, int | float) or isinstance(score, bool) or not math.isfinite(float(score)):
            raise UserError(f"{source}: edge {name!r} has a non-numeric or non-finite score {score!r}")
        grouped.setdefault(ours, []).append((float(score), info["in_graph"]))
    records = []
    for ours in graph.edges:
        vals = grouped.get(ours)
        if vals is None:
            continue
        scores = [s for s, _ in vals]
        score = scores[0] if all(s == scores[0] for s in scores) else sum(scores) / len(scores)
        records.append({"edge": ours, "score": score, "in_circuit": any(k for _, k in vals)})
    nodes_on = [n for n, v in d["nodes"].items() if isinstance(v, dict) and v.get("in_graph") and n != "logits"]
    node_scores = {n: v["score"] for n, v in d["nodes"].items() if isinstance(v, dict) and "score" in v}
    meta: dict[str, Any] = {"cfg": cfg, "nodes_in_graph": nodes_on, "source": source}
    if node_scores:
        meta["node_scores"] = node_scores
    n_in = sum(r["in_circuit"] for r in records)
    return Circuit(model=model, task=task, method=method, granularity="heads-qkv", ablation="corrupted",
                   metric="unknown", params={"eap_ig": meta},
                   edges=records, results={"n_edges_total": graph.n_edges, "n_edges_in_circuit": n_in})
