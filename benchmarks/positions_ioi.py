"""Position-aware vs position-blind circuits on SmolLM2-135M IOI (docs/positions.md).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/positions_ioi.py --n-examples 16 --candidates 1000 \
        --metric logit-diff --out benchmarks/positions_ioi.json

For the plain graph and the positional one (`--positions spans`, IOI's 8 spans): EAP-IG's
faithfulness at a ladder of circuit sizes (and the smallest size reaching 0.5, 0.8 and 0.9), then
ACDC on EAP-IG's top K candidates; the run time of each (wall and CPU seconds: run with one thread, CPU time is what a loaded
machine does not distort); which heads the positional ACDC
circuit uses at which span. Faithfulness is measured on the discovery prompts and on the
held-out prompts (`--n-eval`, default 64, disjoint from the discovery ones); the sizes that reach
0.5, 0.8 and 0.9 are read off the held-out curve.
"""

from __future__ import annotations

import argparse
import json
import time

from subcircuit.graph import split_span
from subcircuit.runs.options import DiscoverOptions
from subcircuit.runs.pipeline import open_session, run_in_session

SIZES = (50, 100, 200, 400, 800, 1600, 3200, 6400, 12800)


def heads_by_span(edges: list[str]) -> dict[str, dict[str, list[str]]]:
    """span -> {"reads": receivers (head inputs) at the span, "writes": senders read at the span}."""
    out: dict[str, dict[str, set[str]]] = {}
    for e in edges:
        sender, _, receiver = e.partition("->")
        base, span = split_span(receiver)
        d = out.setdefault(span or "", {"reads": set(), "writes": set()})
        if base != "logits" and not base.startswith("m"):
            d["reads"].add(base)
        if sender.startswith("a"):
            d["writes"].add(sender)
    return {s: {k: sorted(v) for k, v in d.items()} for s, d in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-examples", type=int, default=16)
    ap.add_argument("--candidates", type=int, default=1000)
    ap.add_argument("--threshold", type=float, default=0.01)
    ap.add_argument("--granularity", default="heads-qkv")
    ap.add_argument("--metric", default="logit-diff")
    ap.add_argument("--n-eval", type=int, default=64)
    ap.add_argument("--out", default="benchmarks/positions_ioi.json")
    a = ap.parse_args()
    results = {}
    for positions in (None, "spans"):
        tag = positions or "plain"
        base = DiscoverOptions.build("eap-ig", n_examples=a.n_examples, granularity=a.granularity, positions=positions,
                                     edges=SIZES[0], metric=a.metric, force=True, n_eval=a.n_eval)
        t0 = time.perf_counter()
        session = open_session("smollm2-135m", "ioi", base)
        t_open = time.perf_counter() - t0
        curve = []
        t_eap = cpu_eap = None
        for n in SIZES:
            if n > session.graph.n_edges:
                break
            t1, c1 = time.perf_counter(), time.process_time()
            c = run_in_session(session, base.updated(edges=n))
            if t_eap is None:
                t_eap, cpu_eap = time.perf_counter() - t1, time.process_time() - c1
            curve.append((n, c.results["faithfulness"], c.results.get("faithfulness_heldout")))
            print(tag, "eap-ig", n, c.results["faithfulness"], c.results.get("faithfulness_heldout"), flush=True)
        t1, c1 = time.perf_counter(), time.process_time()
        acdc = run_in_session(session, DiscoverOptions.build(
            "acdc", n_examples=a.n_examples, granularity=a.granularity, positions=positions,
            candidates=a.candidates, threshold=a.threshold, metric=a.metric, force=True, n_eval=a.n_eval))
        t_acdc, cpu_acdc = time.perf_counter() - t1, time.process_time() - c1
        kept = acdc.in_circuit
        print(tag, "acdc", len(kept), acdc.results["faithfulness"], acdc.results.get("faithfulness_heldout"),
              round(t_acdc, 1), flush=True)
        results[tag] = {
            "n_edges_graph": session.graph.n_edges, "open_s": round(t_open, 1),
            "eap_ig": {"first_run_s": round(t_eap, 1), "first_run_cpu_s": round(cpu_eap, 1), "curve": curve,
                       **{f"edges_at_{f}": next((n for n, _, v in curve if v is not None and v >= f), None)
                          for f in (0.5, 0.8, 0.9)}},
            "acdc_candidates": {"candidates": a.candidates, "threshold": a.threshold, "n_edges": len(kept),
                                "faithfulness": acdc.results["faithfulness"],
                                "faithfulness_heldout": acdc.results.get("faithfulness_heldout"), "run_s": round(t_acdc, 1), "run_cpu_s": round(cpu_acdc, 1),
                                "edges": kept, "heads_by_span": heads_by_span(kept) if positions else None},
        }
        if positions:  # the plain ACDC circuit kept at every span, for the edge counts
            results[tag]["spans"] = list(session.graph.spans)
        del session
    with open(a.out, "w") as f:
        json.dump(results, f, indent=1)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
