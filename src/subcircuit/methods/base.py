"""What every discovery method receives and returns, and the registry that finds them by name.

A method is a small function `fn(problem: Problem, options, ctx: Context) -> MethodResult`:

- `Problem` bundles the model, the graph, the task, the metric and the ablation, with the one
  patching primitive ready to run (`problem.patcher`); `problem.loss(masks)` evaluates the
  metric (lower is better) for a batch of mask configurations without autograd,
  `problem.loss_with_grad(masks)` on the autograd engine.
- `options` is an instance of the method's own frozen options dataclass (fields made with
  `option(default, help)`; their names are the CLI flags with `_`). The CLI, `discover` and
  `sweep` build it from the dataclass (`option_fields`, `build_options`), so a new option is one
  field in one place. Bad values are refused in `__post_init__` with a one-line `UserError`
  naming the flag and what is valid.
- `Context` is what the run hands a method besides the problem and its options: progress, the
  run's seed, the folder for the method's checkpoint files (with the header identifying the
  run and whether to resume from them) and a cache shared by the runs of one session.

Methods return per-edge scores (bigger = more important) and, when they select a circuit
themselves (`MethodSpec.selects_circuit`: ACDC, Edge Pruning), which edges are in it; for the
others the run chooses the circuit from the scores (`methods.selection.select_circuit`).
What else differs between methods is declared on the `MethodSpec` (resumable, uses gradients,
checkpoint files), never found by comparing method names.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import torch
from torch import Tensor

from subcircuit.errors import UserError, unknown
from subcircuit.graph import Graph
from subcircuit.models.transformer import Transformer
from subcircuit.patching import Ablation, Patcher, make_ablation
from subcircuit.tasks.base import Task
from subcircuit.tasks.metrics import Metric

ProgressFn = Callable[[int, int, str], None]  # (done, total, what) -> None


def no_progress(done: int, total: int, what: str) -> None:
    """The progress callback that reports nothing."""
    return None


def _for_metric(logits: Tensor) -> Tensor:
    """Logits in the metric's dtype: fp32, or fp64 when the model runs in fp64."""
    return logits if logits.dtype == torch.float64 else logits.float()


@dataclass(frozen=True, eq=False)
class Problem:
    """A model, its graph, a task, a metric and an ablation: everything a method needs."""

    model: Transformer
    graph: Graph
    task: Task
    metric: Metric
    ablation: Ablation
    base_logits: Tensor  # [b v] the full model's logits at the task positions

    @property
    def patcher(self) -> Patcher:
        return Patcher(self.model, self.graph, self.task.clean, self.ablation, self.task.positions,
                       spans=self.task.span_ids)

    def loss(self, masks: Tensor, start=None, memo=None) -> Tensor:
        """masks [c receiver sender] (or [receiver sender]) -> metric loss [c] (lower is better),
        without autograd. `start`, `memo`: see `Patcher.logits`."""
        logits = self.patcher.logits(masks, start=start, memo=memo)
        return self.metric.loss(_for_metric(logits), self.task, _for_metric(self.base_logits))

    def loss_with_grad(self, masks: Tensor) -> Tensor:
        """Same as `loss`, differentiable (the autograd engine, `Patcher.logits_with_grad`)."""
        logits = self.patcher.logits_with_grad(masks)
        return self.metric.loss(_for_metric(logits), self.task, _for_metric(self.base_logits))

    def value(self, masks: Tensor) -> Tensor:
        """The metric's own value [c] (its own sign) for mask configurations."""
        logits = self.patcher.logits(masks)
        return self.metric(_for_metric(logits), self.task, _for_metric(self.base_logits))


def make_problem(model: Transformer, graph: Graph, task: Task, metric: Metric, ablation: str = "corrupted") -> Problem:
    """Build a `Problem`: the ablation from the task's corrupted prompts, the full model's logits."""
    task = task.to(model.device)
    abl = make_ablation(model, graph, ablation, task.clean, task.corrupted)
    with torch.no_grad():
        base = model(task.clean)[torch.arange(task.n, device=model.device), task.positions]
    return Problem(model, graph, task, metric, abl, base)


