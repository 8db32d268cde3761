"""The memory estimate made before loading a model: sizes read without loading, free memory,
refusal (the CLI side is in test_reliability.py)."""

from __future__ import annotations

import builtins
import json

import pytest
import torch

from subcircuit.errors import UserError
from subcircuit.models.loading import data_dir
from subcircuit.runs import memory


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_parameter_count_from_a_transformers_config(family):
    import transformers

    if family == "gpt2":
        cfg = transformers.GPT2Config(vocab_size=101, n_positions=32, n_embd=24, n_layer=2, n_head=3)
        model = transformers.GPT2LMHeadModel(cfg)
    else:
        cfg = transformers.LlamaConfig(vocab_size=101, hidden_size=24, intermediate_size=40, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
        model = transformers.LlamaForCausalLM(cfg)
    real = sum(p.numel() for p in model.parameters())
    shape = memory.shape_from_hf_config(json.loads(cfg.to_json_string()))
    assert shape.n_params == pytest.approx(real, rel=0.05)
    assert (shape.n_layers, shape.d_model) == (2, 24)


def test_folder_models_are_sized_from_their_files(tmp_path):
    import transformers

    cfg = transformers.GPT2Config(vocab_size=101, n_positions=32, n_embd=24, n_layer=2, n_head=3)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(tmp_path / "hf")
    shape, param_bytes = memory.model_shape(str(tmp_path / "hf"))
    assert shape.n_layers == 2 and param_bytes == 2 * 4 * shape.n_params  # transformers' copy and ours
    shape, param_bytes = memory.model_shape("toy-induction-2l")
    assert param_bytes == (data_dir() / "models" / "toy-induction-2l" / "model.safetensors").stat().st_size
    assert shape.d_model == 128 and shape.n_heads == 2
    assert memory.model_shape("smollm2-135m")[0].n_params == 134_515_008
    assert memory.model_shape("someone/not-cached-anywhere") is None
    assert memory.model_shape(object()) is None  # an already loaded model


def test_estimate_grows_with_the_batch_and_for_gradient_methods():
    shape = memory.KNOWN_SHAPES["smollm2-135m"]
    small = memory.estimate(shape, 5 * 10**8, 8, 32, "acdc")
    large = memory.estimate(shape, 5 * 10**8, 64, 32, "acdc")
    assert small.total < large.total and small.params == large.params == 5 * 10**8
    assert memory.estimate(shape, 0, 8, 32, "eap").activations > memory.estimate(shape, 0, 8, 32, "random").activations


def test_estimate_follows_the_method_spec_and_options():
    """Gradient methods are those whose spec says `uses_gradients`; batched trials (ACDC's
    speculative batches) are capped by the run's own `--memory-gb` budget and `--max-batch`."""
    from subcircuit.methods import METHODS
    from subcircuit.methods.acdc import ACDCOptions

    shape = memory.KNOWN_SHAPES["smollm2-135m"]
    plain = memory.estimate(shape, 0, 8, 32, "random").activations
    for name, spec in METHODS.items():
        if not hasattr(spec.options(), "memory_gb"):
            assert (memory.estimate(shape, 0, 8, 32, name).activations > plain) == spec.uses_gradients, name
    acdc = memory.estimate(shape, 0, 8, 32, "acdc")
    assert acdc == memory.estimate(shape, 0, 8, 32, "acdc", options=ACDCOptions())
    assert acdc.activations - plain == min(2 * 2**30, 64 * (1 + 30 * 10 + 8) * 8 * 32 * 576 * 4)
    small = memory.estimate(shape, 0, 8, 32, "acdc", options=ACDCOptions(memory_gb=0.01))
    assert small.activations - plain == int(0.01 * 2**30)
    assert memory.estimate(shape, 0, 8, 32, "acdc", options=ACDCOptions(max_batch=2)).activations < acdc.activations


def test_task_sizes_without_a_tokenizer(tmp_path):
    assert memory.task_size("induction", 5) == (5, memory.DEFAULT_SEQ)
    p = tmp_path / "t.jsonl"
    p.write_text(json.dumps({"clean": [1] * 30, "corrupted": [2] * 30, "correct": 1, "wrong": 2}) + "\n")
    assert memory.task_size(str(p), None) == (1, 30)


def test_free_memory_with_and_without_psutil(monkeypatch):
    first = memory.free_bytes("cpu")
    assert first is None or first > 0
    real_import = builtins.__import__

    def no_psutil(name, *a, **kw):
        if name == "psutil":
            raise ImportError(name)
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_psutil)
    second = memory.free_bytes("cpu")  # /proc/meminfo
    assert second is None or second > 0


def test_check_memory_refuses_or_forces(monkeypatch):
    monkeypatch.setattr(memory, "free_bytes", lambda device="cpu": 10**5)
    with pytest.raises(UserError, match=r"needs about .* but only 0.1 MB is free on cpu"):
        memory.check_memory("toy-induction-2l", "induction", 4)
    assert memory.check_memory("toy-induction-2l", "induction", 4, force=True).total > 10**5
    monkeypatch.setattr(memory, "free_bytes", lambda device="cpu": None)  # unknown: no refusal
    assert memory.check_memory("toy-induction-2l", "induction", 4) is not None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_free_gpu_memory():
    assert memory.free_bytes("cuda") > 0


def test_evaluation_batch_comes_from_free_memory(monkeypatch):
    """The evaluation batch (mask configurations per call) is sized by the device's free memory."""
    import importlib

    from subcircuit.evaluation.faithfulness import eval_batch, metric_values
    from subcircuit.graph import build_graph
    from subcircuit.methods import make_problem
    from subcircuit.models import load
    from subcircuit.tasks import get_metric, get_task

    placement = importlib.import_module("subcircuit.models.placement")  # the module, not the function
    loaded = load("toy-induction-2l")
    g = build_graph(loaded.cfg, "heads-qkv")
    task = get_task("induction", loaded, 4, 0)
    problem = make_problem(loaded.model, g, task, get_metric("kl"), "corrupted")
    b, p = task.clean.shape
    per = (len(g.senders) + 8) * b * p * loaded.cfg.d_model * 4
    for free, want in ((None, 8), (0, 1), (2 * per * 5, 5), (10**15, 64)):
        monkeypatch.setattr(placement, "free_bytes", lambda device="cpu", f=free: f)
        assert eval_batch(problem) == want
    masks = torch.stack([g.full_mask(), torch.zeros(g.shape), g.full_mask() * 0.5])
    assert metric_values(problem, masks, 1) == pytest.approx(metric_values(problem, masks), abs=1e-6)
