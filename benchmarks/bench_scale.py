"""Scale measurements on CPU (issue 17): EAP-IG on random models of real shapes at a chosen dtype,
peak host memory against the memory model's estimate, and loading at bf16 without a float32 copy.

Each measurement runs in its own process (peak host memory is the process's `ru_maxrss`), so run
one per command:

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/bench_scale.py eap-ig --shape llama-3.2-1b --dtype bfloat16
    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/bench_scale.py eap-ig --shape smollm2-135m --dtype float32
    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/bench_scale.py load --shape llama-3.2-1b --dtype bfloat16

Prints one JSON line. Nothing runs on import.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

SHAPES = {  # the published configurations, with random weights (no download)
    "smollm2-135m": dict(n_layers=30, d_model=576, n_heads=9, n_kv_heads=3, d_head=64, d_mlp=1536,
                         vocab_size=49152),
    "llama-3.2-1b": dict(n_layers=16, d_model=2048, n_heads=32, n_kv_heads=8, d_head=64, d_mlp=8192,
                         vocab_size=128256),
    "llama-3.1-8b": dict(n_layers=32, d_model=4096, n_heads=32, n_kv_heads=8, d_head=128, d_mlp=14336,
                         vocab_size=128256),
    "tiny": dict(n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, d_head=16, d_mlp=128, vocab_size=512),
}


def config(shape: str):
    from subcircuit.models import ModelConfig

    return ModelConfig(family="llama", norm="rmsnorm", positional="rotary", mlp="gated", act="silu",
                       rope_theta=500000.0, **SHAPES[shape])


def rss() -> int:
    """Peak resident set size of this process so far, bytes (Linux: ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def random_model(shape: str, dtype):
    """A Llama-family model of `shape` at `dtype`, random N(0, 0.02) weights written in place (no
    float32 copy), norms at 1."""
    import torch

    from subcircuit.models import LoadedModel, Transformer

    torch.manual_seed(0)
    model = Transformer(config(shape), dtype=dtype)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.split(".")[-1] in ("ln1_w", "ln2_w", "lnf_w"):
                continue
            if p.dim() > 1:
                p.normal_(0, 0.02)
    model.requires_grad_(False).eval()
    return LoadedModel(shape, model, None, "random", {"bos_token_id": 0})


def estimate_for(shape: str, dtype: str, batch: int, seq: int, method: str, options=None) -> int:
    import torch

    from subcircuit.models.placement import meta_model
    from subcircuit.runs.memory import Shape, estimate

    c = config(shape)
    n = sum(p.numel() for p in meta_model(c, torch.float32).parameters())
    s = Shape(c.n_layers, c.d_model, c.n_heads, c.d_mlp, c.vocab_size, n)
    return estimate(s, n * 4, batch, seq, method, "heads-qkv", options, dtype, batched=0).total


def eap_ig(args) -> dict:
    import torch

    from subcircuit.graph import build_graph
    from subcircuit.methods import Context, make_problem
    from subcircuit.methods.attribution import EAPIGOptions
    from subcircuit.methods.attribution import eap_ig as run_eap_ig
    from subcircuit.models import resolve_dtype
    from subcircuit.tasks import get_metric
    from subcircuit.tasks.induction import build_induction

    torch.set_num_threads(1)
    before = rss()
    dt = resolve_dtype(args.dtype)
    loaded = random_model(args.shape, dt)
    task = build_induction(loaded, args.n, seed=0, half=(args.tokens - 1 + 1) // 2)
    graph = build_graph(loaded.cfg, "heads-qkv")
    t0 = time.perf_counter()
    c0 = time.process_time()
    problem = make_problem(loaded.model, graph, task, get_metric("kl"))
    res = run_eap_ig(problem, EAPIGOptions(ig_steps=args.ig_steps), Context())
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = rss()
    est = estimate_for(args.shape, args.dtype, args.n, args.tokens, "eap-ig")
    return {"what": "eap-ig", "shape": args.shape, "dtype": args.dtype, "prompts": args.n,
            "tokens": int(task.clean.shape[1]), "ig_steps": args.ig_steps, "edges": graph.n_edges,
            "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "peak_rss_gb": round(peak / 1e9, 3),
            "rss_before_model_gb": round(before / 1e9, 3), "peak_minus_before_gb": round((peak - before) / 1e9, 3),
            "estimate_gb": round(est / 1e9, 3), "estimate_over_measured": round(est / (peak - before), 3),
            "finite": bool(torch.isfinite(res.scores).all())}


def checkpoint(shape: str, folder: Path) -> Path:
    """A transformers-format checkpoint of `shape` (bf16 safetensors, random weights), written once."""
    import torch
    from safetensors.torch import save_file

    if (folder / "model.safetensors").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    c = SHAPES[shape]
    d, H, K, E, M, V = c["d_model"], c["n_heads"], c["n_kv_heads"], c["d_head"], c["d_mlp"], c["vocab_size"]
    g = torch.Generator().manual_seed(0)

    def w(*s):
        return (torch.randn(*s, generator=g) * 0.02).to(torch.bfloat16)

    sd = {"model.embed_tokens.weight": w(V, d), "model.norm.weight": torch.ones(d, dtype=torch.bfloat16)}
    for i in range(c["n_layers"]):
        h = f"model.layers.{i}."
        sd.update({h + "self_attn.q_proj.weight": w(H * E, d), h + "self_attn.k_proj.weight": w(K * E, d),
                   h + "self_attn.v_proj.weight": w(K * E, d), h + "self_attn.o_proj.weight": w(d, H * E),
                   h + "mlp.gate_proj.weight": w(M, d), h + "mlp.up_proj.weight": w(M, d),
                   h + "mlp.down_proj.weight": w(d, M),
                   h + "input_layernorm.weight": torch.ones(d, dtype=torch.bfloat16),
                   h + "post_attention_layernorm.weight": torch.ones(d, dtype=torch.bfloat16)})
    save_file(sd, folder / "model.safetensors")
    cfg = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": d,
           "intermediate_size": M, "num_attention_heads": H, "num_key_value_heads": K, "head_dim": E,
           "num_hidden_layers": c["n_layers"], "vocab_size": V, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
           "max_position_embeddings": 2048, "tie_word_embeddings": True, "torch_dtype": "bfloat16"}
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def load(args) -> dict:
    from subcircuit.models import resolve_dtype
    from subcircuit.models.loading import load_folder

    folder = Path(args.folder)
    before = rss()
    t0 = time.perf_counter()
    loaded = load_folder(folder, dtype=resolve_dtype(args.dtype))
    wall = time.perf_counter() - t0
    peak = rss()
    size = sum(p.numel() * p.element_size() for p in loaded.model.parameters())
    return {"what": "load", "shape": args.shape, "dtype": args.dtype, "wall_s": round(wall, 1),
            "model_bytes_gb": round(size / 1e9, 3), "rss_before_gb": round(before / 1e9, 3),
            "peak_rss_gb": round(peak / 1e9, 3), "peak_minus_before_gb": round((peak - before) / 1e9, 3),
            "peak_over_model": round((peak - before) / size, 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["eap-ig", "load", "checkpoint"])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="llama-3.2-1b")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--ig-steps", type=int, default=1)
    ap.add_argument("--folder", default="/tmp/subcircuit-bench/llama-3.2-1b-bf16")
    args = ap.parse_args(argv)
    if args.what == "checkpoint":
        print(json.dumps({"folder": str(checkpoint(args.shape, Path(args.folder)))}))
        return 0
    out = eap_ig(args) if args.what == "eap-ig" else load(args)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
