"""`discover --bootstrap B` (runs/bootstrap.py) and the per-method defaults (methods/defaults.py)."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from word_tokenizer import id_model

from subcircuit.circuit import load_circuit
from subcircuit.errors import UserError
from subcircuit.methods.defaults import bad_combination
from subcircuit.methods.selection import SelectOptions, select_circuit
from subcircuit.runs.bootstrap import STABLE, bootstrap_session, jaccard_mean, percentile_interval
from subcircuit.runs.discover import discover
from subcircuit.runs.options import DiscoverOptions
from subcircuit.runs.pipeline import open_session


@pytest.mark.parametrize("method, values", [("eap-ig", {"edges": 6, "ig_steps": 2}), ("acdc", {"threshold": 0.05}),
                                            ("random", {"edges": 6})])
def test_frequency_is_the_fraction_of_reruns_that_kept_the_edge(method, values, tmp_path):
    opts = DiscoverOptions.build(method, n_examples=6, n_eval=8, **values)
    session = open_session(id_model(), "induction", opts)
    b = 4
    circuit, res = bootstrap_session(session, opts, b, out=tmp_path)
    graph = session.graph
    counts = torch.zeros(graph.n_edges)
    for c in res.circuits:  # recount from the reruns' own circuits
        for name in c.in_circuit:
            counts[graph.edge_position(name)] += 1
    stored = load_circuit(tmp_path, graph)
    for e in stored.edges:
        assert 0.0 <= e["frequency"] <= 1.0
        assert e["frequency"] == counts[graph.edge_position(e["edge"])].item() / b
    bs = stored.results["bootstrap"]
    assert bs["n_reruns"] == b
    assert bs["stable_core"]["n_edges"] == int((counts / b >= STABLE).sum())
    lo, hi = bs["size_interval"]
    sizes = [c.results["n_edges_in_circuit"] for c in res.circuits]
    assert min(sizes) <= lo <= hi <= max(sizes)
    assert 0.0 <= bs["jaccard_mean"] <= 1.0
    assert "faithfulness_heldout" in bs["stable_core"]
    # the reruns see resampled prompts (and, for a stochastic method, other seeds)
    assert len({c.params["seed"] for c in res.circuits}) == b


def test_bootstrap_through_discover_writes_the_report(tmp_path):
    c = discover(id_model(), "induction", DiscoverOptions.build("eap", edges=5, n_examples=6, n_eval=8),
                 out=tmp_path, bootstrap=3, report=True)
    assert all("frequency" in e for e in c.edges)
    html = (tmp_path / "report.html").read_text()
    assert "Stability (bootstrap)" in html and "Stable core" in html and "held-out prompts" in html
    assert json.loads((tmp_path / "circuit.json").read_text())["results"]["bootstrap"]["n_reruns"] == 3
    with pytest.raises(UserError, match=r"^--bootstrap 1 is invalid"):
        discover(id_model(), "induction", DiscoverOptions.build("eap", edges=5), bootstrap=1, report=False)


def test_jaccard_and_interval():
    keeps = torch.tensor([[1, 1, 0, 0], [1, 0, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    assert jaccard_mean(keeps) == pytest.approx((1 / 3 + 1 + 1 / 3) / 3)
    assert percentile_interval([1.0, 2.0, 3.0], 0, 100) == [1.0, 3.0]
    assert percentile_interval([None]) is None


def test_abs_ranking_selects_by_magnitude():
    from subcircuit.graph import build_graph

    graph = build_graph(id_model().cfg, "heads-qkv")
    scores = torch.zeros(graph.n_edges)
    scores[0], scores[1], scores[2] = -5.0, 3.0, 1.0
    keep, params, _ = select_circuit(graph, scores, SelectOptions(edges=2, ranking="abs"))
    assert keep[:3].tolist() == [True, True, False] and params["ranking"] == "abs"
    keep, params, _ = select_circuit(graph, scores, SelectOptions(edges=2, ranking="signed"))
    assert keep[:3].tolist() == [False, True, True] and params["ranking"] == "signed"


def test_defaults_are_recorded_and_bad_combinations_warned(caplog):
    loaded = id_model()
    c = discover(loaded, "induction", DiscoverOptions.build("eap-ig", edges=5, ig_steps=2, n_examples=6, n_eval=0),
                 report=False)
    assert c.metric == "nll"  # induction's own metric (MIB: the task's metric for EAP-IG)
    assert c.params["ranking"] == "signed" and c.params["defaults"]["chosen"] == ["metric", "ranking"]
    given = DiscoverOptions.build("eap-ig", edges=5, ig_steps=2, n_examples=6, n_eval=0, metric="kl",
                                  ranking="signed")
    with caplog.at_level(logging.WARNING):
        c2 = discover(loaded, "induction", given, report=False)
    assert "defaults" not in c2.params and c2.params["ranking"] == "signed"
    warned = [r.message for r in caplog.records if "--ranking signed" in r.message]
    assert len(warned) == 1 and "\n" not in warned[0]
    from subcircuit.methods.defaults import ranking_for

    assert ranking_for("eap-ig", "kl") == "abs" and ranking_for("eap-ig", "logit-diff") == "signed"
    assert ranking_for("eap", "logit-diff") == "abs" and ranking_for("hisp", "kl") == "signed"
    assert bad_combination("eap-ig", "kl", "abs") is None and bad_combination("acdc", "kl", None) is None
    assert bad_combination("eap", "kl", "abs") is not None
