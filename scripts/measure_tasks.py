"""Measure every built-in task's full-model performance and print the table for docs/tasks.md.

For each task and model (the task's default model, plus SmolLM2-135M for induction) it builds
the task (n examples, seed), runs the unpatched model on the clean and the corrupted prompts and
computes every metric (`subcircuit.tasks.metrics.full_model_scores`). "works" applies the task's
criterion (TaskSpec.criterion) to the clean scores. With --write the numbers go to
src/subcircuit/data/task_performance.json, which `subcircuit tasks` reads.

    python scripts/measure_tasks.py [--n 64] [--seed 0] [--write] [--tasks ioi greater-than ...]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch

from subcircuit.models import MODELS, load
from subcircuit.tasks import PERFORMANCE_FILE, TASKS, full_model_scores, get_task, meets_criterion
from subcircuit.tasks.metrics import BUILTIN_METRICS

EXTRA_MODELS = {"induction": ["smollm2-135m"]}


def measure(task: str, model: str, n: int, seed: int, cache: dict[str, Any]) -> dict[str, Any] | None:
    entry = MODELS.get(model)
    if entry is not None and not entry.available():
        print(f"skip {task} on {model}: model not available")
        return None
    if model not in cache:
        cache[model] = load(model)
    loaded = cache[model]
    t = get_task(task, loaded, n=n, seed=seed)
    spec = TASKS[task]
    names = [*BUILTIN_METRICS, *([spec.natural_metric] if spec.natural_metric not in BUILTIN_METRICS else [])]
    t0 = time.time()
    with torch.no_grad():
        scores = full_model_scores(loaded.model, t, names)
    return {
        "task": task,
        "model": model,
        "n": n,
        "seed": seed,
        "scores": {k: round(v, 4) for k, v in scores.items()},
        "criterion": list(spec.criterion) if spec.criterion else None,
        "works": meets_criterion(spec, scores),
        "seconds": round(time.time() - t0, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tasks", nargs="*", default=sorted(TASKS))
    ap.add_argument("--write", action="store_true", help=f"write {PERFORMANCE_FILE}")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    cache: dict[str, Any] = {}
    rows = []
    for task in args.tasks:
        for model in [TASKS[task].default_model, *EXTRA_MODELS.get(task, [])]:
            row = measure(task, model, args.n, args.seed, cache)
            if row is not None:
                rows.append(row)
    cols = ["accuracy", "logit-diff", "prob-diff", "nll", "kl@corrupted", "logit-diff@corrupted", "prob-diff@corrupted",
            "nll@corrupted"]
    print("| task | model | n | " + " | ".join(cols) + " | criterion | works |")
    print("|" + "---|" * (len(cols) + 5))
    for r in rows:
        s = r["scores"]
        crit = " ".join(str(x) for x in r["criterion"]) if r["criterion"] else ""
        vals = " | ".join(f"{s[c]:.3f}" if c in s else "" for c in cols)
        print(f"| {r['task']} | {r['model']} | {r['n']} | {vals} | {crit} | { {True: 'yes', False: 'NO', None: '-'}[r['works']] } |")
    if args.write:
        old = json.loads(PERFORMANCE_FILE.read_text())["rows"] if PERFORMANCE_FILE.exists() else []
        keep = [o for o in old if (o["task"], o["model"]) not in {(r["task"], r["model"]) for r in rows}]
        PERFORMANCE_FILE.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format": "subcircuit.task-performance/1",
            "command": "python scripts/measure_tasks.py --n N --seed S --write",
            "rows": sorted(keep + rows, key=lambda r: (r["task"], r["model"])),
        }
        PERFORMANCE_FILE.write_text(json.dumps(payload, indent=1) + "\n")
        print(f"wrote {PERFORMANCE_FILE}")


if __name__ == "__main__":
    main()
