"""The prepared GPU benchmark (issue 17): one short script for one H100/H200-class GPU.

    PYTHONPATH=src python benchmarks/gpu.py                 # on the GPU machine (minutes)
    PYTHONPATH=src python benchmarks/gpu.py --smoke         # on CPU, tiny shapes, seconds (CI-sized check)
    PYTHONPATH=src python benchmarks/gpu.py --out results.json --shapes smollm2-135m,llama-3.2-1b

On models of real shapes with random weights (SmolLM2-135M, Llama-3.2-1B, Llama-3.1-8B; no
download), in bf16: the plain forward, the patched forward's overhead (all edges on, one
configuration), EAP-IG (16 prompts × 32 tokens, inputs variant) time and peak memory
(`torch.cuda.max_memory_allocated`; peak RSS on CPU), ACDC configurations per second against K
(each configuration removes one edge from the full graph, the metric positions only), and, with
`--acdc-full`, full exact ACDC on SmolLM2 IOI at `heads-qkv` when the real SmolLM2 is available
there (its GGUF must have been carried: see docs/models.md). Every figure goes to one JSON file
(`--out`), the GPU's name included, and a line per figure to stdout. Nothing runs on import.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak(device) -> int:
    import torch

    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _timed(fn, device, repeats: int = 3) -> float:
    fn()  # warm-up
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def measure_shape(shape: str, device, dtype, n: int, tokens: int, ks: list[int], ig_steps: int) -> dict:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_scale import random_model

    from subcircuit.graph import build_graph
    from subcircuit.methods import Context, make_problem
    from subcircuit.methods.attribution import EAPIGOptions, eap_ig
    from subcircuit.tasks import get_metric
    from subcircuit.tasks.induction import build_induction

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    loaded = random_model(shape, dtype)
    loaded.model.to(device)
    task = build_induction(loaded, n, seed=0, half=tokens // 2)
    graph = build_graph(loaded.cfg, "heads-qkv")
    problem = make_problem(loaded.model, graph, task, get_metric("kl"))
    out: dict = {"shape": shape, "edges": graph.n_edges, "prompts": n, "tokens": int(task.clean.shape[1])}
    clean = problem.task.clean
    with torch.no_grad():
        out["forward_s"] = _timed(lambda: loaded.model(clean), device)
        full = graph.full_mask().to(device)
        out["patched_forward_s"] = _timed(lambda: problem.loss(full[None]), device)
    out["patched_overhead"] = round(out["patched_forward_s"] / out["forward_s"], 2)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    eap_ig(problem, EAPIGOptions(ig_steps=ig_steps), Context())
    _sync(device)
    out["eap_ig_s"], out["eap_ig_steps"] = round(time.perf_counter() - t0, 3), ig_steps
    out["eap_ig_peak_gb"] = round(_peak(device) / 1e9, 3)
    rows, senders = graph.edge_index[:, 0], graph.edge_index[:, 1]
    rates = {}
    for k in ks:
        idx = torch.linspace(0, graph.n_edges - 1, k).long()
        masks = full.expand(k, *full.shape).clone()
        masks[torch.arange(k), rows[idx].to(device), senders[idx].to(device)] = 0
        with torch.no_grad():
            s = _timed(lambda m=masks: problem.loss(m), device, repeats=2)
        rates[k] = round(k / s, 2)
    out["acdc_configs_per_s_by_k"] = rates
    out["peak_gb"] = round(_peak(device) / 1e9, 3)
    return out


def acdc_full(device, dtype) -> dict:
    from subcircuit.models import MODELS
    from subcircuit.runs.discover import discover
    from subcircuit.runs.options import DiscoverOptions

    if not MODELS["smollm2-135m"].available():
        return {"skipped": "smollm2-135m is not available on this machine"}
    opts = DiscoverOptions.build("acdc", n_examples=16, device=str(device), dtype=dtype)
    t0 = time.perf_counter()
    c = discover("smollm2-135m", "ioi", opts, report=False)
    return {"acdc_s": round(time.perf_counter() - t0, 1), "edges": c.results["n_edges_total"],
            "circuit_edges": c.results["n_edges_in_circuit"], "faithfulness": c.results.get("faithfulness")}


def main(argv: list[str] | None = None) -> int:
    import torch

    ap = argparse.ArgumentParser(description="GPU benchmark of issue 17 (see the module docstring)")
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny shapes: check that the script runs")
    ap.add_argument("--shapes", default="smollm2-135m,llama-3.2-1b,llama-3.1-8b")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--ks", default="1,8,32,64")
    ap.add_argument("--ig-steps", type=int, default=5)
    ap.add_argument("--acdc-full", action="store_true", help="also full exact ACDC on SmolLM2 IOI heads-qkv")
    ap.add_argument("--out", default=None, help="JSON file for the figures")
    args = ap.parse_args(argv)
    from subcircuit.models import resolve_dtype

    if args.smoke:
        device, shapes, ks, n, tokens, steps = torch.device("cpu"), ["tiny"], [1, 4], 4, 16, 1
    else:
        if not torch.cuda.is_available():
            print("no CUDA GPU here; use --smoke on CPU", file=sys.stderr)
            return 2
        device, shapes, ks, n, tokens, steps = (torch.device("cuda"), args.shapes.split(","),
                                                [int(k) for k in args.ks.split(",")], 16, 32, args.ig_steps)
    dtype = resolve_dtype(args.dtype)
    result: dict = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
                    "torch": torch.__version__, "dtype": args.dtype, "shapes": []}
    for shape in shapes:
        try:
            r = measure_shape(shape, device, dtype, n, tokens, ks, steps)
        except torch.cuda.OutOfMemoryError as e:  # a figure in itself; the others still run
            r = {"shape": shape, "error": f"out of memory: {str(e).splitlines()[0]}"}
        print(json.dumps(r), flush=True)
        result["shapes"].append(r)
    if args.acdc_full and not args.smoke:
        result["acdc_full_smollm2_ioi_heads_qkv"] = acdc_full(device, args.dtype)
        print(json.dumps(result["acdc_full_smollm2_ioi_heads_qkv"]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
