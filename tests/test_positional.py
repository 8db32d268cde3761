"""Position-aware graphs: edges per prompt span, on both engines, in every method.

The hook-style reference (`reference.reference_logits` with span ids) patches each removed edge
`S->R@SPAN` only at the tokens of that span; the engines must agree with it. One span covering
every token must give exactly the plain graph's results."""

from __future__ import annotations

import random

import pytest
import torch
from conftest import TINY_CONFIGS, random_model
from reference import reference_logits

from subcircuit.circuit import Circuit, load_circuit
from subcircuit.errors import UserError
from subcircuit.graph import GRANULARITIES, build_graph, parse_edge
from subcircuit.methods.acdc import acdc_fast, acdc_reference
from subcircuit.methods.attribution import eap_ig_scores, mask_gradient
from subcircuit.methods.base import make_problem
from subcircuit.patching import Patcher, make_ablation
from subcircuit.positional import fold_circuit, positional_graph
from subcircuit.tasks.base import Task
from subcircuit.tasks.metrics import get_metric
from subcircuit.tasks.spans import check_schema, token_counts

SPAN_IDS = torch.tensor([[0, 0, 1, 1, 2, 2, 2], [0, 1, 1, 1, 1, 2, 2], [0, 0, 0, 1, 2, 2, 2]])


def _setup(name="gpt2", gran="heads-qkv", kind="corrupted", spans=("A", "B", "C"), span_ids=SPAN_IDS, metric=(0, 1, 2)):
    model = random_model(TINY_CONFIGS[name])
    plain = build_graph(model.cfg, gran)
    graph = positional_graph(plain, spans, metric)
    g = torch.Generator().manual_seed(3)
    clean = torch.randint(0, model.cfg.vocab_size, tuple(span_ids.shape), generator=g)
    corr = torch.randint(0, model.cfg.vocab_size, tuple(span_ids.shape), generator=g)
    abl = make_ablation(model, graph, kind, clean, corr)
    return model, plain, graph, clean, abl, Patcher(model, graph, clean, abl, spans=span_ids)


