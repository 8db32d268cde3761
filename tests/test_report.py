"""circuit.svg, report.html, head roles and `subcircuit show` (no browser; see test_report_browser.py)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest
from conftest import TINY_CONFIGS, random_model

from subcircuit.circuit import Circuit, load_circuit
from subcircuit.cli import run_cli
from subcircuit.evaluation.roles import (
    CUTOFFS,
    ROLES,
    HeadRoles,
    circuit_heads,
    head_roles,
    label_of,
    load_roles,
)
from subcircuit.models import LoadedModel
from subcircuit.report import write_report
from subcircuit.report.html import render_html
from subcircuit.report.svg import KIND_COLOURS, layout, receiver_kind, render_svg
from subcircuit.runs.discover import discover
from subcircuit.runs.options import DiscoverOptions
from subcircuit.runs.report import report_run

SVG_NS = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """ACDC on toy-induction-2l, written with its report (the run every test here reads)."""
    folder = tmp_path_factory.mktemp("toy") / "run"
    discover("toy-induction-2l", "induction", DiscoverOptions.build(), out=folder)
    return folder


def fake_circuit(edges: list[tuple[str, float]], model: str = "no-such-model") -> Circuit:
    return Circuit(model=model, task="induction", method="eap", granularity="heads-qkv", ablation="corrupted",
                   metric="kl", params={"seed": 0}, edges=[{"edge": e, "score": s, "in_circuit": True}
                                                           for e, s in edges],
                   results={"n_edges_total": 99, "n_edges_in_circuit": len(edges), "faithfulness": 0.5},
                   timings_s={"total": 1.0}, versions={"subcircuit": "0.1.0"})


# ------------------------------------------------------------------------------ roles


def test_toy_model_heads_get_their_known_roles(toy_run):
    """a0.h0 of toy-induction-2l is a previous-token head, a1.h0 an induction head."""
    roles = load_roles(toy_run)
    assert roles["a0.h0"].label == "previous-token"
    assert roles["a1.h0"].label.split(" + ")[0] == "induction"
    assert roles["a0.h0"].scores["previous-token"] > 0.9
    assert roles["a1.h0"].scores["induction"] > 0.9
    assert roles["a1.h0"].scores["copying"] > 0.5  # an induction head copies the token it attends to
    assert roles["a0.h0"].scores["copying"] < 0.1
    svg = (toy_run / "circuit.svg").read_text()
    assert "prev-token" in svg and "induction" in svg


def test_roles_are_scores_in_unit_interval_on_a_gqa_rotary_model():
    cfg = TINY_CONFIGS["llama-gqa"]
    loaded = LoadedModel("tiny", random_model(cfg, seed=2))
    heads = [f"a{layer}.h{h}" for layer in range(cfg.n_layers) for h in range(cfg.n_heads)]
    roles = head_roles(loaded, heads + ["m0", "input"])
    assert sorted(roles) == sorted(heads)
    for r in roles.values():
        for name in ("previous-token", "induction", "duplicate-token", "copying"):
            assert 0.0 <= r.scores[name] <= 1.0 + 1e-6
        assert r.scores["answer-attention"] is None  # no task given


@pytest.mark.parametrize(
    "scores, label",
    [
        ({"previous-token": 0.9, "induction": 0.1}, "previous-token"),
        ({"previous-token": 0.1, "induction": 0.1}, None),
        ({"induction": 0.95, "answer-attention": 0.96, "copying": 0.9}, "induction + copying"),  # near-tie
        ({"induction": 0.5, "answer-attention": 0.9}, "answer-attention"),
        ({"induction": 0.1, "copying": 0.8}, "copying"),
        ({"induction": None, "copying": None}, None),
    ],
)
def test_label_is_the_best_attention_role_above_its_cutoff(scores, label):
    assert label_of(scores) == label


def test_cutoffs_cover_every_role():
    assert set(CUTOFFS) == set(ROLES)


# ------------------------------------------------------------------------------ svg


def test_svg_is_well_formed_and_draws_every_circuit_edge(toy_run):
    circuit = load_circuit(toy_run)
    root = ET.fromstring((toy_run / "circuit.svg").read_text())
    paths = root.findall(f".//{SVG_NS}path")
    assert len(paths) == len(circuit.in_circuit)
    node_names = {t.text for t in root.iter(f"{SVG_NS}text")}
    for head in circuit_heads(circuit):
        assert head in node_names
    assert {"input", "logits"} <= node_names


def test_svg_colours_by_receiver_kind_and_widths_by_score():
    c = fake_circuit([("input->a0.h0<q>", 4.0), ("input->a0.h0<k>", 1.0), ("a0.h0->a1.h1<v>", 0.25),
                      ("a0.h0->m1", 0.1), ("m1->logits", 2.0)])
    lay = layout(c)
    by = {e.edge: e for e in lay.edges}
    assert [by[e].kind for e in ("input->a0.h0<q>", "input->a0.h0<k>", "a0.h0->a1.h1<v>", "a0.h0->m1", "m1->logits")] \
        == ["q", "k", "v", "mlp", "logits"]
    assert by["input->a0.h0<q>"].width > by["m1->logits"].width > by["a0.h0->a1.h1<v>"].width
    svg = render_svg(c)
    for kind in ("q", "k", "v", "mlp", "logits"):
        assert KIND_COLOURS[kind] in svg
    ys = {n.name: n.y for n in lay.nodes}
    assert ys["input"] > ys["a0.h0"] > ys["a1.h1"] > ys["logits"]  # input at the bottom, logits on top


def test_large_circuits_show_the_top_edges_and_say_how_many_are_hidden():
    edges = [(f"a{s}.h{h}->a{s + 1}.h{h2}<q>", float(s * 100 + h * 10 + h2)) for s in range(5) for h in range(10)
             for h2 in range(10)]
    c = fake_circuit(edges)
    svg = render_svg(c, max_edges=300)
    root = ET.fromstring(svg)
    assert len(root.findall(f".//{SVG_NS}path")) == 300
    assert "top 300 of 500 edges by score; 200 hidden" in svg
    kept = {e.edge for e in layout(c, max_edges=300).edges}
    assert kept == {e for e, _ in sorted(edges, key=lambda x: -x[1])[:300]}


def test_receiver_kinds_at_every_granularity():
    assert receiver_kind("a3.g1<k>") == ("a3.g1", "k")
    assert receiver_kind("a3.h1") == ("a3.h1", "head")
    assert receiver_kind("a3") == ("a3", "head")
    assert receiver_kind("m0") == ("m0", "mlp")
    assert receiver_kind("logits") == ("logits", "logits")


def test_empty_circuit_renders():
    svg = render_svg(fake_circuit([]))
    ET.fromstring(svg)
    assert "the circuit is empty" in svg
    assert "has no edges" in render_html(fake_circuit([]))


# ------------------------------------------------------------------------------ html


def test_html_is_self_contained(toy_run):
    html = (toy_run / "report.html").read_text()
    assert "<script src" not in html and "<link" not in html and "@import" not in html
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", html))
    assert urls <= {"http://www.w3.org/2000/svg"}
    data = json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S)[1])
    assert data["roles"]["a0.h0"]["label"] == "previous-token"
    assert 'id="edge-slider"' in html and 'class="edge"' in html and 'class="node"' in html
    for key in ("threshold", "faithfulness", "metric_full_model", "Timings"):
        assert key in html


def test_html_embeds_evaluation_plots(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    fig.savefig(tmp_path / "roc.png")
    plt.close(fig)
    html = render_html(fake_circuit([("input->logits", 1.0)]), folder=tmp_path)
    assert "data:image/png;base64," in html and "roc.png" in html


def test_edge_names_are_escaped_in_html():
    html = render_html(fake_circuit([("input->a0.h0<q>", 1.0)]))
    assert 'data-edge="input-&gt;a0.h0&lt;q&gt;"' in html


# ------------------------------------------------------------------------------ show


def test_show_rerenders_from_circuit_json_and_roles_json(toy_run, capsys):
    for f in ("circuit.svg", "report.html"):
        (toy_run / f).unlink()
    assert run_cli(["show", str(toy_run)]) == 0
    out = capsys.readouterr().out
    assert "used" in out and "roles.json" in out
    assert (toy_run / "circuit.svg").exists() and (toy_run / "report.html").exists()
    assert "prev-token" in (toy_run / "circuit.svg").read_text()


def test_show_recomputes_roles_when_the_model_is_available(toy_run, capsys):
    (toy_run / "roles.json").unlink()
    assert run_cli(["show", str(toy_run)]) == 0
    assert load_roles(toy_run)["a0.h0"].label == "previous-token"


def test_show_without_the_model_draws_without_roles(tmp_path, capsys):
    fake_circuit([("a0.h0->logits", 1.0)]).save(tmp_path)
    files = report_run(tmp_path)
    assert files.roles is None and "head roles not computed" in files.roles_note
    assert "head roles not computed" in (tmp_path / "report.html").read_text()


def test_show_of_a_missing_folder_is_a_user_error(tmp_path, capsys):
    assert run_cli(["show", str(tmp_path / "nope")]) == 2
    assert "no circuit file" in capsys.readouterr().err


def test_show_rejects_a_damaged_roles_file(toy_run, capsys):
    (toy_run / "roles.json").write_text("{")
    assert run_cli(["show", str(toy_run)]) == 2
    assert "roles.json" in capsys.readouterr().err
    assert run_cli(["show", str(toy_run), "--recompute-roles"]) == 0


def test_head_roles_dataclass_label():
    assert HeadRoles("a0.h0", {"previous-token": 0.5}).label == "previous-token"


def test_candidates_from_given_scores_match_recomputed_ones(tmp_path):
    """The demo reuses its EAP-IG run's scores for ACDC's candidates: same circuit as recomputing."""
    from subcircuit.circuit import scores_tensor
    from subcircuit.graph import build_graph
    from subcircuit.models import load

    loaded = load("toy-induction-2l")
    eap = discover(loaded, "induction", DiscoverOptions.build(method="eap-ig", edges=5, n_examples=8), report=False)
    scores = scores_tensor(eap, build_graph(loaded.cfg, eap.granularity))
    opts = DiscoverOptions.build(method="acdc", candidates=10, n_examples=8)
    a = discover(loaded, "induction", opts, report=False)
    b = discover(loaded, "induction", opts, report=False, candidate_scores=scores)
    assert a.in_circuit == b.in_circuit and a.results == b.results


def test_layouts_at_coarser_granularities_and_with_kv_groups():
    layers = fake_circuit([("input->a0", 1.0), ("a0->m0", 0.5), ("m0->a1", 0.4), ("a1->logits", 2.0)])
    root = ET.fromstring(render_svg(layers))
    assert {"a0", "a1", "m0", "input", "logits"} <= {t.text for t in root.iter(f"{SVG_NS}text")}
    gqa = fake_circuit([("a0.h1->a1.g0<k>", 1.0), ("a0.h1->a1.h2<q>", 0.5), ("a1.h2->logits", 0.3)])
    names = {n.name for n in layout(gqa).nodes}
    assert names == {"a0.h1", "a1.g0", "a1.h2", "logits"}
    assert circuit_heads(gqa) == ["a0.h1", "a1.h2"]


def test_demo_summary_and_index(toy_run, capsys):
    from pathlib import Path

    from subcircuit.cli import print_demo_summary
    from subcircuit.runs.demo import DiscoveryRun, head_labels, write_index

    runs = [DiscoveryRun("toy", toy_run, load_circuit(toy_run), None, 1.5)]
    assert head_labels(toy_run)["a0.h0"] == "previous-token"
    index = write_index(str(toy_run.parent), runs)
    html = Path(index).read_text()
    assert "run/report.html" in html and "a0.h0: previous-token" in html
    print_demo_summary(runs, index)
    out = capsys.readouterr().out
    assert "a0.h0 prev-token" in out and str(toy_run / "report.html") in out


def test_write_report_only_draws_what_it_is_given(tmp_path):
    """report.write_report draws the roles handed in (or the note why there are none) and never
    measures or writes roles itself."""
    c = fake_circuit([("a0.h0->logits", 1.0)])
    svg, html = write_report(tmp_path, c, {"a0.h0": HeadRoles("a0.h0", {"previous-token": 0.9})})
    assert (svg, html) == (tmp_path / "circuit.svg", tmp_path / "report.html")
    assert "prev-token" in svg.read_text() and not (tmp_path / "roles.json").exists()
    _, html = write_report(tmp_path / "other", c, roles_note="no roles: the model is elsewhere")
    assert "no roles: the model is elsewhere" in html.read_text()


def test_circuit_heads_reads_names_through_the_graph_parser():
    c = fake_circuit([("a10.h2->a12.h0<q>", 1.0), ("a2.h11->a10.h2<v>", 0.5), ("a3->m4", 0.1), ("input->a3.g1<k>", 0.2)])
    assert circuit_heads(c) == ["a2.h11", "a10.h2", "a12.h0"]  # numeric order; groups and layers are not heads
