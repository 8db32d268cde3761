"""Tasks: clean/corrupted prompt pairs, answer tokens and the metrics that score them.

    from subcircuit.tasks import get_task, get_metric
    task = get_task("ioi", loaded, n=32, seed=0)          # or a path to a JSONL task file
    kl = get_metric("kl").loss(logits_cbv, task, base_bv)  # [c], lower is better

Built-in tasks (`TASKS`): ioi, greater-than, induction, docstring, gendered-pronoun (plus the tracr
tasks when their optional dependencies are installed). Each is generated for the tokenizer of the
model it runs on, deterministically from (n, seed). `list_tasks()` describes them for
`subcircuit tasks`, including whether the default model can do the task, from the full-model
performance measured by `scripts/measure_tasks.py` and shipped in
`subcircuit/data/task_performance.json`.
"""

from __future__ import annotations

import importlib
import json
import logging
import operator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from subcircuit.errors import UserError, unknown
from subcircuit.tasks import docstring, gendered_pronoun, greater_than, induction, ioi  # noqa: F401  (registers)
from subcircuit.tasks.base import TASKS, Task, TaskSpec, check_context, get_task_spec, register_task
from subcircuit.tasks.files import TaskExample, TaskFile, load_task_file, read_task_file, save_task_file
from subcircuit.tasks.metrics import METRICS, Metric, full_model_scores, get_metric, logits_at

log = logging.getLogger(__name__)

PERFORMANCE_FILE = Path(__file__).resolve().parent.parent / "data" / "task_performance.json"

__all__ = [
    "METRICS",
    "PERFORMANCE_FILE",
    "TASKS",
    "Metric",
    "Task",
    "TaskExample",
    "TaskFile",
    "TaskInfo",
    "TaskSpec",
    "full_model_scores",
    "get_metric",
    "get_task",
    "get_task_spec",
    "is_task_file",
    "list_tasks",
    "load_task_file",
    "logits_at",
    "meets_criterion",
    "measured_performance",
    "read_task_file",
    "register_task",
    "save_task_file",
]


def is_task_file(task: str | Path) -> bool:
    """Whether `task` names a task file rather than a built-in task."""
    s = str(task)
    return s not in TASKS and (s.endswith((".jsonl", ".json")) or "/" in s or Path(s).is_file())


def get_task(task: str | Path, loaded: Any, n: int | None = None, seed: int = 0) -> Task:
    """A Task for `loaded` (a LoadedModel): a built-in task name or a JSONL task file path.

    n: number of examples (default: the task's default size; for files, the first n lines).
    Unknown names, tasks the model cannot run and prompts longer than the model's context
    (`cfg.n_ctx`) raise `UserError` (one line).
    """
    if n is not None and n < 1:
        raise UserError(f"the number of examples must be at least 1, not {n}")
    if is_task_file(task):
        return load_task_file(task, loaded, n)
    spec = TASKS.get(str(task))
    if spec is None:
        raise unknown("task", str(task), TASKS)
    try:
        task_obj = spec.build(loaded, n or spec.default_n, seed)
    except ValueError as e:
        if isinstance(e, UserError):
            raise
        raise UserError(f"task {spec.name!r} cannot run on model {getattr(loaded, 'name', '?')!r}: {e}") from e
    return check_context(task_obj, loaded)


# ------------------------------------------------------------------------------ listing


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


@lru_cache(maxsize=1)
def _performance_rows() -> tuple[dict[str, Any], ...]:
    if not PERFORMANCE_FILE.exists():
        return ()
    try:
        return tuple(json.loads(PERFORMANCE_FILE.read_text())["rows"])
    except (OSError, ValueError, KeyError) as e:
        log.warning("could not read %s: %s", PERFORMANCE_FILE, e)
        return ()


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


# ------------------------------------------------------------------------------ tracr tasks
# The tracr engineer's module registers `tracr-reverse` and `tracr-proportion`. It needs the
# optional JAX extra; without it those tasks are simply not listed.
# >>> tracr tasks (keep this block last) >>>
_OPTIONAL = {"jax", "jaxlib", "tracr", "haiku", "chex"}
try:
    importlib.import_module(f"{__name__}.tracr_tasks")  # registers tracr-reverse, tracr-proportion
except ModuleNotFoundError as _e:  # only a missing optional dependency (jax, tracr) is tolerated
    if (_e.name or "").split(".")[0] not in _OPTIONAL and _e.name != f"{__name__}.tracr_tasks":
        raise
    log.debug("tracr tasks not available: %s", _e)
# <<< tracr tasks <<<
