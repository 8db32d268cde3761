"""ACDC: the fast path makes exactly the reference's decisions; traces resume and replay."""

from __future__ import annotations

import pytest
import torch
from conftest import FAMILY_CONFIGS, TINY_CONFIGS, random_model

from subcircuit.errors import UserError
from subcircuit.graph import build_graph
from subcircuit.methods.acdc import acdc_fast, acdc_reference
from subcircuit.methods.base import make_problem
from subcircuit.tasks.base import Task
from subcircuit.tasks.metrics import get_metric


def tiny_task(model, b=4, p=6, seed=0) -> Task:
    g = torch.Generator().manual_seed(seed)
    v = model.cfg.vocab_size
    clean = torch.randint(0, v, (b, p), generator=g)
    corrupted = torch.randint(0, v, (b, p), generator=g)
    correct = torch.randint(0, v, (b, 1), generator=g)
    wrong = torch.randint(0, v, (b, 1), generator=g)
    return Task("tiny", clean, corrupted, torch.full((b,), p - 1), correct, wrong)


def problem_for(name, gran="heads-qkv", ablation="corrupted", metric="kl", seed=1):
    model = random_model(TINY_CONFIGS[name], seed=seed, scale=0.5)
    return make_problem(model, build_graph(model.cfg, gran), tiny_task(model), get_metric(metric), ablation)


def assert_same(fast, ref):
    assert torch.equal(fast.mask, ref.mask)
    torch.testing.assert_close(fast.scores, ref.scores, atol=1e-5, rtol=0)
    assert [(t.receiver, t.sender, t.removed) for t in fast.trace] == [
        (t.receiver, t.sender, t.removed) for t in ref.trace]


SETTINGS = [(0.003, False), (0.03, False), (0.01, True)]  # (τ, --abs)


@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
@pytest.mark.parametrize("ablation", ["corrupted", "mean", "zero"])
def test_fast_equals_reference(name, ablation):
    """Every model meets every (τ, --abs) setting and every ablation (a Latin square)."""
    i = (sorted(TINY_CONFIGS).index(name) + ["corrupted", "mean", "zero"].index(ablation)) % 3
    tau, abs_value = SETTINGS[i]
    prob = problem_for(name, ablation=ablation)
    ref = acdc_reference(prob, tau, abs_value)
    fast = acdc_fast(prob, tau, abs_value)
    assert_same(fast, ref)
    assert 0 < int(ref.mask.sum()) < prob.graph.n_edges or tau > 0.01  # a nontrivial circuit
    assert fast.forward_configs >= ref.forward_configs  # speculation only adds configurations


@pytest.mark.parametrize("gran", ["heads", "layers"])
def test_fast_equals_reference_other_granularities(gran):
    prob = problem_for("llama-gqa", gran=gran, metric="logit-diff")
    assert_same(acdc_fast(prob, 0.02), acdc_reference(prob, 0.02))


@pytest.mark.parametrize("name", ["gpt_neox", "gemma2", "olmo2"])
def test_fast_equals_reference_on_family_features(name):
    """Parallel attention/MLP (the MLP's prefix holds its own layer's heads), post-norms (heads of a
    layer share one scale) and whole-projection q/k norms under ACDC's prefixes and batches."""
    model = random_model(FAMILY_CONFIGS[name], seed=1, scale=0.5)
    prob = make_problem(model, build_graph(model.cfg), tiny_task(model), get_metric("kl"), "corrupted")
    ref = acdc_reference(prob, 0.01)
    assert_same(acdc_fast(prob, 0.01), ref)
    assert 0 < int(ref.mask.sum()) < prob.graph.n_edges


def test_small_batches_equal_large(monkeypatch):
    prob = problem_for("gpt2")
    assert_same(acdc_fast(prob, 0.005, max_batch=1), acdc_fast(prob, 0.005, max_batch=64))


def test_resume_from_partial_trace_equals_uninterrupted():
    prob = problem_for("llama-gqa")
    whole = acdc_fast(prob, 0.005)
    snapshots = []

    class Stop(Exception):
        pass

    def interrupt(state):
        snapshots.append(list(state.trace))
        if len(snapshots) == 7:
            raise Stop

    with pytest.raises(Stop):
        acdc_fast(prob, 0.005, on_receiver=interrupt)
    partial = snapshots[-1]
    assert 0 < len(partial) < len(whole.trace)
    resumed = acdc_fast(prob, 0.005, trace=partial)
    assert_same(resumed, whole)
    assert resumed.forward_configs < whole.forward_configs


def test_trace_from_another_threshold_is_reused_exactly():
    prob = problem_for("gpt2")
    low = acdc_fast(prob, 0.002)
    direct = acdc_fast(prob, 0.02)
    reused = acdc_fast(prob, 0.02, trace=low.trace)
    assert_same(reused, direct)


def test_bad_threshold():
    prob = problem_for("gpt2")
    for bad in (float("nan"), -1.0):
        with pytest.raises(UserError, match="threshold"):
            acdc_fast(prob, bad)


