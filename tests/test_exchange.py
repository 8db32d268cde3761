"""Exchange: EAP-IG JSON, MIB folders, CSV and DOT, each round-tripped; the GPT-2-small file."""

from __future__ import annotations

import json
import random

import pytest

from subcircuit import cli
from subcircuit.circuit import Circuit, edge_records, load_circuit
from subcircuit.errors import UserError
from subcircuit.exchange import eap_ig, mib, tables
from subcircuit.exchange.convert import export_circuit, import_file
from subcircuit.graph import build_graph
from subcircuit.models import ModelConfig

GPT2_SMALL = ModelConfig(family="gpt2", n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072, vocab_size=50257)
SHAPES = {
    "gpt2-tiny": ModelConfig(family="gpt2", n_layers=2, d_model=16, n_heads=3, d_head=4, d_mlp=32, vocab_size=23),
    "gqa": ModelConfig(family="llama", n_layers=3, d_model=16, n_heads=4, n_kv_heads=2, d_head=4, d_mlp=24,
                       vocab_size=23, norm="rmsnorm", positional="rotary", mlp="gated", act="silu"),
    "parallel": ModelConfig(family="gpt_neox", n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, vocab_size=23,
                            positional="rotary", parallel_attn_mlp=True),
    "attn-only": ModelConfig(family="gpt2", n_layers=2, d_model=16, n_heads=3, d_head=4, d_mlp=0, vocab_size=23,
                             mlp="none"),
}


def random_circuit(graph, seed: int = 0, model: str = "m") -> Circuit:
    import torch

    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(graph.n_edges, generator=g, dtype=torch.float64)
    keep = scores > 1.0
    return Circuit(model=model, task="t", method="eap", granularity=graph.granularity, ablation="corrupted",
                   metric="kl", params={}, edges=edge_records(graph.edges, scores, keep),
                   results={"n_edges_total": graph.n_edges, "n_edges_in_circuit": int(keep.sum())})


def same_edges(a: Circuit, b: Circuit) -> None:
    assert [(e["edge"], e["score"], e["in_circuit"]) for e in a.edges] == \
        [(e["edge"], e["score"], e["in_circuit"]) for e in b.edges]


