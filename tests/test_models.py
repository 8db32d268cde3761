"""Our forward pass against transformers' own models.

Fast tier: tiny random configs built locally (no network) for every family, with biases and norm
weights randomized so that a dropped or misplaced one shows up. Slow tier: the bundled
SmolLM2-135M against transformers, and Indirect Object Identification on it.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from subcircuit.errors import UserError
from subcircuit.models import from_hf

TOL = 1e-4


def randomize(hf_model: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """Randomize every parameter of a transformers model: norm weights around 1, all else
    (including biases, which transformers initializes to 0) small Gaussian."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in hf_model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "norm" in name or "ln_" in name:
                p.copy_((1 + 0.2 * noise) if name.endswith("weight") else 0.2 * noise)
            else:
                p.copy_(scale * noise)
    return hf_model.eval()


def _gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(
        n_layer=2, n_embd=32, n_head=4, n_positions=64, vocab_size=97, activation_function="gelu_new",
        bos_token_id=0, eos_token_id=0,
    )
    return GPT2LMHeadModel(cfg)


def _llama_gqa_tied():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        num_hidden_layers=2, hidden_size=32, num_attention_heads=4, num_key_value_heads=2, intermediate_size=48,
        vocab_size=97, max_position_embeddings=64, tie_word_embeddings=True, rms_norm_eps=1e-5,
    )
    return LlamaForCausalLM(cfg)


def _qwen2_bias_1kv():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(
        num_hidden_layers=2, hidden_size=32, num_attention_heads=4, num_key_value_heads=1, intermediate_size=48,
        vocab_size=97, max_position_embeddings=64, tie_word_embeddings=False,
    )
    return Qwen2ForCausalLM(cfg)


def _mistral_window():
    from transformers import MistralConfig, MistralForCausalLM

    cfg = MistralConfig(
        num_hidden_layers=2, hidden_size=32, num_attention_heads=4, num_key_value_heads=2, intermediate_size=48,
        vocab_size=97, max_position_embeddings=64, sliding_window=5,
    )
    return MistralForCausalLM(cfg)


def _neox_parallel_partial_rotary():
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    cfg = GPTNeoXConfig(
        num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=48, vocab_size=97,
        max_position_embeddings=64, use_parallel_residual=True, rotary_pct=0.5, rotary_emb_base=100,
    )
    return GPTNeoXForCausalLM(cfg)


def _neox_sequential():
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    cfg = GPTNeoXConfig(
        num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=48, vocab_size=97,
        max_position_embeddings=64, use_parallel_residual=False, rotary_pct=0.25, hidden_act="gelu_new",
    )
    return GPTNeoXForCausalLM(cfg)


def _gemma():
    from transformers import GemmaConfig, GemmaForCausalLM

    cfg = GemmaConfig(
        num_hidden_layers=2, hidden_size=32, num_attention_heads=4, num_key_value_heads=1, head_dim=8,
        intermediate_size=48, vocab_size=97, max_position_embeddings=64,
    )
    return GemmaForCausalLM(cfg)


def _gemma2_softcap_window():
    from transformers import Gemma2Config, Gemma2ForCausalLM

    cfg = Gemma2Config(
        num_hidden_layers=3, hidden_size=32, num_attention_heads=4, num_key_value_heads=1, head_dim=8,
        intermediate_size=48, vocab_size=97, max_position_embeddings=64, sliding_window=4,
        attn_logit_softcapping=2.0, final_logit_softcapping=3.0, query_pre_attn_scalar=12,
    )
    return Gemma2ForCausalLM(cfg)


