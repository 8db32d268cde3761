"""Whether a model can do a task: its full-model performance, measured and shipped.

A circuit is only worth finding for a behaviour the model has. For each built-in task and its
default model (plus `EXTRA_MODELS`), `measure_performance` builds the task (n examples, seed),
runs the unpatched model on the clean and the corrupted prompts and computes every metric
(`metrics.full_model_scores`); the task's criterion (`TaskSpec.criterion`, e.g. accuracy >= 0.9)
applied to the clean scores says whether the model "works" on it.

The numbers ship in `subcircuit/data/task_performance.json` (written by
`scripts/measure_tasks.py --write`), so that `subcircuit tasks` can show them without loading a
model. The slow test tier re-measures every row with the same function and compares
(`compare_rows`, within `ABS_TOL`), so the file cannot drift from the code and the models.
"""

from __future__ import annotations

import json
import logging
import math
import operator
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from subcircuit.tasks.base import TASKS, TaskSpec, check_context
from subcircuit.tasks.metrics import BUILTIN_METRICS, full_model_scores

log = logging.getLogger(__name__)

PERFORMANCE_FILE = Path(__file__).resolve().parent.parent / "data" / "task_performance.json"
FORMAT = "subcircuit.task-performance/1"
EXTRA_MODELS: dict[str, tuple[str, ...]] = {"induction": ("smollm2-135m",)}  # besides each task's default model
N, SEED = 64, 0  # the examples and seed of the shipped measurements
# A shipped score may differ from a new measurement by this much (scores are stored rounded to 4
# decimals; float32 sums in another order or thread count move them by ~1e-5); a change of the
# model, the task generation or a metric moves them by far more.
ABS_TOL = 2e-3


@dataclass(frozen=True)
class TaskInfo:
    """One row of `subcircuit tasks`.

    works: True/False if the default model's full-model performance was measured and meets the
    task's criterion, None if not measured. performance: the measured natural metric, as text.
    """

    name: str
    description: str
    default_model: str
    default_metric: str
    natural_metric: str
    default_n: int
    works: bool | None
    performance: str
    criterion: str


# ------------------------------------------------------------------------------ measuring


def performance_targets(tasks: list[str] | None = None) -> list[tuple[str, str]]:
    """(task, model) pairs that are measured: each task on its default model and `EXTRA_MODELS`."""
    names = sorted(TASKS) if tasks is None else tasks
    return [(t, m) for t in names for m in (TASKS[t].default_model, *EXTRA_MODELS.get(t, ()))]


def measure_performance(task: str, loaded: Any, n: int = N, seed: int = SEED, model: str | None = None) -> dict[str, Any]:
    """The full-model performance of built-in `task` on `loaded` (a LoadedModel), as one row of
    the performance file: {task, model, n, seed, scores (rounded to 4 decimals), criterion,
    works, seconds}. `model`: the name recorded (default: loaded.name)."""
    spec = TASKS[task]
    t = check_context(spec.build(loaded, n, seed), loaded)
    names = [*BUILTIN_METRICS, *([spec.natural_metric] if spec.natural_metric not in BUILTIN_METRICS else [])]
    t0 = time.perf_counter()
    with torch.no_grad():
        scores = full_model_scores(loaded.model, t, names)
    return {
        "task": task,
        "model": model or loaded.name,
        "n": n,
        "seed": seed,
        "scores": {k: round(v, 4) for k, v in scores.items()},
        "criterion": list(spec.criterion) if spec.criterion else None,
        "works": meets_criterion(spec, scores),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def compare_rows(measured: dict[str, Any], shipped: dict[str, Any], abs_tol: float = ABS_TOL) -> list[str]:
    """What differs between a new measurement and the shipped row of the same (task, model): one
    text per difference (empty if they agree). Timings are not compared."""
    diffs = [f"{k}: shipped {shipped.get(k)!r}, measured {measured.get(k)!r}"
             for k in ("task", "model", "n", "seed", "criterion", "works") if shipped.get(k) != measured.get(k)]
    old, new = shipped.get("scores", {}), measured.get("scores", {})
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if a is None or b is None or not math.isclose(a, b, rel_tol=0.0, abs_tol=abs_tol):
            diffs.append(f"scores[{k!r}]: shipped {a}, measured {b}")
    return diffs


def write_performance(rows: list[dict[str, Any]], path: Path = PERFORMANCE_FILE) -> Path:
    """Merge `rows` into the performance file (replacing the rows of the same task and model)."""
    old = json.loads(path.read_text())["rows"] if path.exists() else []
    new_keys = {(r["task"], r["model"]) for r in rows}
    keep = [o for o in old if (o["task"], o["model"]) not in new_keys]
    payload = {
        "format": FORMAT,
        "command": "python scripts/measure_tasks.py --n N --seed S --write",
        "rows": sorted(keep + rows, key=lambda r: (r["task"], r["model"])),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1) + "\n")
    _performance_rows.cache_clear()
    return path


