"""Head roles read the model's own attention: per family, against transformers.

For a tiny random config of every family (built through transformers, converted with `from_hf`;
the builders are those of test_models.py), the attention patterns and residual inputs that the
role measurements use (`evaluation.roles.patterns_and_inputs`, i.e. `Transformer.run`) must equal
transformers' own — eager attention, `output_attentions=True`, `output_hidden_states=True` — at
EVERY layer. Post-norm families (Gemma 2, Gemma 3, OLMo 2) are the ones this guards: a forward
that adds the heads' outputs without the post-attention norm agrees at layer 0 and is wrong from
layer 1 on (the bug this test found in the old hand-written role forward: pattern differences of
0.36-0.94 at layers >= 1, none at layer 0).
"""

from __future__ import annotations

import pytest
import torch
from test_models import FAMILIES, build

from subcircuit.evaluation.roles import _repeated_tokens, head_roles, patterns_and_inputs
from subcircuit.models import LoadedModel, from_hf

TOL = 1e-5  # attention probabilities (fp32, randomized weights)
RESID_TOL = 1e-4  # residual streams (larger values)
POST_NORM = ("gemma2-softcap-window", "gemma3-mixed-layers", "olmo2-post-norms")


def _hf_run(hf: torch.nn.Module, tokens: torch.Tensor):
    with torch.no_grad():
        return hf(input_ids=tokens, output_attentions=True, output_hidden_states=True)


@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_role_patterns_and_inputs_equal_transformers_at_every_layer(kind: str) -> None:
    hf = build(kind)
    ours = from_hf(hf)
    n = ours.cfg.n_layers
    tokens = torch.randint(0, hf.config.vocab_size, (3, 12), generator=torch.Generator().manual_seed(3))  # > windows
    patterns, inputs = patterns_and_inputs(ours, tokens)
    want = _hf_run(hf, tokens)
    assert len(patterns) == len(inputs) == len(want.attentions) == n
    for layer in range(n):
        theirs = want.attentions[layer].transpose(0, 1)  # [b h q k] -> [h b q k]
        assert patterns[layer].shape == theirs.shape
        diff = (patterns[layer] - theirs).abs().max().item()
        assert diff < TOL, f"{kind}: layer {layer} attention differs from transformers by {diff:.3g}"
        # hidden_states[L] is layer L's input (the last entry, after the final norm, is not compared)
        rdiff = (inputs[layer] - want.hidden_states[layer]).abs().max().item()
        assert rdiff < RESID_TOL, f"{kind}: layer {layer} residual input differs by {rdiff:.3g}"


def test_a_shorter_run_gives_the_same_first_layers() -> None:
    """head_roles stops after the last layer it needs (`n_layers`): the same patterns as a full run."""
    ours = from_hf(build("gemma3-mixed-layers"))
    tokens = torch.randint(0, 97, (2, 10), generator=torch.Generator().manual_seed(4))
    full, full_in = patterns_and_inputs(ours, tokens)
    part, part_in = patterns_and_inputs(ours, tokens, n_layers=2)
    assert len(part) == len(part_in) == 2
    for layer in range(2):
        assert torch.equal(part[layer], full[layer]) and torch.equal(part_in[layer], full_in[layer])


@pytest.mark.parametrize("kind", POST_NORM)
def test_attention_role_scores_of_post_norm_models_are_transformers_patterns(kind: str) -> None:
    """The attention-role scores, restated from their definitions (docs/report.md) on
    transformers' own attention weights, at every layer of the post-norm families."""
    hf = build(kind)
    loaded = LoadedModel("tiny", from_hf(hf), meta={"bos_token_id": 0})
    cfg = loaded.cfg
    heads = [f"a{layer}.h{h}" for layer in range(cfg.n_layers) for h in range(cfg.n_heads)]
    roles = head_roles(loaded, heads)
    rep = _repeated_tokens(loaded)
    assert rep is not None
    tokens, half, off = rep
    attn = _hf_run(hf, tokens).attentions
    i = torch.arange(off + 1, tokens.shape[1])
    second = torch.arange(off + half, off + 2 * half - 1)
    for layer in range(cfg.n_layers):
        for h in range(cfg.n_heads):
            a = attn[layer][:, h]  # [b q k]
            want = {
                "previous-token": a[:, i, i - 1].mean(),
                "induction": a[:, second, second - half + 1].mean(),
                "duplicate-token": a[:, second, second - half].mean(),
            }
            got = roles[f"a{layer}.h{h}"].scores
            for role, value in want.items():
                assert got[role] == pytest.approx(float(value), abs=1e-4), (kind, layer, h, role)
