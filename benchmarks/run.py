"""`make bench`: run every benchmark in benchmarks/bench_*.py and write benchmarks/RESULTS.md.

A benchmark module defines `CASES: dict[str, callable]` (each case runs in its own subprocess,
so its peak memory is its own) or a single `run() -> list[dict]`. Each returns rows:
{"name": ..., "median_s": ..., and any other columns}; the harness adds `peak_mb` (the
subprocess's maximum resident set size). Times are medians of repeated runs measured side by
side in one process; absolute numbers from shared machines are noisy, ratios less so.

    python benchmarks/run.py                 # everything -> RESULTS.md
    python benchmarks/run.py --only acdc     # modules/cases whose name contains 'acdc'
    python benchmarks/run.py --list
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _modules() -> list[Path]:
    return sorted(HERE.glob("bench_*.py"))


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(HERE))
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def _cases(path: Path) -> list[str]:
    mod = _load(path)
    return list(getattr(mod, "CASES", {})) or ["run"]


def _child(module: str, case: str) -> None:
    """Run one case in this process; print its rows as JSON on the last line."""
    mod = _load(HERE / f"{module}.py")
    rows = mod.CASES[case]() if case != "run" else mod.run()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for r in rows:
        r.setdefault("peak_mb", round(peak))
    print("\n" + json.dumps(rows))


def _machine() -> dict[str, str]:
    import torch

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "torch threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }


def _table(rows: list[dict]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |")
    return out


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _split(lines: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """A RESULTS.md as (lines before the first section, {"### heading": section lines})."""
    head: list[str] = []
    secs: dict[str, list[str]] = {}
    cur: list[str] | None = None
    for line in lines:
        if line.startswith("### "):
            cur = secs.setdefault(line.split(" (")[0], [])
        (head if cur is None else cur).append(line)
    return head, secs


def _merge(old: str, started: str, load: float, new: list[str]) -> tuple[list[str], list[str]]:
    head, secs = _split(old.rstrip("\n").splitlines())
    _, fresh = _split(new)
    for k, v in fresh.items():
        v[0] = f"{k} (run separately on {started}, load average {load:.1f})"
        secs[k] = v
    return head, [line for v in secs.values() for line in v]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="run modules/cases whose name contains one of these (comma-separated)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    ap.add_argument("--child", nargs=2, metavar=("MODULE", "CASE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(*args.child)
        return
    wanted = args.only.split(",")
    plan = [(p.stem, c) for p in _modules() for c in _cases(p) if any(w in f"{p.stem}:{c}" for w in wanted)]
    if args.list:
        print("\n".join(f"{m}:{c}" for m, c in plan))
        return
    sections: list[str] = []
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = os.getloadavg()
    for module, case in plan:
        print(f"== {module}:{case}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--child", module, case], capture_output=True, text=True)
        took = time.perf_counter() - t0
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            sections += [f"### {module}: {case}", "", f"FAILED (exit {proc.returncode}); see stderr", ""]
            continue
        rows = json.loads(proc.stdout.strip().splitlines()[-1])
        doc = (_load(HERE / f"{module}.py").__doc__ or "").strip().splitlines()
        sections += [f"### {module}: {case}", "", doc[0] if doc else "", ""]
        sections += _table(rows) + ["", f"(case wall time {took:.0f} s)", ""]
        print("\n".join(_table(rows)), file=sys.stderr)
    head = ["# Benchmark results", "", f"Written by `make bench` (benchmarks/run.py) on {started}.", ""]
    head += [f"- {k}: {v}" for k, v in _machine().items()]
    head += [f"- load average before/after: {load_before[0]:.1f} / {os.getloadavg()[0]:.1f} "
             "(other work on the machine inflates absolute times; ratios are measured side by side)", ""]
    out = Path(args.out)
    if args.only and out.exists():  # a partial run replaces its own sections and keeps the rest
        head, sections = _merge(out.read_text(), started, load_before[0], sections)
    out.write_text("\n".join(head + sections) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