@dataclass(frozen=True, eq=False)
class MethodResult:
    """scores [n_edges] in `graph.edges` order (bigger = more important); in_circuit [n_edges]
    bool when the method chose the circuit itself (else None: the run selects from the scores).
    `params` go to circuit.json's "params"; numeric and list `info` entries to its "results"."""

    scores: Tensor
    in_circuit: Tensor | None = None
    params: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Context:
    """What a run hands a method besides the problem and its options."""

    progress: ProgressFn = no_progress
    seed: int = 0  # the run's --seed (noise of stochastic methods)
    folder: Path | None = None  # run folder for the method's checkpoint files (None: none kept)
    header: Mapping[str, Any] = field(default_factory=dict)  # identifies the run; another checkpoint is refused
    resume: bool = False  # continue from the checkpoint in `folder` if present
    cache: dict[Any, Any] = field(default_factory=dict)  # shared by the runs of one session: reusable work
    memory_budget: int | None = None  # bytes for batched work, from the run's memory model (None: the method's default)


# ------------------------------------------------------------------------------ options


def option(default: Any, help: str, *, flag: str | None = None) -> Any:
    """A field of a method's options dataclass: its default, its help text and (when it is not
    `--` + the name with `-`) its command-line flag. Allowed types: int, float, bool, str,
    Literal[...] and `X | None`."""
    return field(default=default, metadata={"help": help, "flag": flag})


@dataclass(frozen=True)
class OptionField:
    """One option as the CLI and the runs see it. `type` is the scalar type (int, float, bool,
    str), `choices` the values of a Literal (else None), `optional` whether None is allowed."""

    name: str
    flag: str
    type: type
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    optional: bool = False


def _scalar(hint: Any) -> tuple[type, tuple[Any, ...] | None, bool]:
    """(scalar type, Literal choices or None, optional) of an option field's type hint."""
    optional = False
    if get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        optional = len(args) < len(get_args(hint))
        if len(args) != 1:
            raise TypeError(f"option type {hint!r} is not supported")
        hint = args[0]
    if get_origin(hint) is Literal:
        choices = get_args(hint)
        return type(choices[0]), choices, optional
    if hint in (int, float, bool, str):
        return hint, None, optional
    raise TypeError(f"option type {hint!r} is not supported")


def option_fields(options_type: type) -> list[OptionField]:
    """The options of a method's options dataclass, in field order."""
    return list(_option_fields(options_type))


@functools.cache
def _option_fields(options_type: type) -> tuple[OptionField, ...]:
    hints = typing.get_type_hints(options_type)
    out = []
    for f in dataclasses.fields(options_type):
        kind, choices, optional = _scalar(hints[f.name])
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        out.append(OptionField(f.name, flag, kind, f.default, f.metadata.get("help", ""), choices, optional))
    return tuple(out)


def _flags(options_types: tuple[type, ...]) -> list[str]:
    return [f.flag for t in options_types for f in option_fields(t)]


def refuse_unknown(names, options_types: tuple[type, ...], method: str) -> None:
    """A one-line UserError for the first name that is not a field of any of `options_types`."""
    known = {f.name: f.flag for t in options_types for f in option_fields(t)}
    for name in names:
        if name not in known:
            elsewhere = {f.name: f.flag for s in METHODS.values() for f in option_fields(s.options)}
            flag = elsewhere.get(name, "--" + str(name).replace("_", "-"))
            flags = _flags(options_types)
            listed = f"its options: {', '.join(flags)}" if flags else "it has no options"
            raise UserError(f"{flag} is not an option of {method} ({listed})")


def build_options(options_type: type, values: Mapping[str, Any], method: str) -> Any:
    """An instance of `options_type` from `values` keyed by field name (the others at their
    defaults). A name that is not an option -> UserError naming the flag and the method's
    flags; a bad value -> the UserError of the dataclass's validation."""
    refuse_unknown(values, (options_type,), method)
    return options_type(**values)


