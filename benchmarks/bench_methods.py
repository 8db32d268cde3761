"""Wall time and peak memory of the score methods on SmolLM2-135M IOI (heads-qkv, 16 prompts, CPU).

Each method runs in its own subprocess (peak memory = that process's ru_maxrss, which includes
the model, ≈ 0.6 GB). Measured: `eap`, `eap-ig` (5 steps, inputs), `edge-pruning` (a few
steps; the time per step is reported and the default 200 steps extrapolated), and ACDC with
`--candidates 2000`. Beside EAP-IG the same subprocess times the plain (unpatched) forward
pass and forward+backward pass, for the goal "EAP-IG time ≤ 1.3× the plain passes it needs":
the backward both as in training (every weight's gradient) and with frozen weights (the
activations' gradients only, which is all attribution needs).

Run standalone: `python benchmarks/bench_methods.py` prints a markdown table; `run()` returns
rows {name, median_s, peak_mb, notes} for `benchmarks/run.py`. Times are single runs (the
median of one): the methods take minutes. The machine's load average is recorded in the notes.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time

log = logging.getLogger(__name__)
MODEL, TASK, N, GRAN = "smollm2-135m", "ioi", 16, "heads-qkv"
EP_STEPS = int(os.environ.get("BENCH_EP_STEPS", "3"))
CANDIDATES = int(os.environ.get("BENCH_CANDIDATES", "2000"))


def _child(which: str) -> dict:
    """Runs inside the subprocess: one measurement, printed as JSON."""
    import resource

    import torch

    from subcircuit.graph import build_graph
    from subcircuit.methods import make_problem, run_method
    from subcircuit.models import load
    from subcircuit.tasks import get_metric, get_task

    lm = load(MODEL)
    task = get_task(TASK, lm, N, 0)
    metric = "logit-diff" if which == "eap" else "kl"  # EAP's gradient of KL at the full model is 0
    graph = build_graph(lm.cfg, GRAN)
    out: dict = {"n_edges": graph.n_edges, "batch": list(task.clean.shape)}
    t0 = time.perf_counter()
    problem = make_problem(lm.model, graph, task, get_metric(metric))
    out["setup_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    if which == "eap":
        run_method("eap", problem)
    elif which == "eap-ig":
        run_method("eap-ig", problem, ig_steps=5)
    elif which == "edge-pruning":
        run_method("edge-pruning", problem, edges=1000, train_steps=EP_STEPS)
    elif which == "acdc-candidates":
        from subcircuit.methods.acdc import acdc_on_candidates

        state, _ = acdc_on_candidates(problem, 0.01, CANDIDATES)
        out["circuit_edges"] = int(state.mask.sum())
        out["trials"] = len(state.trace)
    out["method_s"] = time.perf_counter() - t0
    if which == "eap-ig":  # the plain passes, same process, same load (median of 3 each)
        model, tok, rows = lm.model, task.clean, torch.arange(task.n)

        def timed(fn) -> float:
            ts = []
            for _ in range(3):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
            return sorted(ts)[1]

        def fwd():
            with torch.no_grad():
                model(tok)

        def fwd_bwd():
            model(tok)[rows, task.positions].logsumexp(-1).sum().backward()
            model.zero_grad(set_to_none=True)

        out["plain_fwd_s"] = timed(fwd)
        model.requires_grad_(True)  # a training-style backward: every weight's gradient
        out["plain_fwd_bwd_s"] = timed(fwd_bwd)
        model.requires_grad_(False)
        model.W_E.requires_grad_(True)  # gradients of the activations only (what attribution needs)
        out["plain_fwd_bwd_act_s"] = timed(fwd_bwd)
        model.requires_grad_(False)
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _measure(which: str, timeout: float = 1800) -> dict:
    t0 = time.perf_counter()
    load0 = os.getloadavg()[0]
    try:
        p = subprocess.run([sys.executable, __file__, "--child", which], capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s", "wall_s": time.perf_counter() - t0, "load": load0}
    if p.returncode != 0:
        return {"error": p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"rc {p.returncode}"}
    d = json.loads(p.stdout.strip().splitlines()[-1])
    d.update(wall_s=time.perf_counter() - t0, load=(load0 + os.getloadavg()[0]) / 2)
    return d


def run(which: tuple[str, ...] = ("eap", "eap-ig", "edge-pruning", "acdc-candidates")) -> list[dict]:
    rows = []
    for w in which:
        d = _measure(w)
        log.info("%s: %s", w, d)
        if "error" in d:
            rows.append({"name": w, "median_s": None, "peak_mb": None, "notes": d["error"]})
            continue
        notes = f"{MODEL} {TASK} {GRAN} ({d['n_edges']} edges), batch {d['batch']}, load avg {d['load']:.1f}"
        notes += f"; setup (ablation + base logits) {d['setup_s']:.1f} s"
        if w == "eap":
            notes += "; metric logit-diff"
        if w == "eap-ig":
            f, fb, fba = d["plain_fwd_s"], d["plain_fwd_bwd_s"], d["plain_fwd_bwd_act_s"]
            total = d["method_s"] + d["setup_s"]
            # ours: ablation, clean logits, clean sender deltas (3 forwards), 5 × (forward + backward);
            # Hanna et al.'s count: clean + corrupted forward, 5 × (forward + backward)
            notes += (f"; plain fwd {f:.2f} s, fwd+bwd {fb:.2f} s (weight gradients) / {fba:.2f} s (activation "
                      f"gradients only); ratio to 3F+5(F+B) {total / (3 * f + 5 * fb):.2f} / "
                      f"{total / (3 * f + 5 * fba):.2f}, to Hanna et al.'s 2F+5(F+B) "
                      f"{total / (2 * f + 5 * fb):.2f} / {total / (2 * f + 5 * fba):.2f}")
        if w == "edge-pruning":
            per = d["method_s"] / EP_STEPS
            notes += f"; {EP_STEPS} steps, {per:.1f} s/step, default 200 steps ≈ {200 * per / 60:.0f} min"
        if w == "acdc-candidates":
            notes += f"; K={CANDIDATES}, τ=0.01, {d['trials']} trials, circuit {d['circuit_edges']} edges"
        rows.append({"name": w, "median_s": round(d["method_s"] + d["setup_s"], 2),
                     "peak_mb": round(d["peak_mb"]), "notes": notes})
    return rows


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(_child(sys.argv[2])))
        return
    logging.basicConfig(level=logging.INFO)
    which = tuple(sys.argv[1:]) or ("eap", "eap-ig", "edge-pruning", "acdc-candidates")
    rows = run(which)
    print("| method | time (s) | peak RSS (MB) | notes |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['median_s']} | {r['peak_mb']} | {r['notes']} |")


if __name__ == "__main__":
    main()
