"""Scale-up (issue 17): bf16/fp16 against fp32, models placed over several devices, loading at a
target dtype, the memory model's batch sizing and refusals. All on CPU.

Tolerances (docs/models.md, "Precision"): on the tiny random models of every family, the
maximum logit difference to float32 is at most TOL[dtype] · (1 + max |logit|); ACDC finds the
same circuit on the toy and tracr models in bfloat16 and float16 as in float32.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import FAMILY_CONFIGS, TINY_CONFIGS, random_model

from subcircuit.errors import UserError
from subcircuit.graph import build_graph
from subcircuit.methods import Context, make_problem
from subcircuit.methods.attribution import EAPIGOptions, eap_ig
from subcircuit.models import ModelConfig, Transformer, load, place, placement, plan, resolve_dtype
from subcircuit.models.block import moved, weights_at
from subcircuit.models.loading import LoadedModel, load_folder, save
from subcircuit.patching import make_ablation, patched_logits
from subcircuit.runs import memory
from subcircuit.runs.options import DiscoverOptions
from subcircuit.tasks import get_metric
from subcircuit.tasks.induction import build_induction

TOL = {torch.bfloat16: 0.05, torch.float16: 0.02}  # max |Δlogit| / (1 + max |logit|), documented
ALL_CONFIGS = {**TINY_CONFIGS, **FAMILY_CONFIGS}


def _tokens(cfg: ModelConfig, b: int = 3, p: int = 12) -> torch.Tensor:
    return torch.randint(0, cfg.vocab_size, (b, p), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", sorted(ALL_CONFIGS))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_low_precision_logits_within_tolerance(name, dtype):
    cfg = ALL_CONFIGS[name]
    m = random_model(cfg, seed=1)
    tok = _tokens(cfg)
    ref = m(tok)
    low = copy.deepcopy(m).to(dtype)
    got = low(tok)
    assert got.dtype == dtype
    assert float((got.float() - ref).abs().max()) <= TOL[dtype] * (1 + float(ref.abs().max()))
    # the patched forward (a random mask, corrupted ablation) keeps the same tolerance
    g = build_graph(cfg, "heads-qkv")
    corrupt = _tokens(cfg).flip(0)
    mask = (torch.rand(g.shape, generator=torch.Generator().manual_seed(2)) > 0.3).float()
    p32 = patched_logits(m, g, tok, make_ablation(m, g, "corrupted", tok, corrupt), mask[None])
    plo = patched_logits(low, g, tok, make_ablation(low, g, "corrupted", tok, corrupt), mask[None])
    assert float((plo.float() - p32).abs().max()) <= TOL[dtype] * (1 + float(p32.abs().max()))


@pytest.mark.slow
@pytest.mark.parametrize("model,task", [("toy-induction-2l", "induction"), ("tracr-reverse", "tracr-reverse"),
                                        ("tracr-proportion", "tracr-proportion")])
def test_acdc_same_circuit_in_bf16_and_fp16(model, task):
    from subcircuit.runs.discover import discover

    circuits = {}
    for dt in ("float32", "bfloat16", "float16"):
        loaded = load(model, dtype=dt)
        opts = DiscoverOptions.build("acdc", n_examples=16, dtype=dt)
        c = discover(loaded, task, opts, report=False)
        assert c.dtype == dt
        circuits[dt] = set(c.in_circuit)
    assert circuits["bfloat16"] == circuits["float32"]
    assert circuits["float16"] == circuits["float32"]


def test_dtype_option_defaults_and_errors():
    assert DiscoverOptions().dtype == "float32"
    assert DiscoverOptions(device="cuda").dtype == "bfloat16"  # resolved without touching a GPU
    assert DiscoverOptions.build("eap", dtype="bf16").dtype == "bfloat16"
    assert DiscoverOptions.build("eap", dtype="bf16").flat()["dtype"] == "bfloat16"
    with pytest.raises(UserError, match="--dtype 'int8' is not supported; valid: float32, bfloat16, float16"):
        DiscoverOptions(dtype="int8")
    with pytest.raises(UserError, match="--offload 'disk'"):
        DiscoverOptions(offload="disk")
    assert resolve_dtype(None, "cpu") is torch.float32


def test_given_model_of_another_dtype_is_refused():
    from subcircuit.runs.discover import discover

    loaded = load("toy-induction-2l")
    with pytest.raises(UserError, match="the model given is float32 but the run asks for --dtype bfloat16"):
        discover(loaded, "induction", DiscoverOptions.build("eap", dtype="bfloat16", n_examples=2), report=False)


def test_cli_dtype_flag(tmp_path, capsys):
    from subcircuit import cli

    rc = cli.run_cli(["discover", "--model", "tracr-proportion", "--task", "tracr-proportion", "--method", "eap",
                      "--edges", "5", "--dtype", "bfloat16", "--out", str(tmp_path / "run")])
    assert rc == 0, capsys.readouterr()
    d = json.loads((tmp_path / "run" / "circuit.json").read_text())
    assert d["dtype"] == "bfloat16" and d["options"]["dtype"] == "bfloat16"
    capsys.readouterr()
    rc = cli.run_cli(["discover", "--model", "tracr-proportion", "--task", "tracr-proportion", "--dtype", "int4",
                      "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert rc == 2 and "int4" in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------ placement


def _problem(m: Transformer):
    loaded = LoadedModel("m", m, None, "", {})
    task = build_induction(loaded, 4, seed=0, half=5)
    g = build_graph(m.cfg, "heads-qkv")
    return make_problem(m, g, task, get_metric("kl"))


def test_plan_splits_whole_layers_over_two_devices_on_meta():
    cfg = ModelConfig(family="llama", n_layers=8, d_model=256, n_heads=4, n_kv_heads=2, d_head=64, d_mlp=512,
                      vocab_size=1000, norm="rmsnorm", positional="rotary", mlp="gated", act="silu")
    per_block = sum(p.numel() for p in Transformer(cfg, dtype=torch.bfloat16, device="meta").blocks[0].parameters()) * 2
    dmap = plan(cfg, {0: 5 * per_block, 1: 5 * per_block, "cpu": 10**9}, torch.bfloat16, balanced=False)
    blocks = {k: v for k, v in dmap.items() if k.startswith("blocks.")}
    assert set(blocks) == {f"blocks.{i}" for i in range(8)}  # whole layers, never a split one
    assert set(blocks.values()) == {0, 1}
    order = [blocks[f"blocks.{i}"] for i in range(8)]
    assert order == sorted(order)  # contiguous: the stream crosses once
    with_cpu = plan(cfg, {0: 3 * per_block, "cpu": 10**9}, torch.bfloat16)
    assert "cpu" in with_cpu.values()  # what does not fit goes to host memory (--offload cpu)


@pytest.mark.parametrize("name", ["llama-gqa", "gpt_neox", "gemma2"])
def test_placed_and_streamed_model_gives_the_same_logits_and_scores(name):
    cfg = ALL_CONFIGS[name]
    ref = random_model(cfg, seed=1)
    placed = copy.deepcopy(ref)
    half = cfg.n_layers // 2
    dmap = {"W_E": "cpu", **{f"blocks.{i}": "cpu" for i in range(cfg.n_layers)}, "lnf_w": "cpu", "W_U": "cpu"}
    place(placed, dmap)
    for b in placed.blocks[half:]:  # the second "device": layers whose weights are streamed in per call
        b.stream_to = torch.device("cpu")
    assert placement(placed)[-1] == "cpu->cpu"
    assert weights_at(placed.blocks[-1]) is not placed.blocks[-1]
    tok = _tokens(cfg)
    assert torch.equal(placed(tok), ref(tok))
    p_ref, p_placed = _problem(ref), _problem(placed)
    s_ref = eap_ig(p_ref, EAPIGOptions(ig_steps=2), Context()).scores
    s_placed = eap_ig(p_placed, EAPIGOptions(ig_steps=2), Context()).scores
    assert torch.equal(s_ref, s_placed)
    mask = p_ref.graph.full_mask()
    mask[:, 1::2] = 0
    assert torch.equal(p_ref.patcher.logits(mask[None]), p_placed.patcher.logits(mask[None]))
    from subcircuit.methods.acdc.fast import acdc_fast  # ACDC's fast path: the same decisions

    a, b = acdc_fast(p_ref, 0.01), acdc_fast(p_placed, 0.01)
    assert torch.equal(a.mask, b.mask)


def test_moved_crosses_devices_and_keeps_structure():
    t = torch.ones(2)
    out = moved(((t, t), {"a": t}, None), torch.device("meta"))
    assert out[0][0].device.type == "meta" and out[1]["a"].device.type == "meta" and out[2] is None
    assert moved(t, torch.device("cpu")) is t  # no copy on the same device


# ------------------------------------------------------------------------------ loading at dtype


def test_load_ours_at_bf16_without_a_float32_copy(tmp_path):
    m = random_model(TINY_CONFIGS["llama-gqa"], seed=3)
    save(m, tmp_path / "m")
    got = load_folder(tmp_path / "m", dtype=torch.bfloat16).model
    assert all(p.dtype == torch.bfloat16 for p in got.parameters())
    for (k, a), (_, b) in zip(m.state_dict().items(), got.state_dict().items(), strict=True):
        assert torch.equal(a.to(torch.bfloat16), b), k


@pytest.mark.slow
def test_transformers_folder_streams_safetensors_at_dtype(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from subcircuit.models import from_hf

    torch.manual_seed(0)
    hf = LlamaForCausalLM(LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32))
    hf.save_pretrained(tmp_path / "hf", safe_serialization=True)
    got = load_folder(tmp_path / "hf", dtype=torch.bfloat16).model
    want = from_hf(hf, torch.bfloat16)
    assert got.dtype == torch.bfloat16
    for (k, a), (_, b) in zip(want.state_dict().items(), got.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


# ------------------------------------------------------------------------------ memory model


def test_memory_estimate_scales_with_dtype_and_budget_sizes_batches():
    shape = memory.Shape(16, 2048, 32, 8192, 128256, 1_500_000_000)
    f32 = memory.estimate(shape, shape.n_params * 4, 16, 32, "eap-ig", dtype="float32", batched=0)
    b16 = memory.estimate(shape, shape.n_params * 4, 16, 32, "eap-ig", dtype="bfloat16", batched=0)
    assert b16.params == f32.params // 2 and b16.activations < f32.activations
    assert memory.batch_budget(None, f32) is None
    left = int(0.9 * 10**12) - f32.total
    assert left / 2 < memory.batch_budget(10**12, f32) <= left  # a power of two: stable batches
    assert memory.batch_budget(10**12, f32) == memory.batch_budget(10**12 + 10**9, f32)
    assert memory.batch_budget(10, f32) == 0


def test_run_budget_feeds_acdc_and_eap_ig(monkeypatch):
    from subcircuit.methods.acdc import batch_gb

    m = random_model(TINY_CONFIGS["gpt2"])
    monkeypatch.setattr(memory, "free_bytes", lambda device="cpu": 3 * 2**30)
    budget, eval_batch = memory.run_budget(m, 4, 10, "acdc", "heads-qkv", None, "cpu")
    assert budget == 2 * 2**30 and eval_batch == 64  # 0.9 · 3 GiB less the run, rounded down to a power of two
    assert batch_gb(None, budget) == budget / 2**30  # the memory model's, not the fixed 2 GiB
    assert batch_gb(0.5, budget) == 0.5  # an explicit --memory-gb wins
    assert batch_gb(None, None) == 2.0


def test_refusal_names_the_estimate_and_what_would_fit(monkeypatch, tmp_path):
    m = random_model(TINY_CONFIGS["gpt2"])
    save(m, tmp_path / "m")
    monkeypatch.setattr(memory, "free_bytes", lambda device="cpu": 10_000)
    with pytest.raises(UserError) as e:
        memory.check_memory(str(tmp_path / "m"), "induction", 4, "eap-ig")
    msg = str(e.value)
    assert "\n" not in msg and "needs about" in msg and "--dtype bfloat16" in msg and "--force" in msg


def test_gpu_benchmark_imports_without_running_and_smokes_on_cpu(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu.py"
    spec = importlib.util.spec_from_file_location("gpu_bench", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # nothing runs on import
    assert capsys.readouterr().out == ""
    assert mod.main(["--smoke", "--out", str(tmp_path / "r.json")]) == 0
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["device"] == "cpu" and r["shapes"][0]["edges"] > 0 and r["shapes"][0]["acdc_configs_per_s_by_k"]
