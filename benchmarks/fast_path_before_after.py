"""The fast path of ACDC in two source trees, one after the other on the same core: no slowdown.

    python benchmarks/fast_path_before_after.py OLD_SRC NEW_SRC [--repeats 15]

Each tree runs in its own subprocess (PYTHONPATH=<tree>), times `acdc_fast` on the toy and
tracr models (median of `--repeats`, after one warm-up) and prints one JSON line per case; this
script prints a markdown table with the ratio old / new (> 1: the new tree is faster). The two
trees alternate over `--rounds` subprocess rounds and each side's median over its rounds is kept.
Measure with one thread pinned to an otherwise idle core (`taskset -c 1 env OMP_NUM_THREADS=1`)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CASES = [("toy-induction-2l", "induction", "corrupted"), ("tracr-reverse", "tracr-reverse", "zero"),
         ("tracr-proportion", "tracr-proportion", "zero")]

CHILD = r"""
import json, statistics, sys, time
import torch
from subcircuit.graph import build_graph
from subcircuit.methods.base import make_problem
from subcircuit.models import load
from subcircuit.tasks import get_metric, get_task
try:
    from subcircuit.methods.acdc import acdc_fast
except ImportError:
    raise
model, task, ablation, repeats = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
loaded = load(model)
t = get_task(task, loaded, n=16, seed=0)
prob = make_problem(loaded.model, build_graph(loaded.cfg, "heads-qkv"), t, get_metric(t.metric), ablation)
with torch.no_grad():
    acdc_fast(prob, 0.01)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); st = acdc_fast(prob, 0.01); times.append(time.perf_counter() - t0)
print(json.dumps({"median_s": statistics.median(times), "edges": int(st.mask.sum()),
                  "threads": torch.get_num_threads()}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--rounds", type=int, default=4, help="alternating old/new subprocess rounds")
    args = ap.parse_args()
    print("| model | old fast_s | new fast_s | old / new | circuit edges (old, new) | threads |")
    print("|---|---|---|---|---|---|")
    for model, task, ablation in CASES:
        runs: dict[str, list[dict]] = {args.old: [], args.new: []}
        for r in range(args.rounds):  # old, new, new, old, old, new, ...: drifting load hits both alike
            for src in ((args.old, args.new) if r % 2 == 0 else (args.new, args.old)):
                env = {**os.environ, "PYTHONPATH": src}
                out = subprocess.run([sys.executable, "-c", CHILD, model, task, ablation, str(args.repeats)],
                                     env=env, capture_output=True, text=True, check=True).stdout
                runs[src].append(json.loads(out.strip().splitlines()[-1]))
        old, new = ({**v[0], "median_s": statistics.median(x["median_s"] for x in v)}
                    for v in (runs[args.old], runs[args.new]))
        print(f"| {model} | {old['median_s']:.4g} | {new['median_s']:.4g} | {old['median_s'] / new['median_s']:.3f} "
              f"| {old['edges']}, {new['edges']} | {new['threads']} |")


if __name__ == "__main__":
    main()
