"""The memory model's predictions (no GPU): what runs fit on one 80 GB GPU, and the figures issue 17
asks a GPU to measure, predicted. Every number printed here is a PREDICTION of `runs.memory`
(memory) or of ACDC's own cost model (`methods.acdc.fast.CostModel`, time), not a measurement.

    PYTHONPATH=src python benchmarks/predict.py            # markdown tables
    PYTHONPATH=src python benchmarks/predict.py --json     # the same as JSON

Throughput basis (stated, not measured): a batched ACDC call of K configurations costs
`a·depth + b·Σ work` (CostModel, GPU constants: a = 1 ms per stage, b = a configuration's FLOPs at
20 TFLOP/s, i.e. ~2% of an H100's 989 bf16 TFLOP/s dense peak), with depth and work = 1/2 of the
model on average and K = 64; the optimistic column assumes 30% of the bf16 peak instead. Nothing
runs on import.
"""

from __future__ import annotations

import argparse
import json
import sys

GB = 1e9
GPU = 80 * GB  # one 80 GB GPU (H100 80GB); the H200 has 141 GB
H100_BF16 = 989e12

# published shapes (n_layers, d_model, n_heads, n_kv_heads, d_head, d_mlp, vocab, tied embeddings)
SHAPES = {
    "smollm2-135m": (30, 576, 9, 3, 64, 1536, 49152, True),
    "llama-3.2-1b": (16, 2048, 32, 8, 64, 8192, 128256, True),
    "llama-3.2-3b": (28, 3072, 24, 8, 128, 8192, 128256, True),
    "llama-3.1-8b": (32, 4096, 32, 8, 128, 14336, 128256, False),
    "qwen2.5-14b": (48, 5120, 40, 8, 128, 13824, 152064, False),
    "qwen2.5-32b": (64, 5120, 40, 8, 128, 27648, 152064, False),
    "llama-3.1-70b": (80, 8192, 64, 8, 128, 28672, 128256, False),
}
METHODS = ("acdc", "eap", "eap-ig", "edge-pruning")


def shape(name: str):
    from subcircuit.runs.memory import Shape

    L, d, H, K, E, M, V, _ = SHAPES[name]
    body = L * (2 * d * H * E + 2 * d * K * E + 3 * d * M + 2 * d)
    n = body + 2 * V * d  # our layout stores the unembedding separately even when tied
    return Shape(L, d, H, M, V, n), body


def estimate(name: str, method: str, dtype: str = "bfloat16", batch: int = 16, seq: int = 32, k: int = 1):
    """(estimate, bytes of one speculative configuration) at `dtype`; ACDC with k configurations."""
    from subcircuit.runs.memory import DTYPE_BYTES
    from subcircuit.runs.memory import estimate as est

    s, _ = shape(name)
    L, d, H = s.n_layers, s.d_model, s.n_heads
    per_config = (1 + L * (H + 1) + 8) * batch * seq * d * DTYPE_BYTES[dtype]
    e = est(s, s.n_params * 4, batch, seq, method, "heads-qkv", None, dtype, batched=(k * per_config if method == "acdc"
                                                                                        else 0))
    return e, per_config


def n_edges(name: str) -> int:
    from subcircuit.graph import build_graph
    from subcircuit.models import ModelConfig

    L, d, H, K, E, M, V, _ = SHAPES[name]
    cfg = ModelConfig(family="llama", n_layers=L, d_model=d, n_heads=H, n_kv_heads=K, d_head=E, d_mlp=M,
                      vocab_size=V, norm="rmsnorm", positional="rotary", mlp="gated", act="silu")
    return build_graph(cfg, "heads-qkv").n_edges


def acdc_rate(name: str, flops_per_s: float, k: int = 64, batch: int = 16, seq: int = 32) -> float:
    """Predicted exact-ACDC configurations per second (see the module docstring)."""
    s, body = shape(name)
    flops = 2 * batch * seq * body + 2 * batch * s.d_model * s.vocab_size
    a = (2 * s.n_layers + 1) * 1e-3
    b = flops / flops_per_s
    return k / (a * 0.5 + b * k * 0.5)


def predictions() -> dict:
    out: dict = {"fits_80gb": {}, "goals": {}}
    for name in SHAPES:
        row = {}
        for m in METHODS:
            e, per = estimate(name, m, k=1)
            row[m] = {"estimate_gb": round(e.total / GB, 1), "fits": e.total <= GPU}
        out["fits_80gb"][name] = row
    largest = {m: max((n for n in SHAPES if out["fits_80gb"][n][m]["fits"]), key=lambda n: shape(n)[0].n_params,
                      default=None) for m in METHODS}
    out["largest_on_80gb"] = largest
    e, per = estimate("smollm2-135m", "acdc", k=64)
    trials_frac = 25_113 / 70_651  # trials / edges of the measured CPU run (RESULTS.md): the rest are skipped
    cfgs = 25_296
    for basis, rate in (("cost model (20 TFLOP/s)", 20e12), ("30% of H100 bf16 peak", 0.3 * H100_BF16)):
        r = acdc_rate("smollm2-135m", rate)
        out["goals"].setdefault("smollm2 ioi heads-qkv full exact ACDC", {})[basis] = {
            "configs_per_s": round(r, 1), "configs": cfgs, "predicted_s": round(cfgs / r, 1)}
    out["goals"]["smollm2 ioi heads-qkv full exact ACDC"]["memory_gb_bf16_k64"] = round(e.total / GB, 2)
    e8, _ = estimate("llama-3.1-8b", "eap-ig")
    out["goals"]["eap-ig llama-3.1-8b 16x32 bf16"] = {"estimate_gb": round(e8.total / GB, 1),
                                                      "params_gb": round(e8.params / GB, 1),
                                                      "activations_gb": round(e8.activations / GB, 1),
                                                      "under_60gb": e8.total < 60 * GB}
    edges = n_edges("llama-3.2-1b")
    g: dict = {"edges": edges, "configs_assumed": int(edges * trials_frac)}
    for basis, rate in (("cost model (20 TFLOP/s)", 20e12), ("30% of H100 bf16 peak", 0.3 * H100_BF16)):
        r = acdc_rate("llama-3.2-1b", rate)
        g[basis] = {"configs_per_s": round(r, 1), "full_run_s": round(g["configs_assumed"] / r)}
    e1, per1 = estimate("llama-3.2-1b", "acdc", k=64)
    g["memory_gb_bf16_k64"] = round(e1.total / GB, 1)
    out["goals"]["exact acdc llama-3.2-1b heads-qkv"] = g
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="memory-model predictions (no GPU)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    p = predictions()
    if args.json:
        print(json.dumps(p, indent=1))
        return 0
    print("PREDICTIONS of the memory model (bf16, 16 prompts x 32 tokens, heads-qkv), not measurements\n")
    print("| model | " + " | ".join(METHODS) + " |")
    print("|---|" + "---|" * len(METHODS))
    for name, row in p["fits_80gb"].items():
        cells = [f"{row[m]['estimate_gb']} GB {'fits' if row[m]['fits'] else 'no'}" for m in METHODS]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nlargest on one 80 GB GPU:", p["largest_on_80gb"])
    print(json.dumps(p["goals"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
