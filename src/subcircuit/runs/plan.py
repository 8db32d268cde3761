"""Plans: a grid of runs read from a TOML or YAML file, each run with a stable folder name.

A plan file lists one or more grids. Keys at the top level are defaults for every `[[grid]]`
table (a file without `[[grid]]` tables is one grid); each grid is the product of its lists:

```toml
seeds = [0]                 # defaults for every grid below
n_examples = 16

[[grid]]
models = ["toy-induction-2l"]
tasks = ["induction"]
methods = ["acdc", "eap"]
thresholds = [0.01, 0.1]    # methods that select at a threshold (ACDC): one run per τ
sizes = [10, 30]            # every other method: one run per circuit size (top-k edges)

[[grid]]
models = ["tracr-reverse"]
tasks = ["tracr-reverse"]
methods = ["acdc", "eap-ig"]
[grid.options.eap-ig]       # a method's own options (a list is one more axis of the grid)
ig_steps = [3, 5]
```

Keys (singular or plural, a scalar or a list): `models`, `tasks`, `methods`, `seeds`,
`ablations`, `metrics`, `granularities`, `n_examples`, `thresholds`, `sizes`, `device`,
`options` (a table per method), and the run resources `cpus` (CPUs per run, default 1) and
`gpus` (GPUs per run, default 1 with `device = "cuda"`, else 0). Everything is checked before any
work: an unknown key, method, model, task, metric, ablation, granularity or method option is
refused with one line naming it (`read_plan`).

Every run is a `PlannedRun` (model, task, `DiscoverOptions`) whose folder name is readable and
stable: the model, task, method, τ or size and seed, then 8 hex digits of a hash of the run's
header (`run_header`: every option but the device), e.g.
`toy-induction-2l_induction_acdc_tau-0.01_s0_1a2b3c4d`. The same options give the same name on
every machine and in every rerun, so a rerun finds its finished runs (`runs.backends`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from subcircuit.errors import UserError, unknown
from subcircuit.runs.options import DiscoverOptions, run_header

__all__ = ["PLAN_KEYS", "PlannedRun", "plan_from_dict", "read_plan", "run_name"]

# plan key -> its singular form (the DiscoverOptions field or the run's axis)
PLAN_KEYS = {"models": "model", "tasks": "task", "methods": "method", "seeds": "seed", "ablations": "ablation",
             "metrics": "metric", "granularities": "granularity", "n_examples": "n_examples",
             "thresholds": "threshold", "sizes": "size", "device": "device", "options": "options",
             "cpus": "cpus", "gpus": "gpus"}
_SINGULAR = {v: k for k, v in PLAN_KEYS.items()}
_SCALAR_ONLY = ("device", "cpus", "gpus", "options")


@dataclass(frozen=True)
class PlannedRun:
    """One run of a plan: its folder `name`, the model and task as given, the run's options and
    the resources it asks a Ray cluster for (`cpus`, `gpus`)."""

    name: str
    model: str
    task: str
    options: DiscoverOptions
    cpus: float = 1.0
    gpus: float = 0.0

    @property
    def header(self) -> dict[str, Any]:
        """What identifies the run (`runs.options.run_header`): a finished run with another header
        is not this run."""
        return run_header(self.options, self.model, self.task)

    def resources(self) -> dict[str, float]:
        """The Ray resources of the run's task: `num_gpus` where it runs on CUDA, else `num_cpus`."""
        if self.gpus:
            return {"num_gpus": self.gpus, "num_cpus": 0}
        return {"num_cpus": self.cpus}

    def to_dict(self) -> dict[str, Any]:
        """The run's entry in sweep.json (without its status)."""
        return {"name": self.name, "model": self.model, "task": self.task, "method": self.options.method,
                "options": self.options.flat()}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", Path(text).name if "/" in text or "\\" in text else text).strip("-.")


def run_name(model: str, task: str, options: DiscoverOptions) -> str:
    """The stable folder name of a run (see the module docstring)."""
    header = run_header(options, model, task)
    digest = hashlib.sha256(json.dumps(header, sort_keys=True, default=str).encode()).hexdigest()[:8]
    params = []
    if options.select is None:
        threshold = getattr(options.method_options, "threshold", None)
        edges = getattr(options.method_options, "edges", None)
    else:
        threshold, edges = options.select.threshold, options.select.edges
    if threshold is not None:
        params.append(f"tau-{threshold:g}")
    if edges is not None:
        params.append(f"edges-{edges}")
    parts = [_slug(model), _slug(task), options.method, *params, f"s{options.seed}"]
    return "_".join([*parts, digest])


