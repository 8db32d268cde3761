"""The SmolLM2-135M IOI table of docs/evaluation.md: CPR and CMD (MIB's definitions) of the
score-based methods, and ACDC's faithfulness at its own circuit size.

    python scripts/smollm2_ioi_table.py --out runs/smollm2-ioi [--n-examples 32] \\
        [--methods eap,eap-ig,edge-pruning,random] [--acdc-run DIR | --acdc-threshold 0.01]

All methods share one problem (model, IOI prompts, metric, corrupted ablation), so the numbers are
comparable. Each score method's circuit.json (top-k at ACDC's size, or 1% of the edges) and its
curves (evaluation.json) land in OUT/<method>/, so `subcircuit compare OUT/*` redraws the plots.
ACDC: `--acdc-run DIR` reuses a finished run (its circuit size and faithfulness); `--acdc-threshold`
runs ACDC into OUT/acdc (resumable with `subcircuit discover --resume OUT/acdc`). Methods that are
not registered are reported as missing, not silently skipped. Writes OUT/table.md and OUT/results.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

from subcircuit.circuit import Circuit, atomic_write_text, edge_records, load_circuit
from subcircuit.evaluation.curves import cpr_cmd, topk_masks
from subcircuit.evaluation.faithfulness import baseline, faithfulness_many
from subcircuit.graph import build_graph
from subcircuit.methods import METHODS, make_problem, run_method
from subcircuit.methods.selection import select_top
from subcircuit.models import load
from subcircuit.runs.discover import discover
from subcircuit.runs.options import DiscoverOptions
from subcircuit.runs.pipeline import versions
from subcircuit.tasks import get_metric, get_task

log = logging.getLogger("smollm2_ioi_table")
MODEL, TASK = "smollm2-135m", "ioi"


def fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def acdc_point(args, loaded) -> dict | None:
    """(size, faithfulness) of ACDC: a finished run, or a fresh run at --acdc-threshold."""
    if args.acdc_run:
        c = load_circuit(args.acdc_run)
    elif args.acdc_threshold is not None:
        opts = DiscoverOptions.build(method="acdc", threshold=args.acdc_threshold, metric=args.metric,
                               n_examples=args.n_examples, seed=args.seed, candidates=args.acdc_candidates)
        out = args.out / "acdc"
        c = discover(loaded, TASK, opts, out=out, resume=(out / "acdc-trace.json").exists())
    else:
        return None
    r = c.results
    return {"n_edges": r["n_edges_in_circuit"], "faithfulness": r["faithfulness"], "threshold": c.params.get("threshold"),
            "candidates": c.params.get("candidates"), "metric": c.metric, "seconds": c.timings_s.get("total")}


def write_table(args, argv, task, metric, graph, base, size, rows, acdc, missing, t0) -> list[str]:
    """Write OUT/table.md and OUT/results.json (after every method, so a long run leaves partial results)."""
    cmd_line = "python scripts/smollm2_ioi_table.py " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = [f"SmolLM2-135M, IOI ({task.n} prompts, seed {args.seed}), metric {metric}, corrupted ablation, "
             f"heads-qkv graph ({graph.n_edges} edges); m(N) = {base.full:.4g}, m(∅) = {base.empty:.4g}.", "",
             f"| method | CPR ↑ | CMD ↓ | faithfulness at {size} edges |", "|---|---|---|---|"]
    lines += [f"| {r['method']} | {fmt(r['cpr'])} | {fmt(r['cmd'])} | {fmt(r['faithfulness_at_acdc_size'])} |"
              for r in rows]
    if acdc:
        on = f", on the top {acdc['candidates']} edges by EAP-IG" if acdc.get("candidates") else ""
        lines.append(f"| acdc (τ = {acdc['threshold']:g}{on}; {acdc['n_edges']} edges) | — | — | "
                     f"{fmt(acdc['faithfulness'])} |")
    if missing:
        lines += ["", f"Not registered when this ran: {', '.join(missing)}."]
    lines += ["", f"Command: `{cmd_line}` ({time.perf_counter() - t0:.0f} s)."]
    atomic_write_text(args.out / "table.md", "\n".join(lines) + "\n")
    atomic_write_text(args.out / "results.json", json.dumps(
        {"model": MODEL, "task": TASK, "metric": metric, "n_examples": task.n, "n_edges_total": graph.n_edges,
         "metric_full_model": base.full, "metric_empty_circuit": base.empty, "size": size, "rows": rows,
         "acdc": acdc, "missing": missing, "command": cmd_line}, indent=1))
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--methods", default="eap,eap-ig,edge-pruning,random")
    ap.add_argument("--n-examples", type=int, default=32)
    ap.add_argument("--metric", default="logit-diff", help="MIB scores IOI by logit difference")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=4, help="mask configurations per forward pass")
    ap.add_argument("--acdc-run", type=Path, default=None)
    ap.add_argument("--acdc-threshold", type=float, default=None)
    ap.add_argument("--acdc-candidates", type=int, default=None,
                    help="run ACDC on the top-K edges by EAP-IG (the way to run it on this graph on a CPU)")
    ap.add_argument("--edge-pruning-steps", type=int, default=None, help="default: the method's")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    loaded = load(MODEL)
    task = get_task(TASK, loaded, args.n_examples, args.seed)
    metric = args.metric or task.metric or "kl"
    graph = build_graph(loaded.cfg, "heads-qkv")
    torch.manual_seed(args.seed)
    problem = make_problem(loaded.model, graph, task, get_metric(metric), "corrupted")
    base = baseline(problem)
    log.info("m(N) = %.4g, m(∅) = %.4g, %d edges", base.full, base.empty, graph.n_edges)
    acdc = acdc_point(args, loaded)
    size = acdc["n_edges"] if acdc else max(1, graph.n_edges // 100)
    rows, missing = [], []
    for name in [m.strip() for m in args.methods.split(",") if m.strip()]:
        if name not in METHODS:
            missing.append(name)
            log.warning("method %s is not registered (yet); skipped", name)
            continue
        t1 = time.perf_counter()
        kwargs = {"train_steps": args.edge_pruning_steps} if name == "edge-pruning" and args.edge_pruning_steps else {}
        res = run_method(name, problem, **kwargs)
        t_method = time.perf_counter() - t1
        cc = cpr_cmd(problem, res.scores, batch=args.batch)
        _, (f_at,) = faithfulness_many(problem, topk_masks(graph, res.scores, [size]), base, args.batch)
        keep = select_top(res.scores, size)
        circuit = Circuit(model=MODEL, task=TASK, method=name, granularity="heads-qkv", ablation="corrupted",
                          metric=metric, params={**res.params, "edges": size, "seed": args.seed,
                                                 "n_examples": task.n},
                          edges=edge_records(graph.edges, res.scores.float(), keep),
                          results={"n_edges_total": graph.n_edges, "n_edges_in_circuit": size,
                                   "metric_full_model": base.full, "metric_empty_circuit": base.empty,
                                   "faithfulness": f_at},
                          timings_s={"method": round(t_method, 2)}, versions=versions())
        circuit.save(args.out / name / "circuit.json")
        atomic_write_text(args.out / name / "evaluation.json",
                          json.dumps({"fractions": list(cc.cpr_curve.fractions), **cc.to_dict()}, indent=1))
        rows.append({"method": name, "cpr": cc.cpr, "cmd": cc.cmd, "faithfulness_at_acdc_size": f_at,
                     "method_seconds": round(t_method, 1)})
        log.info("%s: CPR %.3f CMD %.3f (%.0f s)", name, cc.cpr, cc.cmd, t_method)
        write_table(args, argv, task, metric, graph, base, size, rows, acdc, missing, t0)
    lines = write_table(args, argv, task, metric, graph, base, size, rows, acdc, missing, t0)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
