"""Running a plan's runs: on this machine (`local`) or as Ray tasks (`ray`), behind one call.

    run_plan(runs, out, backend="local" | "ray", address=None, files="shared") -> PlanResult

Each run is one `discover` (a session with one run, `runs.discover`) into `out/<run name>/`;
`out/sweep.json` is the index: every run's name, model, task, options, status (`done`,
`skipped`: finished before, `failed`: with its one-line error) and seconds, rewritten after
every run.

- **Resumable.** A run whose folder holds a circuit.json with the same options (`run_header`,
  i.e. every option but the device) is finished and skipped, so rerunning a finished sweep does
  no work. A run interrupted mid-way resumes from its checkpoint (ACDC: `acdc-trace.json`,
  written after every receiver) on whichever worker takes it.
- **Fault-isolated.** A run that raises is recorded with its one-line error; the others go on.
  On Ray, a worker process that dies (killed, out of memory) fails the task as a system error,
  which Ray retries (`max_retries`, default 3): the retried run finds the trace the dead worker
  wrote and resumes from it, so the sweep ends with the same circuits as an uninterrupted one.
- **Where files land** (`files`, Ray only): `shared` (default) — the worker writes into `out`,
  which must be on storage every node sees (NFS/Lustre on Slurm, a shared volume on KubeRay;
  always true for a local cluster); `driver` — the worker writes into a folder of its node's
  temporary directory and sends the run's files back with its result, and the driver writes them
  into `out` (no shared storage needed; a checkpoint then survives only on the node that wrote it,
  in `$TMPDIR/subcircuit-runs/UID/SWEEP/RUN`, removed once the run is finished).
- **Resources.** Each Ray task asks for its run's `PlannedRun.resources()`: `num_gpus` (1 by
  default) for a run on CUDA, else `num_cpus` (1 by default), so a cluster runs as many runs at
  once as it has GPUs or CPUs; torch in the worker uses that many threads.

Ray is imported only when the `ray` backend is used (`pip install subcircuit[ray]`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from subcircuit.errors import UserError
from subcircuit.files import atomic_write_text
from subcircuit.runs.plan import PlannedRun

log = logging.getLogger(__name__)

__all__ = ["BACKENDS", "INDEX_FILE", "PlanResult", "RunOutcome", "execute_run", "is_finished", "run_plan", "write_summary"]

BACKENDS = ("local", "ray")
FILES = ("shared", "driver")
INDEX_FILE = "sweep.json"
INDEX_FORMAT = "subcircuit.sweep-plan/1"
Backend = Literal["local", "ray"]
# called in the worker on every progress step of a run: (run name, done, total, what)
WorkerHook = Callable[[str, int, int, str], None]
RunProgress = Callable[[int, int, str], None]  # on the driver: (runs ended, runs, the run that ended)


@dataclass
class RunOutcome:
    """How one run ended: `done` (made now), `skipped` (finished before) or `failed` (`error`)."""

    name: str
    status: Literal["done", "skipped", "failed"]
    seconds: float = 0.0
    error: str | None = None
    files: dict[str, bytes] = field(default_factory=dict)  # `files="driver"`: the run folder's files


@dataclass(frozen=True)
class PlanResult:
    out: Path
    outcomes: dict[str, RunOutcome]  # by run name, in the plan's order
    seconds: float

    @property
    def failed(self) -> dict[str, str]:
        return {n: o.error or "" for n, o in self.outcomes.items() if o.status == "failed"}

    def folders(self) -> list[Path]:
        """The folders of the finished runs (done or skipped), in the plan's order."""
        return [self.out / n for n, o in self.outcomes.items() if o.status != "failed"]


def _one_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    return text if isinstance(e, UserError) else f"{type(e).__name__}: {text}"


def is_finished(run: PlannedRun, folder: Path) -> bool:
    """Whether `folder` holds this run's circuit.json (same options header)."""
    path = folder / "circuit.json"
    if not path.exists():
        return False
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    from subcircuit.runs.options import NOT_IN_HEADER

    saved = {k: v for k, v in d.get("options", {}).items() if k not in NOT_IN_HEADER}
    wanted = {k: v for k, v in run.header.items() if k not in ("model", "task")}
    return saved == wanted and d.get("task") == run.task


