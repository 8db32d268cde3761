"""Property tests: ACDC's fast path makes exactly the decisions of the independent reference.

The reference (`methods/acdc/reference.py`) is a plain loop written from the definition, with its
own order and dead-receiver check, one full forward pass per trial on the autograd engine; the
fast path (`walk.py` + `fast.py`) walks with stage caches, speculative batches, a memo across
batches and the engine without autograd. They must agree on every trial's decision, the final
graph, the skipped edges and (to float rounding) every score, over random tiny models of every
family and granularity, random τ, `--abs`, ablation, metric, `max_batch`, memory budget and
initial masks, with and without a replayed trace (of a run at another τ, or the first trials of
an interrupted run). The models run in float64, so that two engines' rounding cannot flip a decision
(a near-tie at τ would need |new − cur − τ| below ~1e-12).

The speculative path has two cuts that only some cases reach: the memory budget (a small
`memory_gb` stops the laid-out path early) and the cost model's choice of K (fewer steps than
laid out when later steps would make the batch deeper while their predictions are unsure).
`test_fixed_cases_reach_the_budget_cut_and_a_shorter_k` shows that the cases reach both.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from conftest import FAMILY_CONFIGS, TINY_CONFIGS, random_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_acdc import tiny_task

from subcircuit.graph import GRANULARITIES, build_graph
from subcircuit.methods.acdc import acdc_fast, acdc_reference
from subcircuit.methods.base import make_problem
from subcircuit.tasks.metrics import get_metric

CONFIGS = {**TINY_CONFIGS, **FAMILY_CONFIGS}
ABLATIONS = ("corrupted", "mean", "zero")
TINY_BUDGET = 1e-4  # GiB: room for a few configurations of these models' batches


@dataclass(frozen=True)
class Case:
    name: str
    granularity: str
    ablation: str
    tau: float
    abs_value: bool = False
    max_batch: int = 64
    memory_gb: float = 2.0
    initial: float | None = None  # keep each edge of the initial mask with this probability (None: full)
    metric: str = "kl"
    seed: int = 0
    replay: tuple[str, float] | None = None  # ("other", x): replay the run at τ·x; ("prefix", f): its first trials


def run_both(case: Case):
    cfg = CONFIGS[case.name]
    model = random_model(cfg, seed=case.seed, scale=0.5).to(torch.float64)
    task = tiny_task(model, b=3, p=5, seed=case.seed)
    prob = make_problem(model, build_graph(cfg, case.granularity), task, get_metric(case.metric), case.ablation)
    g = prob.graph
    init = None
    if case.initial is not None:
        gen = torch.Generator().manual_seed(case.seed + 7)
        init = g.exists & (torch.rand(g.shape, generator=gen) < case.initial)
    ref = acdc_reference(prob, case.tau, case.abs_value, initial_mask=init)
    trace = None
    if case.replay is not None and case.replay[0] == "other":  # reuse across thresholds
        trace = acdc_fast(prob, case.tau * case.replay[1], case.abs_value, initial_mask=init).trace
    elif case.replay is not None:  # resume from the first trials of an interrupted run
        trace = ref.trace[: int(case.replay[1] * len(ref.trace))]
    fast = acdc_fast(prob, case.tau, case.abs_value, max_batch=case.max_batch, memory_gb=case.memory_gb,
                     initial_mask=init, trace=trace)
    return prob, init, fast, ref


def assert_same(prob, init, fast, ref) -> None:
    assert [(t.receiver, t.sender, t.removed) for t in fast.trace] == [
        (t.receiver, t.sender, t.removed) for t in ref.trace]
    assert torch.equal(fast.mask.cpu(), ref.mask.cpu())
    assert fast.skipped == ref.skipped
    assert [t.loss for t in fast.trace] == pytest.approx([t.loss for t in ref.trace], rel=1e-9, abs=1e-12)
    torch.testing.assert_close(fast.scores, ref.scores, rtol=1e-5, atol=1e-7)
    assert ref.forward_configs == len(ref.trace)
    if init is not None:  # only the edges of the initial graph are tried; the others stay removed
        assert all(bool(init[t.receiver, t.sender]) for t in ref.trace)
        assert bool(((ref.mask.cpu() != 0) <= init).all())
    tried = {(t.receiver, t.sender) for t in ref.trace}
    assert all(float(ref.scores[r, s]) == 0 for r, s in (prob.graph.exists.nonzero().tolist())
               if (r, s) not in tried)


# One case per family config, every granularity and ablation met, a tiny budget and short paths
# in some: chosen so that the budget cut and the cost model's shorter K both happen.
FIXED = [
    Case("gpt2", "heads-qkv", "corrupted", 0.003, memory_gb=TINY_BUDGET),
    Case("attn-only", "heads", "mean", 0.01, abs_value=True),
    Case("llama-gqa", "heads-qkv", "zero", 0.01, memory_gb=TINY_BUDGET, initial=0.7),
    Case("gpt_neox", "layers", "corrupted", 0.02, max_batch=3),
    Case("gemma2", "heads-qkv", "mean", 0.005, memory_gb=TINY_BUDGET, seed=1),
    Case("gemma3", "heads", "corrupted", 0.01, abs_value=True, initial=0.8),
    Case("qwen3", "heads-qkv", "zero", 0.003, metric="logit-diff", seed=2),
    Case("olmo", "layers", "mean", 0.005, memory_gb=TINY_BUDGET),
    Case("olmo2", "heads-qkv", "corrupted", 0.01, max_batch=5, seed=3, replay=("other", 3.0)),
    Case("gpt2", "layers", "zero", 0.01, initial=0.6, replay=("prefix", 0.4)),
]


def test_fixed_cases_reach_the_budget_cut_and_a_shorter_k():
    cuts = shorter = 0
    for case in FIXED:
        prob, init, fast, ref = run_both(case)
        assert_same(prob, init, fast, ref)
        cuts += fast.n_budget_cuts
        shorter += fast.n_shorter_k
    assert cuts > 0 and shorter > 0, (cuts, shorter)


@st.composite
def cases(draw) -> Case:
    return Case(
        name=draw(st.sampled_from(sorted(CONFIGS))),
        granularity=draw(st.sampled_from(GRANULARITIES)),
        ablation=draw(st.sampled_from(ABLATIONS)),
        tau=10 ** draw(st.floats(-3.5, -1.0)),
        abs_value=draw(st.booleans()),
        max_batch=draw(st.sampled_from([1, 2, 3, 7, 64])),
        memory_gb=draw(st.sampled_from([2.0, TINY_BUDGET, 3 * TINY_BUDGET])),
        initial=draw(st.sampled_from([None, None, 0.5, 0.85])),
        metric=draw(st.sampled_from(["kl", "kl", "logit-diff"])),
        seed=draw(st.integers(0, 10_000)),
        replay=draw(st.sampled_from([None, None, "other", "prefix"]).flatmap(
            lambda kind: st.none() if kind is None else st.tuples(
                st.just(kind), st.floats(-1.0, 1.0).map(lambda x: 10 ** x) if kind == "other" else st.floats(0, 1)))),
    )


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_fast_equals_reference_on_random_cases(case):
    assert_same(*run_both(case))
