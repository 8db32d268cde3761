"""Circuits in notebooks: the inline display and the helpers (edges_frame, to_networkx, heads)."""

from __future__ import annotations

import html
import json
import subprocess
import sys

from subcircuit.circuit import Circuit
from subcircuit.evaluation.roles import HeadRoles, save_roles
from subcircuit.runs.notebook import open_run

EDGES = [
    {"edge": "a1.h0->logits", "score": 2.0, "in_circuit": True},
    {"edge": "a0.h0->a1.h0<k>", "score": 1.0, "in_circuit": True},
    {"edge": "input->a0.h0<q>", "score": 0.5, "in_circuit": True},
    {"edge": "input->logits", "score": -0.1, "in_circuit": False},
]


def circuit() -> Circuit:
    return Circuit(model="toy-induction-2l", task="induction", method="acdc", granularity="heads-qkv",
                   ablation="corrupted", metric="kl", params={"threshold": 0.01}, edges=EDGES,
                   results={"n_edges_total": 29, "n_edges_in_circuit": 3, "faithfulness": 0.93})


def test_a_circuit_shows_the_reports_interactive_diagram_inline() -> None:
    out = circuit()._repr_html_()
    assert out.startswith("<div class='subcircuit-circuit'>") and "<iframe srcdoc=" in out
    assert "3 / 29" in out and "0.93" in out  # the summary numbers
    doc = html.unescape(out.split('srcdoc="', 1)[1].split('"', 1)[0])
    assert 'id="circuit-svg"' in doc and 'id="edge-slider"' in doc and "data-edge=\"a1.h0-&gt;logits\"" in doc
    assert "<script src=" not in doc  # offline: script and style inlined


def test_edges_frame_networkx_and_heads() -> None:
    c = circuit()
    f = c.edges_frame()
    assert list(f.columns) == ["edge", "sender", "receiver", "port", "score", "in_circuit"]
    assert list(f["edge"])[:2] == ["a1.h0->logits", "a0.h0->a1.h0<k>"] and f.loc[1, "port"] == "k"
    assert len(c.edges_frame(only_circuit=True)) == 3
    g = c.to_networkx()
    assert set(g.edges(keys=True)) == {("a1.h0", "logits", "a1.h0->logits"), ("a0.h0", "a1.h0", "a0.h0->a1.h0<k>"),
                                       ("input", "a0.h0", "input->a0.h0<q>")}
    assert g.edges["a0.h0", "a1.h0", "a0.h0->a1.h0<k>"]["port"] == "k"
    assert [h["head"] for h in c.heads()] == ["a0.h0", "a1.h0"]
    roles = {"a1.h0": HeadRoles("a1.h0", {"induction": 0.9, "copying": 0.1})}
    rows = c.heads(roles)
    assert rows[1]["label"] == "induction" and rows[1]["induction"] == 0.9 and rows[0]["label"] is None


def test_a_run_folder_displays_with_its_roles(tmp_path) -> None:
    c = circuit()
    c.save(tmp_path)
    save_roles(tmp_path / "roles.json", {"a1.h0": HeadRoles("a1.h0", {"induction": 0.9})}, c.model, c.task)
    run = open_run(tmp_path)
    assert run.heads()[1]["label"] == "induction"
    assert "induction" in html.unescape(run._repr_html_())


def test_importing_subcircuit_stays_cheap() -> None:
    code = ("import sys, subcircuit, subcircuit.circuit; "
            "print(json.dumps([m for m in ('pandas', 'networkx', 'IPython') if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
