"""Build the GPT-2 small reference circuits (IOI, Greater-Than) as edge lists in our names.

The rules are the published group-level descriptions as the ACDC paper (Conmy et al. 2023,
appendix on the canonical circuits) turns them into edges; they are restated in
docs/evaluation.md. Every edge is checked against a GPT-2-small-shaped graph (heads-qkv), built
from the config alone, so no weights are needed.

    python scripts/build_reference_circuits.py            # (re)write src/subcircuit/data/reference/gpt2-*.json
    python scripts/build_reference_circuits.py --check    # exit 1 if the shipped files differ
"""

from __future__ import annotations

import argparse
import json
import sys

from subcircuit.evaluation.reference import GPT2_SMALL, reference_dir
from subcircuit.graph import Graph, build_graph

# ---------------------------------------------------------------------------------------- IOI
# Wang et al. 2022, "Interpretability in the Wild" (arXiv 2211.00593), figure 2 / section 3.
IOI_GROUPS: dict[str, list[tuple[int, int]]] = {
    "name mover": [(9, 9), (10, 0), (9, 6)],
    "backup name mover": [(10, 10), (10, 6), (10, 2), (10, 1), (11, 2), (9, 7), (9, 0), (11, 9)],
    "negative name mover": [(10, 7), (11, 10)],
    "s-inhibition": [(7, 3), (7, 9), (8, 6), (8, 10)],
    "induction": [(5, 5), (5, 8), (5, 9), (6, 9)],
    "duplicate token": [(0, 1), (0, 10), (3, 0)],
    "previous token": [(2, 2), (4, 11)],
}
# (sender group, receiver group, inputs of the receiving heads); INPUT = `input` (MLPs are kept
# anyway), OUTPUT = `logits` (MLP inputs are kept anyway).
IOI_CONNECTIONS: list[tuple[str, str, str]] = [
    ("INPUT", "previous token", "qkv"), ("INPUT", "duplicate token", "qkv"), ("INPUT", "s-inhibition", "q"),
    ("INPUT", "negative name mover", "kv"), ("INPUT", "name mover", "kv"), ("INPUT", "backup name mover", "kv"),
    ("previous token", "induction", "kv"), ("induction", "s-inhibition", "kv"),
    ("duplicate token", "s-inhibition", "kv"),
    ("s-inhibition", "negative name mover", "q"), ("s-inhibition", "name mover", "q"),
    ("s-inhibition", "backup name mover", "q"),
    ("negative name mover", "OUTPUT", ""), ("name mover", "OUTPUT", ""), ("backup name mover", "OUTPUT", ""),
]


def _head(L: int, H: int) -> str:
    return f"a{L}.h{H}"


def _senders(group: str, groups: dict[str, list[tuple[int, int]]]) -> list[str]:
    return ["input"] if group == "INPUT" else [_head(L, H) for L, H in groups[group]]


def _receivers(group: str, inputs: str, groups: dict[str, list[tuple[int, int]]]) -> list[str]:
    if group == "OUTPUT":
        return ["logits"]
    return [f"{_head(L, H)}<{x}>" for L, H in groups[group] for x in inputs]


def _possible(graph: Graph, sender: str, receiver: str) -> bool:
    return bool(graph.exists[graph.receiver_pos[receiver], graph.sender_pos[sender]])


def build_ioi(graph: Graph) -> list[str]:
    """The ACDC paper's construction: start from the full graph; drop every edge of a head outside
    the circuit; of the circuit heads drop the input→head, head→head and head→logits edges (their
    MLP→head and head→MLP edges stay); then add the group connections."""
    circuit = {_head(L, H) for heads in IOI_GROUPS.values() for L, H in heads}
    added: set[tuple[str, str]] = set()
    for src, dst, inputs in IOI_CONNECTIONS:
        for s in _senders(src, IOI_GROUPS):
            for r in _receivers(dst, inputs, IOI_GROUPS):
                if _possible(graph, s, r):
                    added.add((s, r))
    keep = []
    for name in graph.edges:
        s, r = name.split("->")
        rs = graph.receivers[graph.receiver_pos[r]]
        s_head, r_head = "." in s, rs.kind in ("q", "k", "v")
        if (s_head and s not in circuit) or (r_head and rs.component not in circuit):
            continue
        mlp_side = s.startswith("m") or rs.kind == "mlp_in"
        if not (s_head or r_head) or mlp_side or (s, r) in added:
            keep.append(name)
    return keep


