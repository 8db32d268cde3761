"""The figures of docs/reliability.md (issue 19): held-out faithfulness, bootstrap stability and the
per-method defaults, on SmolLM2-135M IOI (16 discovery prompts, 64 held-out prompts).

    python scripts/measure_reliability.py defaults [METHOD [METRIC]]  # EAP, EAP-IG, Edge Pruning at 1% of edges: old vs new defaults
    python scripts/measure_reliability.py heldout    # the demo's EAP-IG and ACDC circuits: discovery vs held-out
    python scripts/measure_reliability.py bootstrap  # EAP-IG --bootstrap 10 (--edges 100, logit diff)

Every circuit is scored on the held-out prompts under both logit difference and KL, so that
circuits found with different metrics can be compared on the same scale. Prints markdown.
"""

from __future__ import annotations

import sys
import time

from subcircuit.evaluation.heldout import HeldOut
from subcircuit.models import load
from subcircuit.runs.options import DiscoverOptions
from subcircuit.runs.pipeline import open_session, run_in_session
from subcircuit.tasks import get_metric

MODEL, TASK, N, N_EVAL = "smollm2-135m", "ioi", 16, 64


def defaults(loaded) -> None:
    """Each method at 1% of the edges (the default size) under every metric x ranking, one session
    per metric (a score method's scores are computed once per session and reused across rankings).
    The combinations are given explicitly; `methods.defaults` maps "no --metric / --ranking" to
    the new-default row (tests/test_bootstrap.py checks that mapping)."""
    import gc

    from subcircuit.tasks import get_task
    from subcircuit.tasks.split import heldout_task

    disc = get_task(TASK, loaded, N, 0)
    ev = heldout_task(TASK, loaded, disc, N_EVAL, 0)
    judges: dict[str, HeldOut] = {}  # the same held-out prompts under both metrics (made with the graph)
    old = {("eap", "kl", "signed"), ("eap-ig", "kl", "signed"), ("edge-pruning", "kl", None)}
    new = {("eap", "logit-diff", "abs"), ("eap-ig", "logit-diff", "signed"), ("edge-pruning", "kl", None)}
    print("| method | metric | ranking | default | edges | faithfulness (16 discovery prompts, own metric) "
          "| held-out, logit diff | held-out, KL | s |")
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    plan = [(m, r) for m in ("eap", "eap-ig") for r in ("signed", "abs")]
    phases = [("logit-diff", plan), ("kl", plan), ("kl", [("edge-pruning", None)]),
              ("logit-diff", [("edge-pruning", None)])]
    if len(sys.argv) > 2:  # e.g. `defaults edge-pruning [logit-diff]`: only that method (under that metric)
        phases = [(m, [(x, r) for x, r in p if x == sys.argv[2]]) for m, p in phases
                  if len(sys.argv) < 4 or m == sys.argv[3]]
        phases = [(m, p) for m, p in phases if p]
    for metric, plan in phases:
        s = open_session(loaded, TASK, DiscoverOptions.build("eap", metric=metric, n_examples=N, n_eval=0))
        if not judges:
            judges = {m: HeldOut(loaded.model, s.graph, ev, get_metric(m)) for m in ("logit-diff", "kl")}
        for method, ranking in plan:
            opts = DiscoverOptions.build(method, metric=metric, n_examples=N, n_eval=0,
                                         **({} if ranking is None else {"ranking": ranking}))
            t0 = time.perf_counter()
            c = run_in_session(s, opts)
            mask = s.graph.mask_from_edges(c.in_circuit)
            f = {m: h.measure(mask)["faithfulness_heldout"] for m, h in judges.items()}
            key = (method, metric, ranking)
            tag = "old and new" if key in old and key in new else "old" if key in old else "new" if key in new else ""
            row = (method, metric, ranking or "—", tag, c.results["n_edges_in_circuit"], c.results["faithfulness"],
                   f["logit-diff"], f["kl"], time.perf_counter() - t0)
            print("| " + " | ".join(f"{x:.3f}" if isinstance(x, float) else str(x) for x in row) + " |", flush=True)
        del s
        gc.collect()


def heldout(loaded) -> None:
    from subcircuit.runs.demo import IOI_RUNS

    plan = [(label, DiscoverOptions.build(**{**opts, "n_eval": N_EVAL})) for label, opts in IOI_RUNS
            if len(sys.argv) < 3 or label == sys.argv[2]]
    s = open_session(loaded, TASK, plan[0][1])
    print("| run | edges | faithfulness, 16 discovery prompts | faithfulness, 64 held-out prompts | s |")
    print("|---|---|---|---|---|")
    for label, opts in plan:
        t0 = time.perf_counter()
        c = run_in_session(s, opts)
        r = c.results
        print(f"| {label} | {r['n_edges_in_circuit']} | {r['faithfulness']:.3f} | {r['faithfulness_heldout']:.3f} "
              f"| {time.perf_counter() - t0:.0f} |", flush=True)


def bootstrap(loaded, method: str = "eap-ig", b: int = 10) -> None:
    from subcircuit.runs.bootstrap import bootstrap_session

    opts = DiscoverOptions.build(method, edges=100, metric="logit-diff", n_examples=N, n_eval=N_EVAL)
    s = open_session(loaded, TASK, opts)
    t0 = time.perf_counter()
    c, res = bootstrap_session(s, opts, b)
    bs = c.results["bootstrap"]
    print(f"{method} --edges 100 --metric logit-diff --bootstrap {b} ({time.perf_counter() - t0:.0f} s)")
    for k, v in bs.items():
        print(f"- {k}: {v}")
    print(f"- main circuit: faithfulness {c.results['faithfulness']:.3f}, held-out {c.results['faithfulness_heldout']:.3f}")


if __name__ == "__main__":
    loaded = load(MODEL)
    {"defaults": defaults, "heldout": heldout, "bootstrap": bootstrap}[sys.argv[1]](loaded)