def options_dict(opts: Any) -> dict[str, Any]:
    """The options as a JSON-safe dict (field name -> value)."""
    return dataclasses.asdict(opts)


class Options:
    """Base of the options dataclasses: checks every field's type and choices, then `check()`.

    Subclasses are `@dataclass(frozen=True)` with fields made by `option()`; they override
    `check()` for ranges and combinations (one-line UserErrors naming the flag)."""

    def __post_init__(self) -> None:
        for f in option_fields(type(self)):
            v = getattr(self, f.name)
            if v is None and f.optional:
                continue
            ok = (isinstance(v, bool) if f.type is bool
                  else isinstance(v, int | float) and not isinstance(v, bool) if f.type is float
                  else isinstance(v, int) and not isinstance(v, bool) if f.type is int
                  else isinstance(v, f.type))
            if f.choices is not None and v not in f.choices:
                ok = False
            if not ok:
                what = (f"one of {', '.join(map(str, f.choices))}" if f.choices is not None
                        else f"{'an' if f.type is int else 'a'} {f.type.__name__}")
                raise UserError(f"{f.flag} {v!r} is invalid; expected {what}")
            if f.type is float and isinstance(v, int):
                object.__setattr__(self, f.name, float(v))
        self.check()

    def check(self) -> None:
        """Ranges and combinations of values (override)."""


def at_least(flag: str, value: int | float | None, low: int | float) -> None:
    """A UserError unless `value` (when given) is >= low."""
    if value is not None and not value >= low:
        raise UserError(f"{flag} {value} is invalid; expected at least {low}")


def non_negative(flag: str, value: float | None) -> None:
    """A UserError unless `value` (when given) is a number >= 0 (not NaN)."""
    if value is not None and (math.isnan(value) or value < 0):
        raise UserError(f"{flag} {value!r} is invalid; expected a number >= 0")


# ------------------------------------------------------------------------------ registry


MethodFn = Callable[[Problem, Any, Context], MethodResult]


@dataclass(frozen=True)
class MethodSpec:
    """A registered method and what the run needs to know about it."""

    name: str
    fn: MethodFn
    options: type  # the method's frozen options dataclass
    description: str
    selects_circuit: bool = False  # decides membership itself (acdc, edge-pruning); else the run selects
    resumable: bool = False  # keeps checkpoint files in ctx.folder and resumes from them
    uses_gradients: bool = False  # runs the autograd engine (memory estimate)
    checkpoint_files: tuple[str, ...] = ()  # the files it keeps in ctx.folder
    # whether the scores rank the edges (curves, ROC over the ranking); False for ACDC, whose
    # score is the change measured against the graph of the moment (0 for untried edges), so its
    # circuits are compared one per threshold instead
    ranks_edges: bool = True


METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, description: str, options: type, *, selects_circuit: bool = False,
                    resumable: bool = False, uses_gradients: bool = False, checkpoint_files: tuple[str, ...] = (),
                    ranks_edges: bool = True):
    """Decorator: `@register_method("eap", "...", EAPOptions, uses_gradients=True)` adds a method."""

    def deco(fn: MethodFn) -> MethodFn:
        option_fields(options)  # the field types must be ones the CLI can build
        METHODS[name] = MethodSpec(name, fn, options, description, selects_circuit, resumable, uses_gradients,
                                   tuple(checkpoint_files), ranks_edges)
        return fn

    return deco


def get_method(name: str) -> MethodSpec:
    if name not in METHODS:
        raise unknown("method", name, METHODS)
    return METHODS[name]


def run_method(name: str, problem: Problem, ctx: Context | None = None, **values: Any) -> MethodResult:
    """Run a registered method with options given by field name (the others at their defaults):
    `run_method("eap-ig", problem, ig_steps=3)`. For tests, benchmarks and scripts."""
    spec = get_method(name)
    return spec.fn(problem, build_options(spec.options, values, name), ctx or Context())
