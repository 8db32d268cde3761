"""Property-based tests (hypothesis): the parsers of user files never fail with anything but the
documented one-line `UserError`, whatever they are given: random text, random JSON, and valid
files with random mutations. Covered: task files (parsing and tokenizing), circuit files, edge
names."""

from __future__ import annotations

import json
from functools import cache

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from word_tokenizer import id_model, word_model

from subcircuit.circuit import Circuit, load_circuit
from subcircuit.errors import UserError
from subcircuit.graph import build_graph, parse_edge
from subcircuit.models.config import ModelConfig
from subcircuit.tasks.files import load_task_file, read_task_file, tokenize_task_file

# no deadline and no too_slow health check: how fast examples run or are generated depends on the
# machine's load, not on the code
SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=12)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


def _ok_or_user_error(fn, *args) -> None:
    try:
        fn(*args)
    except UserError as e:
        assert "\n" not in str(e) and str(e)


# ------------------------------------------------------------------------------ task files

EXAMPLE = {"clean": [0, 5, 9, 5], "corrupted": [0, 7, 9, 5], "correct": 9, "wrong": [3, 4]}
TEXT_EXAMPLE = {"clean": "When Mary and John went out, John thanked",
                "corrupted": "When Anna and Paul went out, Kevin thanked", "correct": " Mary", "wrong": " John"}
FIELDS = ["clean", "corrupted", "correct", "wrong", "format", "name", "metric", "description", "x"]


@cache
def _models():
    return id_model(), word_model()


def _check_task_text(tmp_path, text: str) -> None:
    p = tmp_path / "t.jsonl"
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        tf = read_task_file(p)
    except UserError as e:
        assert "\n" not in str(e)
        return
    for loaded in _models():
        _ok_or_user_error(tokenize_task_file, tf, loaded)


@SETTINGS
@given(lines=st.lists(st.text(max_size=40) | json_values.map(json.dumps), max_size=5))
def test_task_file_random_lines(tmp_path, lines):
    _check_task_text(tmp_path, "\n".join(line.replace("\n", " ") for line in lines))


@SETTINGS
@given(base=st.sampled_from([EXAMPLE, TEXT_EXAMPLE]),
       edits=st.lists(st.tuples(st.sampled_from(FIELDS), json_values | st.just(None)), max_size=4),
       drop=st.lists(st.sampled_from(FIELDS), max_size=2), header=st.booleans(), n=st.integers(1, 3))
def test_task_file_mutated_examples(tmp_path, base, edits, drop, header, n):
    row = dict(base)
    for k, v in edits:
        row[k] = v
    for k in drop:
        row.pop(k, None)
    lines = ([json.dumps({"format": "subcircuit.task/1", "metric": "kl"})] if header else [])
    lines += [json.dumps(base)] * (n - 1) + [json.dumps(row)]
    _check_task_text(tmp_path, "\n".join(lines))


@SETTINGS
@given(data=st.binary(max_size=80))
def test_task_file_random_bytes(tmp_path, data):
    p = tmp_path / "b.jsonl"
    p.write_bytes(data)
    _ok_or_user_error(load_task_file, p, _models()[0])


@SETTINGS
@given(lengths=st.lists(st.tuples(st.integers(1, 60), st.integers(1, 60)), min_size=1, max_size=4))
def test_task_file_prompts_fit_the_context(tmp_path, lengths):
    """Prompts of any length: the task's prompts fit the model's context, or a one-line
    UserError names the line."""
    loaded = _models()[0]
    p = tmp_path / "long.jsonl"
    p.write_text("\n".join(json.dumps({"clean": [1] * a, "corrupted": [2] * b, "correct": 1, "wrong": 2})
                           for a, b in lengths) + "\n")
    try:
        task = load_task_file(p, loaded)
    except UserError as e:
        line = next(i for i, (a, b) in enumerate(lengths, start=1) if max(a, b) > loaded.cfg.n_ctx or a != b)
        assert str(e).startswith(f"task file {p}:{line}: ") and "\n" not in str(e)
        return
    assert task.clean.shape[1] <= loaded.cfg.n_ctx


# lines without line breaks (str.splitlines also breaks at some control and separator characters)
lines_text = st.lists(st.text(st.characters(codec="utf-8", exclude_categories=["Cc", "Cs", "Zl", "Zp"]), max_size=20),
                      min_size=1, max_size=6)


@SETTINGS
@given(lines=lines_text, data=st.data())
def test_task_file_not_utf8_names_its_line(tmp_path, lines, data):
    """A byte that is not UTF-8 anywhere in a file (\n or \r\n line ends): the error names its line."""
    k = data.draw(st.integers(0, len(lines) - 1))
    at = data.draw(st.integers(0, len(lines[k].encode())))
    end = data.draw(st.sampled_from([b"\n", b"\r\n"]))
    raw = [x.encode() for x in lines]
    raw[k] = raw[k][:at] + b"\xff" + raw[k][at:]
    p = tmp_path / "b.jsonl"
    p.write_bytes(end.join(raw))
    try:
        read_task_file(p)
    except UserError as e:
        assert str(e).startswith(f"task file {p}:{k + 1}: not UTF-8 text (")
    else:
        raise AssertionError("read a file that is not UTF-8")