def _as_list(where: str, key: str, value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        if not value:
            raise UserError(f"{where}: {key} is an empty list")
        return list(value)
    return [value]


def _normalize(where: str, table: Mapping[str, Any]) -> dict[str, Any]:
    """Plural keys, each a list (options: a table of tables); unknown keys refused."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        plural = key if key in PLAN_KEYS else _SINGULAR.get(key)
        if plural is None:
            raise unknown(f"plan key in {where}", key, PLAN_KEYS)
        if plural in out:
            raise UserError(f"{where}: {key!r} given twice (as {plural!r} and {PLAN_KEYS[plural]!r})")
        if plural == "options":
            if not isinstance(value, Mapping) or not all(isinstance(v, Mapping) for v in value.values()):
                raise UserError(f"{where}: options must be a table per method, e.g. [grid.options.eap-ig]")
            out[plural] = {m: dict(v) for m, v in value.items()}
        elif plural in _SCALAR_ONLY:
            if isinstance(value, list | tuple | Mapping):
                raise UserError(f"{where}: {key} takes one value, not {value!r}")
            out[plural] = value
        else:
            out[plural] = _as_list(where, key, value)
    return out


def _check_model(where: str, model: Any) -> str:
    from subcircuit.models import MODELS

    if not isinstance(model, str):
        raise UserError(f"{where}: model {model!r} is not a name")
    p = Path(model).expanduser()
    if model in MODELS or p.is_dir() or ("/" in model and not model.startswith((".", "/", "~")) and not p.exists()):
        return model
    if p.exists():
        raise UserError(f"{where}: model path {model!r} is a file; expected a model folder or a short name")
    raise unknown(f"model in {where}", model, MODELS)


def _check_task(where: str, task: Any) -> str:
    from subcircuit.tasks import TASKS, is_task_file

    if not isinstance(task, str):
        raise UserError(f"{where}: task {task!r} is not a name")
    if task in TASKS:
        return task
    if is_task_file(task):
        if not Path(task).is_file():
            raise UserError(f"{where}: task file {task!r} does not exist")
        return task
    raise unknown(f"task in {where}", task, TASKS)


def _check_run_fields(where: str, grid: dict[str, Any]) -> None:
    from subcircuit.graph import GRANULARITIES
    from subcircuit.patching import ABLATIONS
    from subcircuit.tasks import METRICS

    for key, valid in (("ablations", ABLATIONS), ("granularities", GRANULARITIES), ("metrics", METRICS)):
        for v in grid.get(key, ()):
            if v is not None and v not in valid:
                raise unknown(f"{PLAN_KEYS[key]} in {where}", str(v), valid)
    for key in ("seeds", "n_examples", "sizes"):
        for v in grid.get(key, ()):
            if isinstance(v, bool) or not isinstance(v, int):
                raise UserError(f"{where}: {PLAN_KEYS[key]} {v!r} is not an integer")
    for v in grid.get("thresholds", ()):
        if isinstance(v, bool) or not isinstance(v, int | float) or v != v or v < 0:
            raise UserError(f"{where}: threshold {v!r} is invalid; expected a number >= 0")
    device = grid.get("device", "cpu")
    if not isinstance(device, str) or not (device == "cpu" or device.startswith("cuda")):
        raise UserError(f"{where}: device {device!r} is invalid; expected cpu or cuda")
    for key in ("cpus", "gpus"):
        v = grid.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or v < 0):
            raise UserError(f"{where}: {key} {v!r} is invalid; expected a number >= 0")


def _method_axes(where: str, method: str, options: dict[str, Any]) -> list[dict[str, Any]]:
    """The method's own option values as a list of dicts (the product of its listed values)."""
    keys = list(options)
    values = [_as_list(f"{where} options.{method}", k, options[k]) for k in keys]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]


