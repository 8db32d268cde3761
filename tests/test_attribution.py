"""EAP and EAP-IG: scores equal finite differences and path integrals of the patched loss."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_CONFIGS, random_model
from test_acdc import tiny_task

from subcircuit.graph import build_graph
from subcircuit.methods import make_problem, run_method
from subcircuit.methods.attribution import eap_ig_scores, input_mask, mask_gradient
from subcircuit.patching import Patcher
from subcircuit.tasks.metrics import get_metric


def problem_for(name="gpt2", metric="logit-diff", ablation="corrupted", seed=1):
    model = random_model(TINY_CONFIGS[name], seed=seed, scale=0.5)
    return make_problem(model, build_graph(model.cfg, "heads-qkv"), tiny_task(model), get_metric(metric), ablation)


def loss_at(prob, mask):
    with torch.no_grad():
        return float(prob.loss(mask)[0])


@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
@pytest.mark.parametrize("ablation", ["corrupted", "mean"])
def test_eap_equals_finite_differences(name, ablation):
    prob = problem_for(name, ablation=ablation)
    g = prob.graph
    scores = run_method("eap", prob).scores
    full = g.full_mask()
    eps = 1e-3
    gen = torch.Generator().manual_seed(0)
    for e in torch.randperm(g.n_edges, generator=gen)[:5].tolist():
        r, s = g.edge(g.edges[e])
        m = full.clone()
        m[r, s] = 1 - eps
        m2 = full.clone()
        m2[r, s] = 1 + eps  # mixing weights extrapolate linearly: central difference of −∂L/∂m
        fd = (loss_at(prob, m) - loss_at(prob, m2)) / (2 * eps)
        assert scores[e] == pytest.approx(fd, abs=2e-3, rel=1e-2)


def test_eap_sign_is_loss_increase_on_removal():
    prob = problem_for("gpt2")
    g = prob.graph
    scores = run_method("eap", prob).scores
    e = int(scores.abs().argmax())
    r, s = g.edge(g.edges[e])
    m = g.full_mask()
    m[r, s] = 0
    exact = loss_at(prob, m) - loss_at(prob, g.full_mask())
    assert exact * float(scores[e]) > 0  # the biggest first-order effect has the right sign


def test_single_edge_path_integral_is_the_patching_effect():
    """Integrating one edge's own mask gradient over m_e ∈ [0, 1] (all else 1) gives exactly its
    patching effect (fundamental theorem of calculus); the midpoint rule converges to it."""
    prob = problem_for("gpt2", metric="kl")
    g = prob.graph
    full = g.full_mask()
    for name in [g.edges[g.n_edges // 2], g.edges[-2]]:
        r, s = g.edge(name)
        steps = 24
        masks = full.repeat(steps, 1, 1)
        masks[:, r, s] = (torch.arange(steps) + 0.5) / steps
        grad = mask_gradient(prob, masks)[:, r, s]
        ig = -float(grad.mean())
        m = full.clone()
        m[r, s] = 0
        exact = loss_at(prob, m) - loss_at(prob, full)
        assert ig == pytest.approx(exact, abs=1e-4, rel=1e-2)


def test_eap_ig_activations_completeness_and_correlation():
    prob = problem_for("gpt2", metric="kl")
    g = prob.graph
    sc = eap_ig_scores(prob, steps=16, ig="activations")  # [receiver sender]
    full = g.full_mask()
    total = loss_at(prob, torch.zeros(g.shape)) - loss_at(prob, full)
    assert float(sc.sum()) == pytest.approx(total, rel=2e-2)  # completeness: Σ scores = L(0) − L(1)
    flat = g.to_flat(sc)
    exact = torch.zeros(g.n_edges)
    masks = full.repeat(g.n_edges, 1, 1)
    rs = [g.edge(n) for n in g.edges]
    for i, (r, s) in enumerate(rs):
        masks[i, r, s] = 0
    with torch.no_grad():
        exact = prob.loss(masks) - loss_at(prob, full)
    corr = torch.corrcoef(torch.stack([flat, exact]))[0, 1]
    assert corr > 0.5  # a random tiny model is far from linear; the multi-edge path is not one edge's


def _anchored(problem, alpha: float, full_deltas):
    """The slow construction of Hanna et al.'s EAP-IG step: the ablation abl'_s = out_s(α) −
    (out_s − abl_s) (abl'_input = abl_input), under which the α-input run's receivers read the α
    run's residual while every delta the masks multiply is the clean run's out_s − abl_s."""
    from subcircuit.patching import ablation_from_outputs

    graph, abl = problem.graph, problem.ablation
    n_s, shape = len(graph.senders), abl.outputs.shape
    with torch.no_grad():
        d_alpha = problem.patcher.prefix(input_mask(problem, alpha), len(graph.stages) - 1).deltas
        outs = abl.outputs.reshape(n_s, -1, shape[-1]) + d_alpha - full_deltas
        outs[0] = abl.outputs.reshape(n_s, -1, shape[-1])[0]
        return ablation_from_outputs(problem.model, graph, outs.reshape(shape), abl.kind)


def test_eap_ig_inputs_reanchored_ablation():
    """Hanna et al.'s EAP-IG score is (out_s − abl_s) · mean_k ∂L/∂x_r(α_k) at interpolated inputs.
    Under the re-anchored ablation (a) the forward pass is exactly the α-input run, so ∂L/∂x_r is
    the same, and (b) every sender delta the masks multiply is the clean run's out_s − abl_s, so
    ∂L/∂m[r,s] = (out_s − abl_s) · ∂L/∂x_r; (c) at α = 1 it is the plain ablation (EAP); (d) the
    fast path (`grad_deltas`, no extra forward) gives the same mask gradient."""
    prob = problem_for("llama-gqa", metric="kl")
    g = prob.graph
    full_deltas = prob.patcher.prefix(g.full_mask(), len(g.stages) - 1).deltas
    p = prob.patcher
    fast = Patcher(p.model, g, p.tokens, p.ablation, p.positions, grad_deltas=full_deltas)
    for alpha in (0.25, 0.7):
        abl = _anchored(prob, alpha, full_deltas)
        anchored = Patcher(p.model, g, p.tokens, abl, p.positions)
        ours = anchored.logits(input_mask(prob, alpha))
        ref = p.logits(input_mask(prob, alpha))
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)  # (a)
        deltas = anchored.prefix(input_mask(prob, alpha), len(g.stages) - 1).deltas
        torch.testing.assert_close(deltas, full_deltas, atol=1e-5, rtol=1e-5)  # (b)
        m = input_mask(prob, alpha)[None]
        torch.testing.assert_close(mask_gradient(prob, m, fast), mask_gradient(prob, m, anchored),
                                   atol=1e-5, rtol=1e-4)  # (d)
    one = _anchored(prob, 1.0, full_deltas)
    torch.testing.assert_close(one.outputs, prob.ablation.outputs, atol=1e-5, rtol=1e-5)  # (c)
    torch.testing.assert_close(one.base, prob.ablation.base, atol=1e-5, rtol=1e-5)


def test_eap_ig_one_step_at_alpha_one_is_eap():
    prob = problem_for("gpt2")
    g = prob.graph
    eap = run_method("eap", prob).scores
    grad = mask_gradient(prob, input_mask(prob, 1.0)[None])[0]
    torch.testing.assert_close(g.to_flat(-grad), eap)
    ig = run_method("eap-ig", prob, ig_steps=1).scores  # α = ½, a different point: finite, same shape
    assert ig.shape == eap.shape and torch.isfinite(ig).all()