def eap_ig_reference_file(n_layers: int, n_heads: int, seed: int = 0) -> str:
    """An EAP-IG `Graph.to_json` file written the way EAP-IG builds its graph (`from_model`:
    residual stream, q/k/v per head, then the MLP, then the logits), independently of our code;
    the top 1% of edges by |score| in the graph, nodes pruned as EAP-IG's `prune` does."""
    rng = random.Random(seed)
    names: list[str] = []
    stream = ["input"]
    for L in range(n_layers):
        heads = [f"a{L}.h{h}" for h in range(n_heads)]
        names += [f"{s}->{h}<{x}>" for s in stream for h in heads for x in "qkv"]
        stream += heads
        names += [f"{s}->m{L}" for s in stream]
        stream.append(f"m{L}")
    names += [f"{s}->logits" for s in stream]
    scores = {n: rng.gauss(0, 1) for n in names}
    top = set(sorted(names, key=lambda n: -abs(scores[n]))[: len(names) // 100])
    out_nodes = {n.split("->")[0] for n in top}
    in_nodes = {n.split("->")[1].split("<")[0] for n in top}
    nodes = {n: {"in_graph": n == "input" and n in out_nodes or (n in out_nodes and n in in_nodes)}
             for n in stream}
    nodes["logits"] = {"in_graph": True}
    d = {"cfg": {"n_layers": n_layers, "n_heads": n_heads, "parallel_attn_mlp": False, "d_model": 768},
         "nodes": nodes, "edges": {n: {"score": scores[n], "in_graph": n in top} for n in names}}
    return json.dumps(d)


def test_gpt2_small_eap_ig_file_imports_with_32491_edges_and_exports_identically(tmp_path) -> None:
    graph = build_graph(GPT2_SMALL, "heads-qkv")
    text = eap_ig_reference_file(12, 12)
    src = tmp_path / "gpt2.json"
    src.write_text(text)
    assert len(json.loads(text)["edges"]) == 32491 == graph.n_edges
    circuit = import_file(src, graph, "gpt2", task="ioi", method="eap-ig")
    assert len(circuit.edges) == 32491
    assert len(circuit.in_circuit) == 324
    again = Circuit(**{k: v for k, v in load_circuit(circuit.save(tmp_path / "run")).__dict__.items()})
    out = export_circuit(again, graph, "eap-ig", tmp_path / "back.json")[0]
    assert out.read_text() == text  # byte for byte


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_ours_to_eap_ig_to_ours_keeps_every_edge_and_score(tmp_path, shape) -> None:
    graph = build_graph(SHAPES[shape], "heads-qkv")
    ours = random_circuit(graph)
    path = eap_ig.write(ours, graph, tmp_path / "c.json")
    d = json.loads(path.read_text())
    assert d["nodes"]["logits"] == {"in_graph": True}
    back = import_file(path, graph, "m")
    same_edges(ours, back)
    # and the second export is the same file
    assert eap_ig.write(back, graph, tmp_path / "c2.json").read_text() == path.read_text()


def test_gqa_heads_share_their_group_edge() -> None:
    graph = build_graph(SHAPES["gqa"], "heads-qkv")
    d = eap_ig.to_eap_ig(random_circuit(graph), graph)
    assert d["edges"]["input->a0.h0<k>"] == d["edges"]["input->a0.h1<k>"]
    assert "input->a0.g0<k>" not in d["edges"]


def test_csv_round_trip(tmp_path) -> None:
    graph = build_graph(SHAPES["gqa"], "heads-qkv")
    ours = random_circuit(graph)
    path = export_circuit(ours, None, "csv", tmp_path / "c.csv")[0]
    same_edges(ours, import_file(path, graph, "m"))


def test_dot_round_trip_keeps_the_circuit(tmp_path) -> None:
    graph = build_graph(SHAPES["gpt2-tiny"], "heads-qkv")
    ours = random_circuit(graph)
    text = export_circuit(ours, None, "dot", tmp_path / "c.dot")[0].read_text()
    assert text.startswith("digraph")
    back = tables.read_dot(text)
    assert [(e["edge"], e["score"]) for e in back] == [(e["edge"], e["score"]) for e in ours.edges if e["in_circuit"]]


def test_mib_importances_round_trip(tmp_path) -> None:
    graph = build_graph(SHAPES["gpt2-tiny"], "heads-qkv")
    ours = random_circuit(graph, model="gpt2")
    ours = Circuit(**{**ours.__dict__, "task": "ioi_abc"})
    [path] = export_circuit(ours, graph, "mib", tmp_path / "sub")
    assert path == tmp_path / "sub" / "ioi-abc_gpt2" / "importances.json"
    same_edges(ours, import_file(path, graph, "gpt2"))


def test_mib_circuits_at_mib_fractions(tmp_path) -> None:
    graph = build_graph(SHAPES["gqa"], "heads-qkv")
    ours = random_circuit(graph)
    paths = export_circuit(ours, graph, "mib", tmp_path / "sub", mib_kind="circuits")
    assert len(paths) == len(mib.MIB_FRACTIONS) == 9
    ranked = [e["edge"] for e in sorted(ours.edges, key=lambda e: -e["score"])]
    for p, frac in zip(paths, mib.MIB_FRACTIONS, strict=True):
        d = json.loads(p.read_text())
        assert all("score" not in v for v in d["edges"].values())  # binary circuits
        back = import_file(p, graph, "m")
        assert set(back.in_circuit) == set(ranked[: int(frac * graph.n_edges)])


def test_import_refuses_unknown_edge_names_in_one_line(tmp_path, capsys) -> None:
    from subcircuit.models import load

    graph = build_graph(load("toy-induction-2l").cfg, "heads-qkv")
    bad = eap_ig.to_eap_ig(random_circuit(graph), graph)
    bad["edges"]["a7.h0->logits"] = {"score": 1.0, "in_graph": True}
    src = tmp_path / "bad.json"
    src.write_text(json.dumps(bad))
    rc = cli.run_cli(["import", str(src), "--model", "toy-induction-2l", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and "a7.h0" in err


def test_cli_export_and_import_on_the_toy_model(tmp_path, capsys) -> None:
    from subcircuit.models import load

    graph = build_graph(load("toy-induction-2l").cfg, "heads-qkv")
    ours = random_circuit(graph, model="toy-induction-2l")
    ours.save(tmp_path / "run")
    for fmt in ("eap-ig", "mib", "dot", "csv"):
        assert cli.run_cli(["export", str(tmp_path / "run"), "--format", fmt]) == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "mib" / "t_toy-induction-2l" / "importances.json").exists()
    rc = cli.run_cli(["import", str(tmp_path / "run" / "circuit.eap-ig.json"), "--model", "toy-induction-2l",
                      "--out", str(tmp_path / "back")])
    assert rc == 0, capsys.readouterr().err
    same_edges(ours, load_circuit(tmp_path / "back", graph))
    assert (tmp_path / "back" / "report.html").exists()
    assert cli.run_cli(["export", str(tmp_path / "run"), "--format", "png"]) == 2


def test_a_file_for_another_model_shape_is_refused(tmp_path) -> None:
    src = tmp_path / "gpt2.json"
    src.write_text(eap_ig_reference_file(12, 12))
    with pytest.raises(UserError, match="n_layers=12 does not match model 'm'"):
        import_file(src, build_graph(SHAPES["gpt2-tiny"], "heads-qkv"), "m")
