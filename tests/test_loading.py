"""Loading: our own format, local transformers folders, Hub ids offline, bad specs."""

from __future__ import annotations

import socket

import pytest
import torch
from conftest import FAMILY_CONFIGS, TINY_CONFIGS, random_model

from subcircuit.errors import UserError
from subcircuit.models import load, save
from subcircuit.models.loading import load_ours


def _tokens(vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (2, 9), generator=torch.Generator().manual_seed(0))


ALL_CONFIGS = {**TINY_CONFIGS, **FAMILY_CONFIGS}


@pytest.mark.parametrize("kind", sorted(ALL_CONFIGS))
def test_save_load_ours_round_trip(tmp_path, kind: str) -> None:
    model = random_model(ALL_CONFIGS[kind], seed=3)
    save(model, tmp_path / "m", meta={"note": kind})
    assert not list((tmp_path / "m").glob("*.pt")) and not list((tmp_path / "m").glob("*.bin"))  # no pickles
    loaded = load_ours(tmp_path / "m")
    assert loaded.cfg == model.cfg
    assert loaded.meta == {"note": kind}
    tokens = _tokens(model.cfg.vocab_size)
    assert torch.equal(loaded.model(tokens), model(tokens))
    via_load = load(str(tmp_path / "m"))  # `load` recognizes our format in a folder too
    assert torch.equal(via_load.model(tokens), model(tokens))


def test_load_local_transformers_folder(tmp_path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    hf = LlamaForCausalLM(
        LlamaConfig(
            num_hidden_layers=2, hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=48, vocab_size=97, max_position_embeddings=64, tie_word_embeddings=True,
            bos_token_id=0, eos_token_id=0, pad_token_id=None,
        )
    ).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(0.05 * torch.randn_like(p))
    hf.save_pretrained(tmp_path)
    loaded = load(str(tmp_path))
    assert loaded.name == tmp_path.name
    assert loaded.source == str(tmp_path)
    assert loaded.cfg.family == "llama" and loaded.cfg.n_kv_heads == 2
    tokens = _tokens(97)
    with torch.no_grad():
        assert (loaded.model(tokens) - hf(input_ids=tokens).logits).abs().max() < 1e-4


def test_offline_hub_id_is_one_line_user_error(monkeypatch, tmp_path) -> None:
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)  # read at import time, so patch it too
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))

    def no_network(*args, **kwargs):  # offline means no connection attempt (not "fast enough")
        raise AssertionError("the offline Hub path tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    with pytest.raises(UserError) as e:
        load("someone/nonexistent-model")
    msg = str(e.value)
    assert "\n" not in msg
    assert "someone/nonexistent-model" in msg


@pytest.mark.parametrize(
    ("spec", "needle"),
    [("smollm3-135m", "smollm2-135m"), ("./no/such/folder", "no/such/folder")],
)
def test_unknown_model_names_the_value_and_the_valid_ones(spec: str, needle: str) -> None:
    with pytest.raises(UserError) as e:
        load(spec)
    assert "\n" not in str(e.value)
    assert needle in str(e.value)


def test_folder_without_config_and_file_paths_are_user_errors(tmp_path) -> None:
    with pytest.raises(UserError, match="neither config.json"):
        load(str(tmp_path))
    f = tmp_path / "weights.bin"
    f.write_bytes(b"")
    with pytest.raises(UserError, match="is a file"):
        load(str(f))


def test_bad_device_is_user_error() -> None:
    with pytest.raises(UserError, match="nonsense"):
        load("smollm2-135m", device="nonsense")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            load("smollm2-135m", device="cuda")


def test_folder_of_an_unsupported_family_names_it_and_the_supported_ones(tmp_path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "opt", "hidden_size": 16}')
    with pytest.raises(UserError) as e:
        load(str(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg and "'opt'" in msg
    for supported in ("gpt2", "gpt_neox", "llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text", "olmo2"):
        assert supported in msg
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="model_type"):
        load(str(tmp_path))
