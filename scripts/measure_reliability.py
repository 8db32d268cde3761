"""The figures of docs/reliability.md (issue 19): held-out faithfulness, bootstrap stability and the
per-method defaults, on SmolLM2-135M IOI (16 discovery prompts, 64 held-out prompts).

    python scripts/measure_reliability.py defaults   # EAP, EAP-IG, Edge Pruning at 1% of edges: old vs new defaults
    python scripts/measure_reliability.py heldout    # the demo's EAP-IG and ACDC circuits: discovery vs held-out
    python scripts/measure_reliability.py bootstrap  # EAP-IG --bootstrap 10 (--edges 100)

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


def cross_scores(session, circuit, judges):
    mask = session.graph.mask_from_edges(circuit.in_circuit)
    return {m: h.measure(mask)["faithfulness_heldout"] for m, h in judges.items()}


def judges_for(session):
    ev = session.heldout.task
    return {m: HeldOut(session.loaded.model, session.graph, ev, get_metric(m), "corrupted")
            for m in ("logit-diff", "kl")}


def defaults(loaded) -> None:
    rows = []
    plan = [  # (method, metric, ranking, label)
        ("eap", "kl", "signed", "old default"), ("eap", "kl", "abs", ""), ("eap", "logit-diff", "signed", ""),
        ("eap", None, None, "new default"),
        ("eap-ig", "kl", "signed", "old default"), ("eap-ig", "kl", "abs", ""),
        ("eap-ig", "logit-diff", "signed", ""), ("eap-ig", None, None, "new default"),
        ("edge-pruning", None, None, "old = new default (KL)"), ("edge-pruning", "logit-diff", None, ""),
    ]
    sessions, judges = {}, None
    for method, metric, ranking, label in plan:
        opts = DiscoverOptions.build(method, metric=metric, n_examples=N, n_eval=N_EVAL,
                                     **({} if ranking is None else {"ranking": ranking}))
        key = (opts.metric or method)
        if key not in sessions:
            sessions[key] = open_session(loaded, TASK, opts)
        s = sessions[key] if metric is not None else open_session(loaded, TASK, opts)
        if judges is None:
            judges = judges_for(s)
        t0 = time.perf_counter()
        c = run_in_session(s, opts)
        f = cross_scores(s, c, judges)
        rows.append((method, c.metric, c.params.get("ranking", "—"), label, c.results["n_edges_in_circuit"],
                     c.results["faithfulness"], c.results["faithfulness_heldout"], f["logit-diff"], f["kl"],
                     time.perf_counter() - t0))
        print(rows[-1], file=sys.stderr, flush=True)
    print("| method | metric | ranking | | edges | faithfulness (discovery, own metric) | held-out (own metric) "
          "| held-out, logit diff | held-out, KL | s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(f"{x:.3f}" if isinstance(x, float) else str(x) for x in r) + " |")


def heldout(loaded) -> None:
    from subcircuit.runs.demo import IOI_RUNS

    plan = [(label, DiscoverOptions.build(**{**opts, "n_eval": N_EVAL})) for label, opts in IOI_RUNS]
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
