"""Ray (issue 18): a 6-run plan, local serial against Ray with 2 workers; data-parallel EAP-IG on SmolLM2.

`sweep`: the plan of tests/test_ray_sweep.py (toy-induction-2l and tracr-reverse, ACDC and EAP-IG,
6 runs) made three times side by side in one process, each into a fresh folder: `local` (one
process, serial), `ray` (a local Ray instance with num_cpus=2: two workers; its start,
`ray.init`, timed apart). Overhead of Ray per run = (2 × Ray wall − local wall) / runs: the
worker-seconds a run costs on Ray beyond its own work (scheduling, task transfer, a worker
process importing torch and subcircuit the first time, reloading the model per run).

`parallel_smollm2`: EAP-IG (2 steps, inputs) on SmolLM2-135M IOI, 64 prompts, layer graph (heads-qkv
with 64 prompts in one process needs > 6 GB and was OOM-killed on the shared machine;
BENCH_GRANULARITY=heads-qkv runs it where memory allows), in one process and
in 4 shards on 2 Ray actors (`runs.parallel.ShardPool`; 2 actors, not 4, to fit the memory of the
shared 2-core machine: each actor holds the model and scores two shards in turn); the largest absolute score difference
(the check: within 1e-5) and both wall times. On 2 shared cores this is a
check of the sums, not a speed-up.

    python benchmarks/run.py --only bench_ray          # both, into RESULTS.md
    python benchmarks/bench_ray.py sweep | parallel_smollm2   # one, printed
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLAN = {
    "n_examples": 8,
    "grid": [
        {"models": "toy-induction-2l", "tasks": "induction", "methods": ["acdc", "eap-ig"],
         "thresholds": [0.05, 0.2], "sizes": [10], "options": {"eap-ig": {"ig_steps": 2}}},
        {"models": "tracr-reverse", "tasks": "tracr-reverse", "methods": ["acdc", "eap-ig"],
         "thresholds": [0.01], "sizes": [5, 10], "options": {"eap-ig": {"ig_steps": 2}}},
    ],
}


def sweep() -> list[dict]:
    import ray

    from subcircuit.runs.backends import run_plan
    from subcircuit.runs.plan import plan_from_dict

    runs = plan_from_dict(PLAN)
    n = len(runs)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        local = run_plan(runs, Path(tmp) / "local", backend="local")
        t_local = time.perf_counter() - t0
        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        t_init = time.perf_counter() - t0
        t0 = time.perf_counter()
        remote = run_plan(runs, Path(tmp) / "ray", backend="ray")
        t_ray = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = run_plan(runs, Path(tmp) / "ray2", backend="ray")  # warm workers
        t_ray2 = time.perf_counter() - t0
        ray.shutdown()
        same = _same(Path(tmp) / "local", Path(tmp) / "ray") and _same(Path(tmp) / "local", Path(tmp) / "ray2")
    assert all(o.status == "done" for r in (local, remote, again) for o in r.outcomes.values())
    work = sum(o.seconds for o in local.outcomes.values())
    load = f"{os.getloadavg()[0]:.1f}"
    rows.append({"name": "local serial", "runs": n, "median_s": round(t_local, 3), "per_run_s": round(t_local / n, 3),
                 "ratio_vs_local": 1.0, "notes": f"runs' own seconds {work:.2f}; load {load}"})
    for name, t in (("ray, 2 workers (cold workers)", t_ray), ("ray, 2 workers (warm workers)", t_ray2)):
        rows.append({"name": name, "runs": n, "median_s": round(t, 3), "per_run_s": round(t / n, 3),
                     "ratio_vs_local": round(t / t_local, 2),
                     "ray_overhead_per_run_s": round((2 * t - t_local) / n, 3),
                     "notes": f"identical circuits: {same}; ray.init {t_init:.1f} s not included"})
    return rows


def _same(a: Path, b: Path) -> bool:
    def read(p: Path) -> dict:
        d = json.loads(p.read_text())
        d.pop("timings_s")
        return d

    names = sorted(p.parent.name for p in a.glob("*/circuit.json"))
    return names == sorted(p.parent.name for p in b.glob("*/circuit.json")) and all(
        read(a / n / "circuit.json") == read(b / n / "circuit.json") for n in names)


def _options():
    from subcircuit.runs.options import DiscoverOptions

    steps = int(os.environ.get("BENCH_IG_STEPS", "2"))
    gran = os.environ.get("BENCH_GRANULARITY", "layers")
    return DiscoverOptions.build("eap-ig", n_examples=64, ig_steps=steps, granularity=gran)


def _one_process(path: str) -> None:
    """In a subprocess (its memory is returned before the actors start): one-process EAP-IG scores
    -> `path` (safetensors) with the timings."""
    from safetensors.torch import save_file

    from subcircuit.methods import Context
    from subcircuit.runs.pipeline import open_session

    opts = _options()
    t0 = time.perf_counter()
    session = open_session("smollm2-135m", "ioi", replace(opts, force=True))  # the estimate is an upper bound
    t_open = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = opts.spec.fn(session.problem, opts.method_options, Context()).scores.float().contiguous()
    t_one = time.perf_counter() - t0
    save_file({"scores": scores}, path, metadata={"open_s": str(t_open), "method_s": str(t_one),
                                                  "n": str(session.task.n), "n_edges": str(session.graph.n_edges)})


def parallel_smollm2() -> list[dict]:
    import subprocess

    from safetensors import safe_open

    from subcircuit.runs.parallel import ShardPool

    opts = _options()
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "one.safetensors")
        subprocess.run([sys.executable, __file__, "_one_process", path], check=True)
        with safe_open(path, "pt") as f:
            want, meta = f.get_tensor("scores"), f.metadata()
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    t0 = time.perf_counter()
    with ShardPool("smollm2-135m", "ioi", opts, shards=4, actors=2, cpus=1) as pool:
        t_pool = time.perf_counter() - t0
        t0 = time.perf_counter()
        got = pool.scores()
        t_par = time.perf_counter() - t0
    ray.shutdown()
    diff = float((got - want).abs().max())
    rel = diff / float(want.abs().max())
    steps, gran = opts.method_options.ig_steps, opts.granularity
    return [{"name": f"EAP-IG {steps} steps, SmolLM2 IOI, {meta['n']} prompts, {gran} ({meta['n_edges']} edges)",
             "median_s": round(float(meta["method_s"]), 1), "shards": 4, "actors": 2, "sharded_s": round(t_par, 1),
             "max_abs_diff": f"{diff:.2e}", "max_rel_diff": f"{rel:.2e}", "max_abs_score": f"{float(want.abs().max()):.3g}",
             "within_1e-5": diff <= 1e-5,
             "notes": f"one process (a subprocess): load {float(meta['open_s']):.0f} s; 2 actors: start+load "
                      f"{t_pool:.0f} s; load {os.getloadavg()[0]:.1f}"}]


CASES = {"sweep": sweep, "parallel_smollm2": parallel_smollm2}

if __name__ == "__main__":
    if sys.argv[1:2] == ["_one_process"]:
        _one_process(sys.argv[2])
    else:
        for row in CASES[sys.argv[1] if len(sys.argv) > 1 else "sweep"]():
            print(row)
