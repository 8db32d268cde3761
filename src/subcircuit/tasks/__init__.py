"""Tasks: clean/corrupted prompt pairs, answer tokens and the metrics that score them.

    from subcircuit.tasks import get_task, get_metric
    task = get_task("ioi", loaded, n=32, seed=0)          # or a path to a JSONL task file
    kl = get_metric("kl").loss(logits_cbv, task, base_bv)  # [c], lower is better

Built-in tasks (`TASKS`): ioi, greater-than, induction, docstring, gendered-pronoun (plus the tracr
tasks when their optional dependencies are installed). Each is generated for the tokenizer of the
model it runs on, deterministically from (n, seed). `list_tasks()` describes them for
`subcircuit tasks`, including whether the default model can do the task, from the full-model
performance measured by `measure_performance` (`scripts/measure_tasks.py`) and shipped in
`subcircuit/data/task_performance.json` (see `subcircuit.tasks.performance`).
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

from subcircuit.errors import UserError, unknown
from subcircuit.tasks import docstring, gendered_pronoun, greater_than, induction, ioi, micro_tasks  # noqa: F401
from subcircuit.tasks.base import TASKS, Task, TaskSpec, check_context, get_task_spec, register_task
from subcircuit.tasks.files import TaskExample, TaskFile, load_task_file, read_task_file, save_task_file
from subcircuit.tasks.metrics import METRICS, Metric, full_model_scores, get_metric, logits_at
from subcircuit.tasks.performance import (
    PERFORMANCE_FILE,
    TaskInfo,
    list_tasks,
    measure_performance,
    measured_performance,
    meets_criterion,
)

log = logging.getLogger(__name__)

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
    "measure_performance",
    "measured_performance",
    "meets_criterion",
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