def _expand(where: str, grid: dict[str, Any]) -> list[PlannedRun]:
    from subcircuit.methods import get_method
    from subcircuit.runs.sweep import sweeps_thresholds

    for key in ("models", "tasks", "methods"):
        if key not in grid:
            raise UserError(f"{where}: no {key} (a grid needs models, tasks and methods)")
    models = [_check_model(where, m) for m in grid["models"]]
    tasks = [_check_task(where, t) for t in grid["tasks"]]
    from subcircuit.methods import METHODS

    methods = grid["methods"]
    for m in methods:
        if m not in METHODS:
            raise unknown(f"method in {where}", str(m), METHODS)
    _check_run_fields(where, grid)
    per_method = grid.get("options", {})
    for m in per_method:
        if m not in methods:
            raise UserError(f"{where}: options for {m!r}, which is not one of the grid's methods {methods}")
    device = grid.get("device", "cpu")
    cpus = float(grid.get("cpus", 1))
    gpus = float(grid.get("gpus", 1 if device.startswith("cuda") else 0))
    kinds = {sweeps_thresholds(get_method(m)) for m in methods}
    if grid.get("thresholds") and True not in kinds:
        raise UserError(f"{where}: thresholds are for methods that select at a threshold (acdc); "
                        f"{', '.join(methods)} take sizes")
    if grid.get("sizes") and False not in kinds:
        raise UserError(f"{where}: sizes are for methods that select their top-k edges; {', '.join(methods)} "
                        "take thresholds")
    runs: list[PlannedRun] = []
    axes = [grid.get(k, [None]) for k in ("seeds", "ablations", "metrics", "granularities", "n_examples")]
    for model, task, method in itertools.product(models, tasks, methods):
        spec = get_method(method)
        by_threshold = sweeps_thresholds(spec)
        points: list[dict[str, Any]] = (
            [{"threshold": float(t)} for t in grid.get("thresholds", ())] if by_threshold
            else [{"edges": int(k)} for k in grid.get("sizes", ())]) or [{}]
        for own in _method_axes(where, method, per_method.get(method, {})):
            for point in points:
                for seed, ablation, metric, granularity, n in itertools.product(*axes):
                    values = {k: v for k, v in (("seed", seed), ("ablation", ablation), ("metric", metric),
                                                ("granularity", granularity), ("n_examples", n)) if v is not None}
                    try:
                        opts = DiscoverOptions.build(method, device=device, **values, **own, **point)
                    except UserError as e:
                        raise UserError(f"{where}: {e}") from None
                    runs.append(PlannedRun(run_name(model, task, opts), model, task, opts, cpus, gpus))
    return runs


def plan_from_dict(data: Mapping[str, Any], source: str = "plan") -> list[PlannedRun]:
    """The runs of a plan given as a dict (a parsed plan file; see the module docstring), in the
    order of the file; a run listed twice is kept once."""
    if not isinstance(data, Mapping):
        raise UserError(f"{source}: a plan is a table of keys, not {type(data).__name__}")
    data = dict(data)
    grids = data.pop("grid", None)
    defaults = _normalize(source, data)
    if grids is None:
        tables: list[Any] = [{}]
    elif isinstance(grids, list) and grids and all(isinstance(g, Mapping) for g in grids):
        tables = grids
    else:
        raise UserError(f"{source}: grid must be a list of tables ([[grid]] in TOML, a list in YAML)")
    runs: dict[str, PlannedRun] = {}
    for i, table in enumerate(tables):
        where = source if grids is None else f"{source} grid {i + 1}"
        grid = {**defaults, **_normalize(where, table)}
        if "options" in defaults and "options" in _normalize(where, table):
            grid["options"] = {**defaults["options"], **_normalize(where, table)["options"]}
        for run in _expand(where, grid):
            runs.setdefault(run.name, run)
    return list(runs.values())


def read_plan(path: str | Path) -> list[PlannedRun]:
    """The runs of a plan file (`.toml`, `.yaml` or `.yml`); every error is one line naming the bad value."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"plan file {str(path)!r} does not exist")
    text = path.read_text()
    if path.suffix == ".toml":
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise UserError(f"{path}: not valid TOML ({e})") from None
    elif path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise UserError(f"{path}: reading YAML plans needs pyyaml (pip install pyyaml), or write TOML") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise UserError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    else:
        raise UserError(f"plan file {str(path)!r}: expected .toml, .yaml or .yml")
    return plan_from_dict(data or {}, path.name)