@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
@pytest.mark.parametrize("gran", GRANULARITIES)
def test_all_ones_positional_masks_give_the_unpatched_logits(name, gran):
    model, _, graph, clean, _, p = _setup(name, gran)
    full = graph.full_mask()
    torch.testing.assert_close(p.logits(full)[0], model(clean), atol=1e-5, rtol=0)
    torch.testing.assert_close(p.logits_with_grad(full)[0].detach(), model(clean), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
@pytest.mark.parametrize("gran", GRANULARITIES)
def test_one_positional_edge_removed_equals_the_hook_reference_at_that_span(name, gran):
    model, plain, graph, clean, abl, p = _setup(name, gran, kind=["corrupted", "mean", "zero"][len(gran) % 3])
    edges = random.Random(0).sample(graph.edges, 8)
    full = graph.full_mask()
    masks = torch.stack([full - graph.mask_from_edges([e]) for e in edges])
    fast, slow = p.logits(masks), p.logits_with_grad(masks).detach()
    for i, e in enumerate(edges):
        want = reference_logits(model, plain, clean, abl.outputs, {e}, SPAN_IDS, graph.spans)
        torch.testing.assert_close(fast[i], want, atol=1e-5, rtol=0, msg=e)
        torch.testing.assert_close(slow[i], want, atol=1e-5, rtol=0, msg=e)


@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
def test_many_positional_edges_removed_equal_the_hook_reference(name):
    model, plain, graph, clean, abl, p = _setup(name)
    for seed, frac in ((1, 0.3), (2, 0.8)):
        removed = frozenset(random.Random(seed).sample(graph.edges, int(frac * graph.n_edges)))
        mask = graph.full_mask() - graph.mask_from_edges(removed)
        want = reference_logits(model, plain, clean, abl.outputs, removed, SPAN_IDS, graph.spans)
        torch.testing.assert_close(p.logits(mask)[0], want, atol=1e-5, rtol=0)
        torch.testing.assert_close(p.logits_with_grad(mask)[0].detach(), want, atol=1e-5, rtol=0)


def test_metric_positions_and_prefix_start_on_positional_masks():
    model, plain, graph, clean, abl, _ = _setup("llama-gqa")
    pos = torch.tensor([6, 4, 5])
    p = Patcher(model, graph, clean, abl, positions=pos, spans=SPAN_IDS)
    removed = frozenset(random.Random(4).sample(graph.edges, graph.n_edges // 3))
    mask = graph.full_mask() - graph.mask_from_edges(removed)
    want = reference_logits(model, plain, clean, abl.outputs, removed, SPAN_IDS, graph.spans)[torch.arange(3), pos]
    torch.testing.assert_close(p.logits(mask)[0], want, atol=1e-5, rtol=0)
    for si in (2, len(graph.stages) - 1):
        torch.testing.assert_close(p.logits(mask, start=p.prefix(mask, si))[0], want, atol=1e-5, rtol=0)


def test_positional_mask_gradients_match_finite_differences():
    model = random_model(TINY_CONFIGS["gpt2"]).double()
    graph = positional_graph(build_graph(model.cfg), ("A", "B", "C"), (0, 1, 2))
    g = torch.Generator().manual_seed(3)
    clean, corr = (torch.randint(0, model.cfg.vocab_size, (3, 7), generator=g) for _ in range(2))
    p = Patcher(model, graph, clean, make_ablation(model, graph, "corrupted", clean, corr), spans=SPAN_IDS)
    gen = torch.Generator().manual_seed(0)
    mask = (torch.rand(graph.shape, generator=gen, dtype=torch.float64) * graph.exists).requires_grad_(True)

    def f(m):
        return p.logits_with_grad(m)[0].pow(2).sum()

    (grad,) = torch.autograd.grad(f(mask), mask)
    for r, s in random.Random(0).sample(graph.edge_index.tolist(), 6):
        e = torch.zeros(graph.shape, dtype=torch.float64)
        e[r, s] = 1e-6
        fd = (f(mask.detach() + e) - f(mask.detach() - e)) / 2e-6
        torch.testing.assert_close(grad[r, s], fd, atol=1e-5, rtol=1e-4)


def test_a_plain_circuit_converted_to_the_positional_graph_gives_the_same_logits():
    model, plain, graph, clean, abl, p = _setup("llama-gqa")
    keep = random.Random(5).sample(plain.edges, plain.n_edges // 2)
    plain_mask = plain.mask_from_edges(keep)
    want = Patcher(model, plain, clean, abl).logits(plain_mask)
    torch.testing.assert_close(p.logits(graph.to_positional(plain_mask)), want, atol=1e-6, rtol=0)
    assert torch.equal(graph.fold(graph.to_positional(plain_mask)), plain_mask)
    names = graph.positional_edges(keep)
    assert torch.equal(graph.mask_from_edges(names), graph.to_positional(plain_mask))
    assert graph.fold_edges(names) == [e for e in plain.edges if e in set(keep)]


# --------------------------------------------------------------------------- one span = the plain graph


def _tiny_task(model, b=4, p=6, seed=0, spans=None):
    g = torch.Generator().manual_seed(seed)
    v = model.cfg.vocab_size
    clean, corrupted = torch.randint(0, v, (b, p), generator=g), torch.randint(0, v, (b, p), generator=g)
    correct, wrong = torch.randint(0, v, (b, 1), generator=g), torch.randint(0, v, (b, 1), generator=g)
    names, ids = spans if spans is not None else (("all",), torch.zeros(b, p, dtype=torch.long))
    return Task("tiny", clean, corrupted, torch.full((b,), p - 1), correct, wrong, span_names=names, span_ids=ids)


def _problems(spans=None, name="llama-gqa", metric="kl", gran="heads-qkv"):
    model = random_model(TINY_CONFIGS[name], seed=1, scale=0.5)
    task = _tiny_task(model, spans=spans)
    plain = build_graph(model.cfg, gran)
    graph = positional_graph(plain, task.span_names, task.metric_spans)
    m = get_metric(metric)
    return make_problem(model, plain, task, m), make_problem(model, graph, task, m)


def test_one_span_over_every_token_gives_exactly_the_plain_results():
    plain, pos = _problems()
    assert pos.graph.n_edges == plain.graph.n_edges
    assert [e.rsplit("@", 1)[0] for e in pos.graph.edges] == list(plain.graph.edges)
    masks = torch.stack([plain.graph.full_mask(), plain.graph.mask_from_edges(plain.graph.edges[::3])])
    assert torch.equal(pos.patcher.logits(masks), plain.patcher.logits(masks))
    assert torch.equal(pos.patcher.logits_with_grad(masks), plain.patcher.logits_with_grad(masks))
    a, b = acdc_fast(plain, 0.01), acdc_fast(pos, 0.01)
    assert torch.equal(a.mask, b.mask) and torch.equal(a.scores, b.scores)
    assert torch.equal(mask_gradient(plain, masks), mask_gradient(pos, masks))
    assert torch.equal(eap_ig_scores(plain, 3), eap_ig_scores(pos, 3))


SPANS_3 = (("x", "y", "z"), torch.tensor([[0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 2], [0, 0, 0, 1, 1, 2],
                                           [0, 1, 2, 2, 2, 2]]))


@pytest.mark.parametrize(("name", "metric", "gran"), [
    ("gpt2", "kl", "heads-qkv"), pytest.param("llama-gqa", "logit-diff", "heads", marks=pytest.mark.slow)])
def test_fast_acdc_equals_the_reference_on_positional_graphs(name, metric, gran):
    _, pos = _problems(SPANS_3, name=name, metric=metric, gran=gran)
    for tau in (0.003, 0.03):
        ref, fast = acdc_reference(pos, tau), acdc_fast(pos, tau)
        assert torch.equal(fast.mask, ref.mask)
        torch.testing.assert_close(fast.scores, ref.scores, atol=1e-5, rtol=0)
        assert [(t.receiver, t.sender, t.removed) for t in fast.trace] == [
            (t.receiver, t.sender, t.removed) for t in ref.trace]
    assert 0 < int(fast.mask.sum()) < pos.graph.n_edges


def test_the_logits_receiver_exists_only_where_the_metric_reads():
    _, pos = _problems(SPANS_3)
    assert pos.graph.metric_spans == (2,)
    assert [e for e in pos.graph.edges if e.endswith("logits@x") or e.endswith("logits@y")] == []
    assert "a2.h3->logits@z" in pos.graph.edges
    with pytest.raises(UserError, match="does not exist"):
        pos.graph.edge("a2.h3->logits@x")


# --------------------------------------------------------------------------- names, files, spans


def test_positional_edge_names_parse_and_bad_spans_are_refused():
    assert parse_edge("a5.h5->a9.h9<k>@S2") == ("a5.h5", "a9.h9<k>@S2")
    with pytest.raises(UserError, match="malformed span"):
        parse_edge("a5.h5->a9.h9<k>@S-2")
    _, pos = _problems(SPANS_3)
    with pytest.raises(UserError, match="unknown receiver"):
        pos.graph.edge("a0.h0->a1.h0<k>@nope")


def test_circuit_json_keeps_the_spans_and_folds(tmp_path):
    c = Circuit("m", "t", "acdc", "heads-qkv", "corrupted", "kl", {}, [
        {"edge": "a0.h0->a1.h0<k>@first", "score": 2.0, "in_circuit": True},
        {"edge": "a0.h0->a1.h0<k>@second", "score": 1.0, "in_circuit": False},
        {"edge": "a1.h0->logits@second", "score": 3.0, "in_circuit": True}], spans=["first", "second"])
    c.save(tmp_path)
    back = load_circuit(tmp_path)
    assert back.spans == ["first", "second"]
    folded = fold_circuit(back)
    assert folded.spans is None and folded.in_circuit == ["a0.h0->a1.h0<k>", "a1.h0->logits"]
    assert fold_circuit(back, span="second").in_circuit == ["a1.h0->logits"]
    plain = Circuit("m", "t", "acdc", "heads-qkv", "corrupted", "kl", {}, [])
    assert "spans" not in plain.to_dict()


def test_prompts_that_do_not_match_the_schema_are_refused_with_one_line():
    with pytest.raises(UserError, match=r"missing \['S2'\]") as e:
        check_schema([("IO", " Mary"), ("S1", " John")], ("IO", "S1", "S2"), "ex 3")
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="sum to 5"):
        token_counts([("a", 2), ("b", 3)], [1, 2, 3, 4], None, "ex 0")
    with pytest.raises(UserError, match="token boundary"):
        token_counts([("a", "ab"), ("b", "c")], [7, 8], lambda t: {"ab": [7, 7], "abc": [7, 8]}.get(t, [9]), "ex 1")
    with pytest.raises(UserError, match="holds no token"):
        token_counts([("a", 2), ("b", 0)], [1, 2], None, "ex 2")


def test_toy_induction_positional_acdc_places_each_head_at_its_half(tmp_path):
    """The previous-token head a0.h0 writes into the induction head a1.h0's key in the first
    half (where the key reads the previous token), the induction head writes to the logits in
    the second half (where the metric reads)."""
    from subcircuit.runs.discover import discover
    from subcircuit.runs.options import DiscoverOptions

    c = discover("toy-induction-2l", "induction", DiscoverOptions.build("acdc", positions="spans"), out=tmp_path)
    kept = set(c.in_circuit)
    assert c.spans == ["first", "second"]
    assert "a0.h0->a1.h0<k>@first" in kept and "a0.h0->a1.h0<k>@second" not in kept
    assert "a1.h0->logits@second" in kept
    assert c.results["faithfulness"] > 0.95
    assert [s for s, _ in c.params["span_example"]][:2] == ["first", "first"]
    html = (tmp_path / "report.html").read_text()
    assert 'id="fold-toggle"' in html and "span-col" in html


def test_task_files_mark_spans_and_prompts_of_other_lengths_align_by_span(tmp_path):
    from word_tokenizer import id_model, word_model

    from subcircuit.tasks import load_task_file

    cut = [["pre", "When"], ["IO", " Mary"], ["and", " and"], ["S1", " John"], ["rest", " went to the store,"],
           ["S2", " John"], ["END", " gave a drink to"]]
    cut2 = [["pre", "When"], ["S1", " Tom"], ["and", " and"], ["IO", " Anna"], ["rest", " went to the school,"],
            ["S2", " Tom"], ["END", " gave a ring to"]]
    lines = [{"format": "subcircuit.task/1", "spans": ["pre", "IO", "and", "S1", "rest", "S2", "END"]},
             {"clean": "".join(t for _, t in cut), "corrupted": "When Lisa and Paul went to the store, Kevin gave a drink to",
              "correct": " Mary", "wrong": " John", "spans": cut},
             {"clean": "".join(t for _, t in cut2), "corrupted": "When Jack and Emma went to the school, Sarah gave a ring to",
              "correct": " Anna", "wrong": " Tom", "spans": cut2}]
    p = tmp_path / "t.jsonl"
    p.write_text("\n".join(__import__("json").dumps(x) for x in lines) + "\n")
    task = load_task_file(p, word_model())
    assert task.span_names[1] == "IO" and task.span_ids[0, 1] == 1 and task.span_ids[1, 3] == 1
    assert task.metric_spans == (6,)
    bad = dict(lines[1], spans=cut[:-1])
    p.write_text("\n".join(__import__("json").dumps(x) for x in [lines[0], bad]) + "\n")
    with pytest.raises(UserError, match=r"t.jsonl:2: spans .* \(missing \['END'\]\)"):
        load_task_file(p, word_model())
    ids = tmp_path / "ids.jsonl"
    ids.write_text(__import__("json").dumps({"clean": [1, 5, 9, 5], "corrupted": [1, 7, 9, 5], "correct": 9,
                                            "wrong": 3, "spans": [["a", 2], ["b", 2]]}) + "\n")
    t = load_task_file(ids, id_model())
    assert t.span_names == ("a", "b") and t.span_ids.tolist() == [[0, 0, 1, 1]]


def test_edge_pruning_eap_and_curves_run_on_positional_graphs():
    from subcircuit.evaluation.curves import faithfulness_curve
    from subcircuit.methods import Context, get_method

    _, pos = _problems(SPANS_3, name="gpt2", metric="logit-diff")
    spec = get_method("edge-pruning")
    res = spec.fn(pos, spec.options(train_steps=3, edges=20), Context())
    assert res.scores.shape == (pos.graph.n_edges,) and int(res.in_circuit.sum()) <= 20
    eap = get_method("eap").fn(pos, get_method("eap").options(), Context())
    # EAP's positional scores split the plain ones by span: summed over spans they are the plain scores
    plain = build_graph(pos.model.cfg)
    plain_problem = make_problem(pos.model, plain, pos.task, pos.metric)
    want = get_method("eap").fn(plain_problem, get_method("eap").options(), Context()).scores
    summed = pos.graph.from_flat(eap.scores).reshape(len(plain.receivers), 3, -1).sum(1)
    torch.testing.assert_close(plain.to_flat(summed), want, atol=1e-5, rtol=1e-4)
    curve = faithfulness_curve(pos, eap.scores)
    assert len(curve.faithfulness) == len(curve.fractions)


def test_span_uniform_mask_gradients_split_the_plain_gradient_by_span():
    """EAP and EAP-IG masks (the same weights at every span) take the plain run; their gradient
    per span must still be each span's own: finite differences, and EAP-IG summed over spans."""
    model = random_model(TINY_CONFIGS["llama-gqa"]).double()
    graph = positional_graph(build_graph(model.cfg), ("A", "B", "C"), (2,))
    g = torch.Generator().manual_seed(3)
    clean, corr = (torch.randint(0, model.cfg.vocab_size, (3, 7), generator=g) for _ in range(2))
    pos = torch.tensor([6, 5, 6])
    p = Patcher(model, graph, clean, make_ablation(model, graph, "corrupted", clean, corr), positions=pos,
                spans=SPAN_IDS)
    mask = (0.6 * graph.full_mask(torch.float64)).requires_grad_(True)

    def f(m):
        return p.logits_with_grad(m)[0].pow(2).sum()

    (grad,) = torch.autograd.grad(f(mask), mask)
    for r, s in random.Random(1).sample(graph.edge_index.tolist(), 8):
        e = torch.zeros(graph.shape, dtype=torch.float64)
        e[r, s] = 1e-6
        fd = (f(mask.detach() + e) - f(mask.detach() - e)) / 2e-6
        torch.testing.assert_close(grad[r, s], fd, atol=1e-6, rtol=1e-4)
    plain, posp = _problems(SPANS_3, metric="logit-diff")
    summed = posp.graph.from_flat(posp.graph.to_flat(eap_ig_scores(posp, 3))).reshape(
        len(plain.graph.receivers), 3, -1).sum(1)
    torch.testing.assert_close(summed, eap_ig_scores(plain, 3), atol=1e-5, rtol=1e-4)


def test_cli_positions_spans_and_a_bad_value(tmp_path, capsys):
    from subcircuit.cli import run_cli

    assert run_cli(["discover", "-m", "toy-induction-2l", "-t", "induction", "--positions", "tokens",
                    "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "positions" in err and "spans" in err and len(err.strip().splitlines()) == 1
    assert run_cli(["discover", "-m", "toy-induction-2l", "-t", "induction", "--positions", "spans", "--method", "eap-ig",
                    "--edges", "10", "--out", str(tmp_path / "y")]) == 0
    c = load_circuit(tmp_path / "y")
    assert c.spans == ["first", "second"] and len(c.in_circuit) == 10 and c.options["positions"] == "spans"
    assert run_cli(["evaluate", str(tmp_path / "y")]) == 0


def test_builtin_ioi_spans_mark_the_names():
    from word_tokenizer import word_model

    from subcircuit.tasks import get_task

    t = get_task("ioi", word_model(), 12, 0)
    names = t.span_names
    for i in range(t.n):
        ids, sp = t.clean[i], t.span_ids[i]
        at = {names[k]: (sp == k).nonzero().flatten().tolist() for k in range(len(names))}
        assert ids[at["IO"]].tolist() == [int(t.correct[i, 0])]
        assert ids[at["S1"]].tolist() == ids[at["S2"]].tolist() == [int(t.wrong[i, 0])]
        assert at["END"][0] == int(t.positions[i]) and all(len(v) for v in at.values())
    assert t.metric_spans == (names.index("END"),)