@pytest.mark.parametrize(("model", "task", "ablation", "tau", "abs_value"), [
    ("toy-induction-2l", "induction", "corrupted", 0.003, False),
    ("toy-induction-2l", "induction", "mean", 0.02, True),
    ("tracr-reverse", "tracr-reverse", "zero", 0.01, False),
    ("tracr-proportion", "tracr-proportion", "zero", 0.001, True),
])
def test_fast_equals_reference_on_shipped_models(model, task, ablation, tau, abs_value):
    from subcircuit.models import load
    from subcircuit.tasks import get_task

    lm = load(model)
    t = get_task(task, lm, n=8, seed=0)
    prob = make_problem(lm.model, build_graph(lm.cfg, "heads-qkv"), t, get_metric(t.metric), ablation)
    assert_same(acdc_fast(prob, tau, abs_value), acdc_reference(prob, tau, abs_value))


def test_fast_path_is_bit_for_bit_reproducible():
    """The batch never depends on measured time, so two runs give identical scores."""
    prob = problem_for("gpt2")
    a, b = acdc_fast(prob, 0.005), acdc_fast(prob, 0.005)
    assert torch.equal(a.scores, b.scores) and a.forward_configs == b.forward_configs


# ------------------------------------------------------------------------------ behind the registry


def test_registered_method_runs_fast_path_or_reference():
    from subcircuit.methods import run_method

    prob = problem_for("gpt2")
    fast = run_method("acdc", prob, threshold=0.005)
    ref = run_method("acdc", prob, threshold=0.005, reference=True)
    assert torch.equal(fast.in_circuit, ref.in_circuit)
    torch.testing.assert_close(fast.scores, ref.scores, atol=1e-5, rtol=0)
    assert fast.params == ref.params == {"threshold": 0.005, "abs": False}
    assert fast.info["n_trials"] == ref.info["n_trials"] and "trace" not in fast.info


def test_options_are_checked_with_one_line_errors():
    from subcircuit.methods import build_options
    from subcircuit.methods.acdc import ACDCOptions

    assert build_options(ACDCOptions, {"threshold": 1}, "acdc").threshold == 1.0  # an int is a float
    for values, message in [({"threshold": float("nan")}, "--threshold nan is invalid; expected a number >= 0"),
                            ({"threshold": 0.1, "edges": 5}, "give either --threshold or --edges"),
                            ({"ig": "grads"}, "--ig 'grads' is invalid; expected one of inputs, activations"),
                            ({"max_batch": 0}, "--max-batch 0 is invalid; expected at least 1"),
                            ({"candidates": "7"}, "--candidates '7' is invalid; expected an int"),
                            ({"lr": 0.1}, "--lr is not an option of acdc (its options: --threshold, --edges, --abs")]:
        with pytest.raises(UserError, match="^" + message.replace("(", r"\(").replace(")", r"\)")) as e:
            build_options(ACDCOptions, values, "acdc")
        assert "\n" not in str(e.value)


def test_trace_file_resumes_an_interrupted_run(tmp_path):
    """ACDC keeps `acdc-trace.json` in ctx.folder after every receiver; a run interrupted from its
    progress callback resumes from it (ctx.resume) to the uninterrupted result."""
    from subcircuit.methods import Context, run_method
    from subcircuit.methods.acdc import TRACE_FILE, read_trace_header

    prob = problem_for("llama-gqa")
    whole = run_method("acdc", prob, threshold=0.005)
    calls = {"n": 0}

    def interrupt(done, total, what):
        calls["n"] += 1
        if calls["n"] == 40:
            raise KeyboardInterrupt

    header = {"run": "test"}
    with pytest.raises(KeyboardInterrupt):
        run_method("acdc", prob, Context(interrupt, folder=tmp_path, header=header), threshold=0.005)
    assert read_trace_header(tmp_path / TRACE_FILE) == header
    with pytest.raises(UserError, match="options differ"):
        run_method("acdc", prob, Context(folder=tmp_path, header={"run": "other"}, resume=True), threshold=0.005)
    resumed = run_method("acdc", prob, Context(folder=tmp_path, header=header, resume=True), threshold=0.005)
    assert torch.equal(resumed.in_circuit, whole.in_circuit)
    torch.testing.assert_close(resumed.scores, whole.scores, atol=1e-6, rtol=0)
    assert resumed.info["forward_configs"] < whole.info["forward_configs"]


def test_runs_of_a_session_replay_each_other_through_the_cache():
    from subcircuit.methods import Context, run_method

    prob = problem_for("gpt2")
    ctx = Context()
    first = run_method("acdc", prob, ctx, threshold=0.002)
    again = run_method("acdc", prob, ctx, threshold=0.02)
    alone = run_method("acdc", prob, threshold=0.02)
    assert torch.equal(again.in_circuit, alone.in_circuit)
    assert again.info["forward_configs"] < alone.info["forward_configs"] and first.info["forward_configs"] > 0


def test_candidates_come_from_the_cache_when_present():
    from subcircuit.methods import Context, run_method
    from subcircuit.methods.acdc import scores_key

    prob = problem_for("gpt2")
    g = prob.graph
    scores = torch.arange(g.n_edges, dtype=torch.float32)  # the last 10 edges are the candidates
    ctx = Context(cache={scores_key(5, "inputs"): scores})
    res = run_method("acdc", prob, ctx, threshold=0.005, candidates=10)
    assert not bool(res.in_circuit[:-10].any()) and bool((res.scores[:-10] == 0).all())
    assert res.params == {"threshold": 0.005, "abs": False, "candidates": 10, "ig_steps": 5, "ig": "inputs"}
    computed = Context()
    run_method("acdc", prob, computed, threshold=0.005, candidates=10)
    assert tuple(computed.cache[scores_key(5, "inputs")].shape) == (g.n_edges,)  # stored for the next run