def execute_run(run: PlannedRun, folder: str | Path, hook: WorkerHook | None = None) -> RunOutcome:
    """Make one run in `folder` (in this process): skipped if finished, resumed from its
    checkpoint if interrupted; any exception becomes a `failed` outcome with its one line."""
    from subcircuit.runs.discover import discover, holds_run

    folder = Path(folder)
    if is_finished(run, folder):
        return RunOutcome(run.name, "skipped")
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    progress = (lambda d, t, w: hook(run.name, d, t, w)) if hook is not None else None
    try:
        kw: dict[str, Any] = {} if progress is None else {"progress": progress}
        discover(run.model, run.task, run.options, out=folder, resume=holds_run(folder), report=False, **kw)
    except Exception as e:  # noqa: BLE001 - fault isolation: the run fails, the sweep goes on
        log.warning("%s failed: %s", run.name, _one_line(e))
        return RunOutcome(run.name, "failed", round(time.perf_counter() - t0, 3), _one_line(e))
    return RunOutcome(run.name, "done", round(time.perf_counter() - t0, 3))


def _ray_task(run: PlannedRun, root: str, files: str, existing: dict[str, bytes],
              hook: WorkerHook | None) -> RunOutcome:
    """The body of a run's Ray task (in the worker)."""
    import torch

    torch.set_num_threads(max(1, int(run.cpus)))
    if files == "shared":
        return execute_run(run, Path(root) / run.name, hook)
    # driver: a node-local folder of this sweep (its path on the driver) that a retry on the same
    # node finds again; removed once the run is finished and its files are on their way back
    sweep_id = hashlib.sha256(root.encode()).hexdigest()[:12]
    folder = Path(tempfile.gettempdir()) / "subcircuit-runs" / f"{os.getuid()}" / sweep_id / run.name
    folder.mkdir(parents=True, exist_ok=True)
    for rel, data in existing.items():
        if not (folder / rel).exists():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(data)
    outcome = execute_run(run, folder, hook)
    outcome.files = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    if outcome.status != "failed" or not outcome.files:
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):  # the sweep's folder, once empty
            folder.parent.rmdir()
    return outcome


def _write_index(out: Path, runs: list[PlannedRun], outcomes: dict[str, RunOutcome], meta: dict[str, Any]) -> None:
    entries = []
    for r in runs:
        o = outcomes.get(r.name)
        entry = {**r.to_dict(), "status": o.status if o else "pending"}
        if o is not None:
            entry["seconds"] = o.seconds
            if o.error:
                entry["error"] = o.error
        entries.append(entry)
    atomic_write_text(out / INDEX_FILE, json.dumps({"format": INDEX_FORMAT, **meta, "runs": entries}, indent=1))


def _check_index(out: Path) -> None:
    """Refuse a folder whose sweep.json is another kind of sweep (`subcircuit sweep` without a plan)."""
    path = out / INDEX_FILE
    if path.exists():
        try:
            fmt = json.loads(path.read_text()).get("format")
        except (OSError, ValueError, AttributeError):
            fmt = None
        if fmt != INDEX_FORMAT:
            raise UserError(f"output folder {str(out)!r} holds another kind of sweep ({path}); choose another --out")


def _run_local(runs, out, hook, done: Callable[[RunOutcome], None]) -> None:
    for run in runs:
        done(execute_run(run, out / run.name, hook))


