"""CUDA checks, for a machine with a GPU (not part of `make bench`: CI has none).

1. The patched run without autograd equals its autograd reference on the GPU, for every tiny
   model family of the tests and every granularity (ACDC-like batches, with and without a
   prefix and metric positions).
2. ACDC's fast path makes the reference's decisions on the GPU (toy-induction-2l, both tracr
   models) and how much faster it is there (median of 3, same process).
3. `subcircuit discover --device cuda` end to end.

Run from the repository root: `PYTHONPATH=src python benchmarks/cuda_check.py`. Prints one JSON
line per check.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
DEV = os.environ.get("SUBCIRCUIT_CHECK_DEVICE", "cuda")  # "cpu" to try the script without a GPU


def _sync() -> None:
    if DEV == "cuda":
        torch.cuda.synchronize()


def _say(**row) -> None:
    print(json.dumps(row), flush=True)


def check_patching() -> None:
    from conftest import FAMILY_CONFIGS, random_model

    from subcircuit.graph import GRANULARITIES, build_graph
    from subcircuit.patching import Patcher, make_ablation

    worst, n = 0.0, 0
    for cfg in (FAMILY_CONFIGS[k] for k in sorted(FAMILY_CONFIGS)):
        model = random_model(cfg, seed=1).to(DEV)
        g = torch.Generator().manual_seed(0)
        v = cfg.vocab_size
        clean = torch.randint(0, v, (3, 8), generator=g).to(DEV)
        corr = torch.randint(0, v, (3, 8), generator=g).to(DEV)
        for gran in GRANULARITIES:
            graph = build_graph(cfg, gran)
            abl = make_ablation(model, graph, "corrupted", clean, corr)
            for positions in (None, torch.tensor([7, 2, 5], device=DEV)):
                p = Patcher(model, graph, clean, abl, positions)
                for density in (0.1, 0.6, 0.95):
                    base = (torch.rand(graph.shape, generator=g) < density).float()
                    si = int(torch.randint(0, len(graph.stages), (1,), generator=g))
                    rows = graph.stages[si].rows
                    masks = base.repeat(4, 1, 1)
                    for j in range(1, 4):
                        masks[j:, int(torch.randint(rows.start, rows.stop, (1,), generator=g)),
                              int(torch.randint(0, graph.shape[1], (1,), generator=g))] = 0
                    masks = masks.to(DEV)
                    for start in (None, p.prefix(masks[0], si)):
                        fast = p.logits(masks, start=start)  # the engine without autograd
                        ref = p.logits_with_grad(masks, start=start).detach()  # the autograd engine
                        worst = max(worst, float((fast - ref).abs().max()))
                        n += 1
    _say(check="patching_fast == autograd path on cuda", cases=n, max_abs_diff=worst, ok=worst < 1e-4)


def check_acdc() -> None:
    from subcircuit.graph import build_graph
    from subcircuit.methods.acdc import acdc_fast, acdc_reference
    from subcircuit.methods.base import make_problem
    from subcircuit.models import load
    from subcircuit.tasks import get_metric, get_task

    for model, task, ablation in (("toy-induction-2l", "induction", "corrupted"),
                                  ("tracr-reverse", "tracr-reverse", "zero"),
                                  ("tracr-proportion", "tracr-proportion", "zero")):
        loaded = load(model, device=DEV)
        t = get_task(task, loaded, n=16, seed=0)
        prob = make_problem(loaded.model, build_graph(loaded.cfg, "heads-qkv"), t, get_metric(t.metric), ablation)
        times: dict[str, list[float]] = {"fast": [], "reference": []}
        out = {}
        with torch.no_grad():
            for _ in range(4):  # the first round warms up kernels and is dropped
                for name, fn in (("fast", acdc_fast), ("reference", acdc_reference)):
                    _sync()
                    t0 = time.perf_counter()
                    out[name] = fn(prob, 0.01)
                    _sync()
                    times[name].append(time.perf_counter() - t0)
        f, r = out["fast"], out["reference"]
        same = bool(torch.equal(f.mask, r.mask)) and bool(torch.allclose(f.scores, r.scores, atol=1e-5))
        tf, tr = statistics.median(times["fast"][1:]), statistics.median(times["reference"][1:])
        _say(check="acdc fast vs reference on cuda", model=model, trials=len(f.trace), edges=int(f.mask.sum()),
             reference_s=round(tr, 4), fast_s=round(tf, 4), speedup=round(tr / tf, 2), identical=same)


def check_cli() -> None:
    with tempfile.TemporaryDirectory() as d:
        for args in (["-m", "toy-induction-2l", "-t", "induction"],
                     ["-m", "tracr-reverse", "-t", "tracr-reverse", "--ablation", "zero"]):
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "subcircuit", "discover", *args, "--device", DEV,
                                   "--out", f"{d}/{args[1]}"], capture_output=True, text=True)
            res = {}
            if proc.returncode == 0:
                res = json.loads(Path(f"{d}/{args[1]}/circuit.json").read_text())["results"]
            _say(check="discover --device cuda", model=args[1], rc=proc.returncode,
                 wall_s=round(time.perf_counter() - t0, 1), edges=res.get("n_edges_in_circuit"),
                 faithfulness=res.get("faithfulness"), stderr=proc.stderr[-300:] if proc.returncode else "")


if __name__ == "__main__":
    if DEV == "cuda" and not torch.cuda.is_available():
        raise SystemExit("cuda_check: no CUDA GPU here (torch.cuda.is_available() is False); run it on a GPU machine")
    _say(check="device", name=torch.cuda.get_device_name(0) if DEV == "cuda" else DEV, torch=torch.__version__)
    for fn in (check_patching, check_acdc, check_cli):
        try:
            fn()
        except Exception as e:  # report and go on: one failed check should not hide the others
            _say(check=fn.__name__, error=f"{type(e).__name__}: {e}"[-800:])