# ------------------------------------------------------------------------------- Greater-Than
# Hanna et al. 2023, "How does GPT-2 compute greater-than?" (arXiv 2305.00586), figure 3.
GT_HEADS: dict[str, list[tuple[int, int]]] = {
    "0305": [(0, 3), (0, 5)],
    "01": [(0, 1)],
    "AMID": [(5, 5), (6, 1), (6, 9), (7, 10), (8, 11), (9, 1)],
}
GT_MLPS: dict[str, list[int]] = {"MEARLY": [0, 1, 2, 3], "MLATE": [8, 9, 10, 11]}
GT_CONNECTED = [("01", "MEARLY"), ("01", "AMID"), ("0305", "AMID"), ("MEARLY", "AMID"), ("AMID", "MLATE")]


def _gt_senders(group: str) -> list[str]:
    return [_head(L, H) for L, H in GT_HEADS[group]] if group in GT_HEADS else [f"m{i}" for i in GT_MLPS[group]]


def _gt_receivers(group: str) -> list[str]:
    if group in GT_HEADS:
        return [f"{_head(L, H)}<{x}>" for L, H in GT_HEADS[group] for x in "qkv"]
    return [f"m{i}" for i in GT_MLPS[group]]


def build_greater_than(graph: Graph) -> list[str]:
    """Hanna et al.'s circuit with the ACDC paper's edge rules (see docs/evaluation.md)."""
    pairs: set[tuple[str, str]] = set()
    for g in ("0305", "01", "MEARLY"):
        pairs |= {("input", r) for r in _gt_receivers(g)}
    for g in ("AMID", "MLATE"):
        pairs |= {(s, "logits") for s in _gt_senders(g)}
    for g in ("MEARLY", "MLATE"):
        pairs |= {(f"m{i}", f"m{j}") for i in GT_MLPS[g] for j in GT_MLPS[g] if i < j}
    for src, dst in GT_CONNECTED:
        pairs |= {(s, r) for s in _gt_senders(src) for r in _gt_receivers(dst)}
    last_amid = max(L for L, _ in GT_HEADS["AMID"])
    pairs |= {(f"m{i}", f"m{j}") for i in range(last_amid) for j in range(last_amid) if i < j}
    pairs |= {(f"m{i}", f"{_head(L, H)}<q>") for L, H in GT_HEADS["AMID"] for i in range(L)}
    keep = {f"{s}->{r}" for s, r in pairs if _possible(graph, s, r)}
    return [e for e in graph.edges if e in keep]  # graph order


# ------------------------------------------------------------------------------------- files

SOURCES = {
    "ioi": ("Wang et al. 2022, Interpretability in the Wild (arXiv 2211.00593): 26 heads in 7 groups; "
            "edges by the ACDC paper's construction (Conmy et al. 2023, arXiv 2304.14997), "
            "built by scripts/build_reference_circuits.py"),
    "greater-than": ("Hanna et al. 2023, How does GPT-2 compute greater-than? (arXiv 2305.00586); "
                     "edges by the ACDC paper's rules (Conmy et al. 2023, arXiv 2304.14997), "
                     "built by scripts/build_reference_circuits.py"),
}
ACDC_PAPER_COUNTS = {"ioi": 1041, "greater-than": 262}


def reference_files() -> dict[str, dict]:
    """name -> file content of the GPT-2 references."""
    graph = build_graph(GPT2_SMALL, "heads-qkv")
    out = {}
    for task, build in (("ioi", build_ioi), ("greater-than", build_greater_than)):
        edges = build(graph)
        nodes = sorted({c for e in edges for c in (e.split("->")[0], e.split("->")[1].split("<")[0])})
        out[f"gpt2-{task}"] = {
            "model": "gpt2", "task": task, "granularity": "heads-qkv", "edges": edges, "nodes": nodes,
            "n_edges": len(edges), "n_edges_graph": graph.n_edges,
            "n_edges_acdc_paper": ACDC_PAPER_COUNTS[task], "source": SOURCES[task],
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the shipped files instead of writing")
    args = ap.parse_args(argv)
    bad = 0
    for name, content in reference_files().items():
        path = reference_dir() / f"{name}.json"
        text = json.dumps(content, indent=1) + "\n"
        if args.check:
            same = path.exists() and path.read_text() == text
            print(f"{name}: {'up to date' if same else 'DIFFERS'} ({content['n_edges']} edges)")
            bad += not same
        else:
            path.write_text(text)
            print(f"wrote {path} ({content['n_edges']} edges, {len(content['nodes'])} nodes)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