def _run_ray(runs, out, hook, done: Callable[[RunOutcome], None], address: str | None, files: str,
             max_retries: int) -> None:
    try:
        import ray
    except ImportError:
        raise UserError("--backend ray needs Ray: pip install 'subcircuit[ray]'") from None
    started = False
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False) if address else \
                ray.init(include_dashboard=False, log_to_driver=False)
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise UserError(f"cannot connect to the Ray cluster at {address!r}: {_one_line(e)}") from None
        started = True
    try:
        remote = ray.remote(_ray_task)
        pending: dict[Any, PlannedRun] = {}
        for run in runs:
            folder = out / run.name
            if is_finished(run, folder):  # no task for a finished run
                done(RunOutcome(run.name, "skipped"))
                continue
            existing = ({str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
                        if files == "driver" and folder.exists() else {})
            ref = remote.options(**run.resources(), max_retries=max_retries, retry_exceptions=False).remote(
                run, str(out.resolve()), files, existing, hook)
            pending[ref] = run
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                run = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - retries exhausted (worker died) or a Ray error
                    outcome = RunOutcome(run.name, "failed", error=_one_line(e))
                if outcome.files:
                    for rel, data in outcome.files.items():
                        (out / run.name / rel).parent.mkdir(parents=True, exist_ok=True)
                        tmp = out / run.name / (rel + ".part")
                        tmp.write_bytes(data)
                        tmp.replace(out / run.name / rel)
                    outcome.files = {}
                done(outcome)
    finally:
        if started:
            ray.shutdown()


def run_plan(runs: list[PlannedRun], out: str | Path, backend: Backend = "local", address: str | None = None,
             files: Literal["shared", "driver"] = "shared", progress: RunProgress | None = None,
             hook: WorkerHook | None = None, max_retries: int = 3) -> PlanResult:
    """Make every run of a plan into `out` (see the module docstring). `address`: an existing Ray
    cluster (`ray start --head` prints it; `auto` finds the local one); without it a local Ray
    instance is started (and stopped at the end) unless Ray is already initialized in this
    process. `progress(ended, total, name)` is called on the driver as each run ends; `hook` in
    the worker on every progress step of a run (logging; tests use it to kill a worker)."""
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if files not in FILES:
        raise UserError(f"unknown files mode {files!r}; valid: {', '.join(FILES)}")
    if address and backend != "ray":
        raise UserError("--address is for --backend ray")
    if len({r.name for r in runs}) != len(runs):
        raise ValueError("the runs of a plan must have distinct names")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_index(out)
    t0 = time.perf_counter()
    outcomes: dict[str, RunOutcome] = {}
    meta = {"backend": backend, "files": files}
    _write_index(out, runs, outcomes, meta)

    def done(outcome: RunOutcome) -> None:
        outcomes[outcome.name] = outcome
        _write_index(out, runs, outcomes, meta)
        if progress is not None:
            progress(len(outcomes), len(runs), outcome.name)

    if backend == "local":
        _run_local(runs, out, hook, done)
    else:
        _run_ray(runs, out, hook, done, address, files, max_retries)
    ordered = {r.name: outcomes[r.name] for r in runs}
    return PlanResult(out, ordered, round(time.perf_counter() - t0, 3))


def write_summary(result: PlanResult, against: str | None = None) -> str:
    """The summary of a plan's runs (`evaluation.compare`'s table of the finished runs, then the
    failed runs with their errors), written to summary.md and summary.json in the sweep folder;
    returns the markdown."""
    from subcircuit.evaluation.compare import compare_runs

    folders = result.folders()
    evs, table, _ = compare_runs(folders, against, curves=False) if folders else ([], "(no finished runs)\n", [])
    prefix = f"{result.out}/"
    table = table.replace(prefix, "")
    counts = {s: sum(o.status == s for o in result.outcomes.values()) for s in ("done", "skipped", "failed")}
    md = (f"# Sweep: {len(result.outcomes)} runs ({counts['done']} made now, {counts['skipped']} finished "
          f"before, {counts['failed']} failed) in {result.seconds:.1f} s\n\n{table}")
    if result.failed:
        md += "\nFailed runs:\n\n" + "".join(f"- `{n}`: {e}\n" for n, e in result.failed.items())
    rows = [{**e.row(), "run": str(e.folder).removeprefix(prefix)} for e in evs]
    summary = {"runs": rows, "failed": result.failed, "seconds": result.seconds, **counts}
    atomic_write_text(result.out / "summary.md", md)
    atomic_write_text(result.out / "summary.json", json.dumps(summary, indent=1, default=str))
    return md
