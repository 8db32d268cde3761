"""Measure every built-in task's full-model performance and print the table for docs/tasks.md.

For each task and model (the task's default model, plus SmolLM2-135M for induction:
`subcircuit.tasks.performance.performance_targets`) it builds the task (n examples, seed), runs the
unpatched model on the clean and the corrupted prompts and computes every metric
(`subcircuit.tasks.performance.measure_performance`, the function the slow test
tests/test_tasks.py::test_shipped_performance_is_current uses to check the shipped numbers).
"works" applies the task's criterion (TaskSpec.criterion) to the clean scores. With --write the
numbers go to src/subcircuit/data/task_performance.json, which `subcircuit tasks` reads.

    python scripts/measure_tasks.py [--n 64] [--seed 0] [--write] [--tasks ioi greater-than ...]
"""

from __future__ import annotations

import argparse
from typing import Any

from subcircuit.models import MODELS, load
from subcircuit.tasks import PERFORMANCE_FILE, TASKS
from subcircuit.tasks.performance import SEED, N, measure_performance, performance_targets, write_performance

COLUMNS = ["accuracy", "logit-diff", "prob-diff", "nll", "kl@corrupted", "logit-diff@corrupted", "prob-diff@corrupted",
           "nll@corrupted"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=N)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--tasks", nargs="*", default=sorted(TASKS))
    ap.add_argument("--write", action="store_true", help=f"write {PERFORMANCE_FILE}")
    args = ap.parse_args()
    cache: dict[str, Any] = {}
    rows = []
    for task, model in performance_targets(args.tasks):
        entry = MODELS.get(model)
        if entry is not None and not entry.available():
            print(f"skip {task} on {model}: model not available")
            continue
        if model not in cache:
            cache[model] = load(model)
        rows.append(measure_performance(task, cache[model], args.n, args.seed, model=model))
    print("| task | model | n | " + " | ".join(COLUMNS) + " | criterion | works |")
    print("|" + "---|" * (len(COLUMNS) + 5))
    for r in rows:
        s = r["scores"]
        crit = " ".join(str(x) for x in r["criterion"]) if r["criterion"] else ""
        vals = " | ".join(f"{s[c]:.3f}" if c in s else "" for c in COLUMNS)
        works = {True: "yes", False: "NO", None: "-"}[r["works"]]
        print(f"| {r['task']} | {r['model']} | {r['n']} | {vals} | {crit} | {works} |")
    if args.write:
        print(f"wrote {write_performance(rows)}")


if __name__ == "__main__":
    main()
