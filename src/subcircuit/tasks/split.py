"""Disjoint discovery and evaluation prompts: a circuit is found on one set and judged on another.

A circuit found on 16 prompts and scored on the same 16 can fit those prompts rather than the
task (the ACDC paper keeps a test set; MIB scores circuits on held-out data). So every run gets
two prompt sets from the same source, with no prompt in both:

- built-in tasks: the discovery set is exactly what `get_task(task, loaded, n, seed)` builds (so
  a run's circuit does not change); the evaluation set comes from the same generator with
  another seed (`eval_seed(seed)`), oversampled, with every prompt that is in the discovery set
  (or earlier in the evaluation set) dropped;
- task files: lines marked `"split": "eval"` form the evaluation set and the others the
  discovery pool; without marks the first `n` lines are the discovery set and the lines after
  them the evaluation pool (again without the discovery prompts or repeats).

A prompt is identified by `prompt_key`: its clean tokens up to the position the metric reads,
and that position (tasks with a fixed input length, the tracr tasks, use the whole clean row:
the model reads every token). When a task cannot give as many distinct evaluation prompts as
asked, `heldout_task` says so in one line (a `UserError` when `--n-eval` was given, a warning
and fewer prompts for the default `DEFAULT_N_EVAL`).

`resample_task` draws a bootstrap sample (with replacement) of a task's examples.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from subcircuit.errors import UserError
from subcircuit.tasks.base import Task

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_N_EVAL", "eval_seed", "heldout_task", "prompt_key", "prompt_keys", "resample_task", "subset_task"]

DEFAULT_N_EVAL = 64  # held-out prompts when --n-eval is not given
EVAL_SEED_OFFSET = 1_000_003  # the evaluation set's generator seed is seed + this
OVERSAMPLE_ROUNDS = 4  # build 2x, 8x, 32x, 128x the prompts needed before giving up


def eval_seed(seed: int) -> int:
    """The generator seed of the evaluation prompts of a run with `seed`."""
    return seed + EVAL_SEED_OFFSET


def prompt_key(task: Task, i: int) -> tuple[Any, ...]:
    """What identifies example i as a prompt (see the module docstring)."""
    p = int(task.positions[i])
    row = task.clean[i].tolist()
    return (tuple(row) if "length" in task.meta else tuple(row[: p + 1]), p)


def prompt_keys(task: Task) -> list[tuple[Any, ...]]:
    """`prompt_key` of every example, in order."""
    return [prompt_key(task, i) for i in range(task.n)]


def subset_task(task: Task, index: Sequence[int]) -> Task:
    """The examples `index` of `task` (repeats allowed); see `Task.rows`."""
    return task.rows(index)


def resample_task(task: Task, seed: int) -> Task:
    """A bootstrap sample of `task`: task.n examples drawn with replacement (seeded)."""
    rng = random.Random(seed)
    return subset_task(task, [rng.randrange(task.n) for _ in range(task.n)])


def _fresh(candidates: Task, taken: set[tuple[Any, ...]], want: int) -> list[int]:
    """Indices of up to `want` examples of `candidates` whose prompts are not in `taken` and not
    repeated (first occurrences, in order)."""
    seen = set(taken)
    out = []
    for i, key in enumerate(prompt_keys(candidates)):
        if key not in seen:
            seen.add(key)
            out.append(i)
            if len(out) == want:
                break
    return out


def _too_few(task_name: str, found: int, want: int, n_disc: int, explicit: bool) -> None:
    msg = (f"task {task_name!r} gives only {found} distinct prompts besides its {n_disc} discovery prompts; "
           f"--n-eval {want} needs {want} (lower --n-eval or --n-examples, or add prompts)")
    if explicit:
        raise UserError(msg)
    log.warning("%s; evaluating on %d held-out prompts", msg, found)


def heldout_task(task: str | Path, loaded: Any, discovery: Task, n_eval: int | None, seed: int = 0) -> Task | None:
    """The evaluation prompts of a run whose discovery prompts are `discovery` (see the module
    docstring): `n_eval` prompts (None: `DEFAULT_N_EVAL`, fewer with a warning when the task has
    fewer; 0: none), none of them in `discovery`. None when there are none."""
    from subcircuit.tasks import TASKS, get_task, is_task_file

    explicit = n_eval is not None
    want = DEFAULT_N_EVAL if n_eval is None else n_eval
    if isinstance(want, bool) or not isinstance(want, int) or want < 0:
        raise UserError(f"--n-eval {n_eval} is invalid; expected 0 or more")
    if want == 0:
        return None
    taken = set(prompt_keys(discovery))
    if is_task_file(task):
        from subcircuit.tasks.files import eval_pool

        pool = eval_pool(task, loaded, discovery.n)
        idx = [] if pool is None else _fresh(pool, taken, want)
        if len(idx) < want:
            if not explicit and not idx:
                log.info("task file %s has no prompts besides the discovery ones; no held-out evaluation "
                         "(mark lines with \"split\": \"eval\" or give --n-examples)", task)
                return None
            _too_few(discovery.name, len(idx), want, discovery.n, explicit)
        return subset_task(pool, idx) if idx else None
    spec = TASKS[str(task)]
    size = 2 * (want + discovery.n)
    idx: list[int] = []
    for _ in range(OVERSAMPLE_ROUNDS):
        cand = get_task(spec.name, loaded, size, eval_seed(seed))
        idx = _fresh(cand, taken, want)
        if len(idx) == want:
            return subset_task(cand, idx)
        size *= 4
    _too_few(spec.name, len(idx), want, discovery.n, explicit)
    return subset_task(cand, idx) if idx else None