def _gemma3_mixed_layers():
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    cfg = Gemma3TextConfig(
        num_hidden_layers=4, hidden_size=32, num_attention_heads=4, num_key_value_heads=1, head_dim=8,
        intermediate_size=48, vocab_size=97, max_position_embeddings=64, sliding_window=4,
        layer_types=["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
        rope_parameters={
            "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10.0},
        },
        final_logit_softcapping=3.0, query_pre_attn_scalar=12,
    )
    return Gemma3ForCausalLM(cfg)


def _qwen3_qk_norm_window():
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = Qwen3Config(
        num_hidden_layers=3, hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
        intermediate_size=48, vocab_size=97, max_position_embeddings=64, tie_word_embeddings=False,
        use_sliding_window=True, sliding_window=4, max_window_layers=1,
    )
    return Qwen3ForCausalLM(cfg)


def _olmo_clip():
    from transformers import OlmoConfig, OlmoForCausalLM

    cfg = OlmoConfig(
        num_hidden_layers=2, hidden_size=32, num_attention_heads=4, num_key_value_heads=2, intermediate_size=48,
        vocab_size=97, max_position_embeddings=64, clip_qkv=0.5, pad_token_id=0, eos_token_id=0, bos_token_id=0,
    )
    return OlmoForCausalLM(cfg)


def _olmo2_post_norms():
    from transformers import Olmo2Config, Olmo2ForCausalLM

    cfg = Olmo2Config(
        num_hidden_layers=2, hidden_size=32, num_attention_heads=4, num_key_value_heads=2, intermediate_size=48,
        vocab_size=97, max_position_embeddings=64, pad_token_id=0, eos_token_id=0, bos_token_id=0,
    )
    return Olmo2ForCausalLM(cfg)


FAMILIES = {
    "gpt2": _gpt2,
    "llama-gqa-tied": _llama_gqa_tied,
    "qwen2-qkv-bias-1kv": _qwen2_bias_1kv,
    "mistral-sliding-window": _mistral_window,
    "gpt_neox-parallel-partial-rotary": _neox_parallel_partial_rotary,
    "gpt_neox-sequential": _neox_sequential,
    "gemma": _gemma,
    "gemma2-softcap-window": _gemma2_softcap_window,
    "gemma3-mixed-layers": _gemma3_mixed_layers,
    "qwen3-qk-norm-window": _qwen3_qk_norm_window,
    "olmo-clip": _olmo_clip,
    "olmo2-post-norms": _olmo2_post_norms,
}


def build(kind: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    hf = FAMILIES[kind]()
    hf.config._attn_implementation = "eager"
    return randomize(hf, seed)


def hf_logits(hf: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return hf(input_ids=tokens).logits


@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_logits_match_transformers(kind: str) -> None:
    hf = build(kind)
    ours = from_hf(hf)
    tokens = torch.randint(0, hf.config.vocab_size, (3, 12), generator=torch.Generator().manual_seed(1))  # > windows
    with torch.no_grad():
        got = ours(tokens)
    want = hf_logits(hf, tokens)
    assert got.shape == want.shape
    diff = (got - want).abs().max().item()
    print(f"{kind}: max |Δlogit| {diff:.2e}")  # `pytest -s` shows them
    assert diff < TOL


# What each family's converter must produce, and for each feature a config change that switches it
# off: the logits must then move (so the match above is not vacuous for that feature).
FEATURES = {
    "gpt_neox-parallel-partial-rotary": (
        {"family": "gpt_neox", "parallel_attn_mlp": True, "rotary_dim": 4, "rope_theta": 100.0},
        [{"parallel_attn_mlp": False}, {"rotary_dim": None}],
    ),
    "gpt_neox-sequential": ({"parallel_attn_mlp": False, "rotary_dim": 2, "act": "gelu_new"}, [{"rotary_dim": None}]),
    "gemma": ({"family": "gemma", "embed_scale": 32**0.5, "act": "gelu_tanh", "n_kv_heads": 1}, [{"embed_scale": 1.0}]),
    "gemma2-softcap-window": (
        {"post_norms": True, "attn_softcap": 2.0, "final_softcap": 3.0, "sliding_window": 4, "window_layers": (0, 2),
         "attn_scale": 12**-0.5},
        [{"attn_softcap": None}, {"final_softcap": None}, {"sliding_window": None}, {"window_layers": None},
         {"post_norms": False}],
    ),
    "gemma3-mixed-layers": (
        {"qk_norm": "head", "window_layers": (0, 2), "local_rope_theta": 10.0, "rope_theta": 1000.0, "rope_factor": 2.0,
         "attn_softcap": None, "final_softcap": 3.0},
        [{"qk_norm": "none"}, {"local_rope_theta": None}, {"rope_factor": 1.0}, {"window_layers": None}],
    ),
    "qwen3-qk-norm-window": (
        {"qk_norm": "head", "sliding_window": 4, "window_layers": (1, 2)},
        [{"qk_norm": "none"}, {"sliding_window": None}],
    ),
    "olmo-clip": ({"family": "olmo", "norm": "layernorm", "qkv_clip": 0.5}, [{"qkv_clip": None}]),
    "olmo2-post-norms": (
        {"pre_norms": False, "post_norms": True, "qk_norm": "all"},
        [{"qk_norm": "none"}, {"post_norms": False}],
    ),
}


@pytest.mark.parametrize("kind", sorted(FEATURES))
def test_family_features_are_converted_and_matter(kind: str) -> None:
    expected, switches = FEATURES[kind]
    ours = from_hf(build(kind))
    got = {k: getattr(ours.cfg, k) for k in expected}
    assert got == expected
    tokens = torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        base = ours(tokens)
        cfg = ours.cfg
        for change in switches:
            ours.cfg = dataclasses.replace(cfg, **change)  # the weights do not depend on these fields
            assert (ours(tokens) - base).abs().max() > 1e-2, f"{kind}: {change} does not change the logits"


def test_random_weights_make_the_features_matter() -> None:
    """Guard against a vacuous test: the randomized biases, the tie and the window change logits."""
    hf = build("qwen2-qkv-bias-1kv")
    tokens = torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(2))
    before = hf_logits(hf, tokens)
    with torch.no_grad():
        hf.model.layers[0].self_attn.q_proj.bias.zero_()
    assert (hf_logits(hf, tokens) - before).abs().max() > 1e-3

    mistral = build("mistral-sliding-window")
    assert mistral.config.sliding_window < tokens.shape[1]
    ours = from_hf(mistral)
    assert ours.cfg.sliding_window == 5
    unwindowed = from_hf(mistral)
    unwindowed.cfg = dataclasses.replace(unwindowed.cfg, sliding_window=None)
    with torch.no_grad():
        assert (unwindowed(tokens) - ours(tokens)).abs().max() > 1e-2
    llama = build("llama-gqa-tied")
    assert llama.lm_head.weight.data_ptr() == llama.model.embed_tokens.weight.data_ptr()
    assert from_hf(llama).cfg.n_kv_heads == 2


def test_gpt2_biases_are_nonzero() -> None:
    hf = build("gpt2")
    assert hf.transformer.h[0].attn.c_attn.bias.abs().sum() > 0
    assert hf.transformer.h[0].mlp.c_fc.bias.abs().sum() > 0


def test_from_hf_unsupported_model_type_is_one_line_user_error() -> None:
    from transformers import OPTConfig, OPTForCausalLM

    hf = OPTForCausalLM(
        OPTConfig(num_hidden_layers=1, hidden_size=16, num_attention_heads=2, ffn_dim=32, vocab_size=50,
                  word_embed_proj_dim=16)
    )
    with pytest.raises(UserError) as e:
        from_hf(hf)
    msg = str(e.value)
    assert "\n" not in msg
    assert "'opt'" in msg
    for supported in ("gpt2", "gpt_neox", "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text",
                      "olmo", "olmo2"):
        assert supported in msg


@pytest.mark.parametrize(
    ("kind", "change", "needle"),
    [
        ("gemma2-softcap-window", {"attention_bias": True}, "attention_bias"),
        ("olmo2-post-norms", {"attention_bias": True}, "attention_bias"),
        ("gemma3-mixed-layers", {"use_bidirectional_attention": True}, "use_bidirectional_attention"),
        ("qwen3-qk-norm-window", {"layer_types": ["chunked_attention"] * 3}, "chunked_attention"),
        ("llama-gqa-tied", {"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4, "factor": 2.0}}, "yarn"),
    ],
)
def test_unsupported_family_features_are_one_line_user_errors(kind: str, change: dict, needle: str) -> None:
    from subcircuit.models.families import family_for

    cfg = FAMILIES[kind]().config
    for k, v in change.items():
        setattr(cfg, k, v)
    with pytest.raises(UserError) as e:
        family_for(cfg.model_type).config(cfg)
    assert "\n" not in str(e.value) and needle in str(e.value)


# ------------------------------------------------------------------------------ listed parameter counts

SHIPPED = ("toy-induction-2l", "tracr-reverse", "tracr-proportion")


@pytest.mark.parametrize("name", SHIPPED)
def test_listed_parameter_count_is_the_shipped_models_own(name: str) -> None:
    from subcircuit.models import MODELS, load

    assert MODELS[name].n_params == load(name).model.n_params() > 0


def test_models_table_shows_a_count_for_every_model(capsys) -> None:
    """`subcircuit models` used to show "?" for toy-induction-2l (a count of 0)."""
    from subcircuit.cli import fmt_params, run_cli
    from subcircuit.models import MODELS

    assert all(entry.n_params > 0 for entry in MODELS.values())
    assert run_cli(["models"]) == 0
    out = capsys.readouterr().out
    assert fmt_params(MODELS["toy-induction-2l"].n_params) == "206.8k" and "206.8k" in out


# ------------------------------------------------------------------------------ slow: SmolLM2


@pytest.fixture(scope="module")
def smollm2():
    from subcircuit.models import load

    return load("smollm2-135m")


@pytest.fixture(scope="module")
def smollm2_hf():
    from subcircuit.models.gguf import load_smollm2_transformers

    hf, tok = load_smollm2_transformers()
    hf.config._attn_implementation = "eager"
    return hf.eval(), tok


@pytest.mark.slow
def test_smollm2_listed_parameter_count(smollm2, smollm2_hf) -> None:
    """The listed count is the published one (transformers' count: tied embeddings once). Ours
    is larger by exactly the separate unembedding copy and the biases Llama does not have
    (stored as zeros so the code has one shape)."""
    from subcircuit.models import MODELS

    hf, _ = smollm2_hf
    listed = MODELS["smollm2-135m"].n_params
    assert listed == hf.num_parameters()
    m = smollm2.model
    biases = [p for n, p in m.named_parameters() if n.split(".")[-1].startswith(("b_", "ln1_b", "ln2_b", "lnf_b"))]
    assert not any(p.any() for p in biases)  # Llama has no biases: ours are stored zeros
    assert m.n_params() == listed + m.W_U.numel() + sum(p.numel() for p in biases)


SMOL_PROMPTS = [
    "The capital of France is",
    "When Mary and John went to the store, John gave a drink to",
    "def fibonacci(n):\n    return",
    "1, 2, 3, 4, 5,",
]


@pytest.mark.slow
def test_smollm2_matches_transformers(smollm2, smollm2_hf) -> None:
    hf, tok = smollm2_hf
    for prompt in SMOL_PROMPTS:
        tokens = torch.tensor([tok.encode(prompt)])
        with torch.no_grad():
            got = smollm2.model(tokens)
        want = hf_logits(hf, tokens)
        diff = (got - want).abs().max().item()
        print(f"max |Δlogit| {diff:.2e}  {prompt!r}")
        assert diff < TOL, f"{prompt!r}: max |Δlogit| = {diff:.2e}"


@pytest.mark.slow
def test_smollm2_does_ioi(smollm2) -> None:
    """IOI on the 10 hand-written prompts of `subcircuit.runs.demo.IOI_PROMPTS`: the logit difference
    IO − S at the last position must exceed 2 on EVERY prompt (and so also on average). Each
    prompt's value is printed (`pytest -s` shows them)."""
    from subcircuit.runs.demo import IOI_PROMPTS, predict

    assert len(IOI_PROMPTS) == 10
    diffs = {p.text: predict(smollm2, p).logit_diff for p in IOI_PROMPTS}
    for text, d in diffs.items():
        print(f"IO−S {d:+6.2f}  {text}")
    mean = sum(diffs.values()) / len(diffs)
    print(f"mean IO−S {mean:+.2f}")
    failing = {t: round(d, 2) for t, d in diffs.items() if d <= 2}
    assert not failing, f"logit diff <= 2 on {failing}"
    assert mean > 2