# ------------------------------------------------------------------------------ reading


@lru_cache(maxsize=1)
def _performance_rows() -> tuple[dict[str, Any], ...]:
    if not PERFORMANCE_FILE.exists():
        return ()
    try:
        return tuple(json.loads(PERFORMANCE_FILE.read_text())["rows"])
    except (OSError, ValueError, KeyError) as e:
        log.warning("could not read %s: %s", PERFORMANCE_FILE, e)
        return ()


def shipped_rows() -> list[dict[str, Any]]:
    """Every row of the shipped performance file."""
    return list(_performance_rows())


def measured_performance(task: str, model: str) -> dict[str, Any] | None:
    """The shipped measurement of `task` on `model` (scores, n, seed), or None."""
    for row in _performance_rows():
        if row.get("task") == task and row.get("model") == model:
            return row
    return None


_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


def meets_criterion(spec: TaskSpec, scores: dict[str, float]) -> bool | None:
    """Whether full-model `scores` meet the task's criterion (None if it has none)."""
    if spec.criterion is None:
        return None
    key, op, threshold = spec.criterion
    value = _score(scores, key)
    return value is not None and bool(_OPS[op](value, threshold))


def _score(scores: dict[str, float], key: str) -> float | None:
    """scores[key], or scores[a] / scores[b] for a key "a/b" (None if missing)."""
    if "/" in key:
        a, b = (_score(scores, k) for k in key.split("/", 1))
        return None if a is None or not b else a / b
    return scores.get(key)


def _criterion_text(spec: TaskSpec) -> str:
    return "" if spec.criterion is None else " ".join(str(x) for x in spec.criterion)


def list_tasks() -> list[TaskInfo]:
    """Every registered task with its metric, default model and size, and whether the default
    model can do it (measured; a task the model fails is listed with works=False)."""
    rows = []
    for spec in sorted(TASKS.values(), key=lambda s: s.name):
        row = measured_performance(spec.name, spec.default_model)
        works, perf = None, "not measured"
        if row is not None:
            scores = row.get("scores", {})
            works = meets_criterion(spec, scores)
            keys = dict.fromkeys([spec.natural_metric, *(spec.criterion or ())[:1]])
            shown = {k: v for k in keys if (v := _score(scores, str(k))) is not None}
            perf = ", ".join(f"{k} {v:.3g}" for k, v in shown.items()) + f" (n={row.get('n')})"
        rows.append(
            TaskInfo(
                spec.name,
                spec.description,
                spec.default_model,
                spec.default_metric,
                spec.natural_metric,
                spec.default_n,
                works,
                perf,
                _criterion_text(spec),
            )
        )
    return rows


def measure_task_file(path: str | Path, loaded: Any, n: int | None = None) -> dict[str, Any]:
    """How well `loaded` does a task file (`subcircuit tasks check`): every metric of the full
    model on the clean prompts and on the corrupted ones, as in `measure_performance`."""
    from subcircuit.tasks.files import load_task_file, read_task_file

    tf = read_task_file(path)
    t = check_context(load_task_file(path, loaded, n), loaded)
    with torch.no_grad():
        scores = full_model_scores(loaded.model, t, list(BUILTIN_METRICS))
    return {"task": tf.name, "model": loaded.name, "n": int(t.clean.shape[0]), "metric": tf.metric,
            "scores": {k: round(v, 4) for k, v in scores.items()}}