# ------------------------------------------------------------------------------ circuit files

CFG = ModelConfig(family="gpt2", n_layers=2, d_model=8, n_heads=2, d_head=4, d_mlp=0, vocab_size=11, mlp="none")
GRAPH = build_graph(CFG, "heads-qkv")


def _valid_circuit() -> dict:
    edges = [{"edge": e, "score": float(i), "in_circuit": i % 3 == 0} for i, e in enumerate(GRAPH.edges)]
    c = Circuit(model="m", task="t", method="acdc", granularity="heads-qkv", ablation="corrupted", metric="kl",
                params={"threshold": 0.1}, edges=edges, results={"faithfulness": 1.0}, timings_s={"total": 1.0},
                versions={"torch": "x"}, options={"seed": 0})
    return c.to_dict()


TOP_FIELDS = ["format", "model", "task", "method", "granularity", "ablation", "metric", "params", "edges", "results",
              "timings_s", "versions", "options"]
EDGE_FIELDS = ["edge", "score", "in_circuit"]


def _check_circuit_text(tmp_path, text: str) -> None:
    (tmp_path / "circuit.json").write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        c = load_circuit(tmp_path, GRAPH)
    except UserError as e:
        assert "\n" not in str(e)
        return
    assert all(isinstance(e["edge"], str) for e in c.edges)  # what loaded is usable
    GRAPH.mask_from_edges(c.in_circuit)


@SETTINGS
@given(top=st.lists(st.tuples(st.sampled_from(TOP_FIELDS), json_values), max_size=3),
       drop=st.lists(st.sampled_from(TOP_FIELDS), max_size=2),
       edge_edits=st.lists(st.tuples(st.integers(0, 100), st.sampled_from(EDGE_FIELDS), json_values), max_size=3),
       dup=st.booleans(), cut=st.none() | st.integers(0, 400))
def test_circuit_file_mutations(tmp_path, top, drop, edge_edits, dup, cut):
    d = _valid_circuit()
    for k, v in top:
        d[k] = v
    for k in drop:
        d.pop(k, None)
    if isinstance(d.get("edges"), list) and d["edges"]:
        for i, k, v in edge_edits:
            e = d["edges"][i % len(d["edges"])]
            if isinstance(e, dict):
                e[k] = v
        if dup:
            d["edges"].append(d["edges"][0])
    text = json.dumps(d)
    _check_circuit_text(tmp_path, text if cut is None else text[:cut])


@SETTINGS
@given(value=json_values)
def test_circuit_file_random_json(tmp_path, value):
    _check_circuit_text(tmp_path, json.dumps(value))


@SETTINGS
@given(data=st.binary(max_size=60))
def test_circuit_file_random_bytes(tmp_path, data):
    (tmp_path / "circuit.json").write_bytes(data)
    _ok_or_user_error(load_circuit, tmp_path, GRAPH)


# ------------------------------------------------------------------------------ edge names

node_parts = st.sampled_from(["input", "logits", "m0", "a0", "a1.h1", "a0.h0<q>", "a1.h1<k>", "a1.g0<v>", "a9.h9",
                              "a1.h1<z>", "", " ", "->", "<q>", "a", "h1", "a-1.h0", "a0.h0<q><k>"])
edge_like = st.builds(lambda a, sep, b: a + sep + b, node_parts | st.text(max_size=8),
                      st.sampled_from(["->", "-> ", " -> ", "=>", "-", "->->", ""]), node_parts | st.text(max_size=8))


@SETTINGS
@given(name=edge_like | st.text(max_size=30))
def test_edge_names_parse_or_fail_with_user_error(name):
    _ok_or_user_error(parse_edge, name)
    try:
        r, s = GRAPH.edge(name)
    except UserError as e:
        assert "\n" not in str(e) and str(e)
        return
    assert GRAPH.exists[r, s]  # a name that resolves is an existing edge


@SETTINGS
@given(i=st.integers(0, GRAPH.n_edges - 1), pad=st.sampled_from(["", " "]))
def test_every_edge_name_round_trips(i, pad):
    name = GRAPH.edges[i]
    sender, receiver = parse_edge(pad + name.replace("->", f"{pad}->{pad}") + pad)
    assert f"{sender}->{receiver}" == name
    assert GRAPH.edges[GRAPH.edge_position(name)] == name
    assume(pad == "")
    r, s = GRAPH.edge(name)
    assert (GRAPH.receivers[r].name, GRAPH.senders[s].name) == (receiver, sender)
