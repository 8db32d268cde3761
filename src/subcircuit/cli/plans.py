"""`subcircuit sweep PLAN` / `--plan FILE` / `--backend ray`: the runs of a plan, on this machine or
a Ray cluster (`runs.plan`, `runs.backends`); a progress bar over runs (a plain line every ~30 s when
stderr is not a terminal), then the summary table
(`evaluation.compare`) and the failed runs with their one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from subcircuit.cli._output import err, is_tty, out, progress
from subcircuit.cli._progress import ProgressLine
from subcircuit.errors import UserError


def plan_of_flags(model: str, task: str, method: str, thresholds: list | None, sizes: list | None,
                  run: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The plan of a sweep given by flags (`--backend ray` without a plan file)."""
    from subcircuit.methods import get_method
    from subcircuit.runs.sweep import DEFAULT_THRESHOLDS, sweeps_thresholds

    by_threshold = sweeps_thresholds(get_method(method))
    if by_threshold and sizes:
        raise UserError(f"{method.upper()} sweeps thresholds (--thresholds), not sizes")
    if not by_threshold and thresholds:
        raise UserError(f"{method} sweeps sizes (--sizes), not thresholds")
    if not by_threshold and not sizes:
        raise UserError(f"--backend ray: give the sizes of {method}'s runs (--sizes 10,50,...)")
    plan: dict[str, Any] = {"models": model, "tasks": task, "methods": method,
                            **{k: v for k, v in run.items() if v is not None}}
    if by_threshold:
        plan["thresholds"] = list(thresholds or DEFAULT_THRESHOLDS)
    else:
        plan["sizes"] = list(sizes or [])
    if given:
        plan["options"] = {method: given}
    return plan


def run_plan_command(runs: list, out_dir: Path, backend: str, address: str | None, files: str) -> int:
    """Run the plan's runs with a progress bar; print the summary; exit code 1 if a run failed."""
    from subcircuit.runs.backends import run_plan, write_summary

    with progress() as bar:
        task = bar.add_task(f"{len(runs)} runs ({backend})", total=len(runs))
        line = None if is_tty() else ProgressLine("sweep", is_receiver=lambda what: False)

        def advance(done: int, total: int, name: str) -> None:
            bar.update(task, completed=done, description=name)
            if line is not None:  # a batch job's log: a plain line every ~30 s
                line(done, total, "runs ended")

        res = run_plan(runs, out_dir, backend=backend, address=address, files=files, progress=advance)  # type: ignore[arg-type]
    md = write_summary(res)
    o = out()
    o.print(md, markup=False, highlight=False)
    o.print(f"wrote {out_dir / 'sweep.json'} and {out_dir / 'summary.md'}", markup=False)
    if res.failed:
        e = err()
        for name, error in res.failed.items():
            e.print(f"failed: {name}: {error}", markup=False, highlight=False)
        return 1
    return 0
