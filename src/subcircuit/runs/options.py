"""The options of one run: run-level fields, the method's own options, and how a score method's
circuit is chosen.

A run is (model, task, `DiscoverOptions`):

- run-level fields, the same for every method: the method's name, the metric, the ablation, the
  graph's granularity, the prompts (`n_examples`, `seed`), the device and `force` (run even when
  the memory estimate exceeds the free memory), the compute `dtype` (None is resolved at once:
  float32 on CPU, bfloat16 on CUDA, so circuit.json and checkpoint headers name it) and
  `offload` ("cpu": layers that do not fit on the GPUs stay in host memory);
  the memory estimate exceeds the free memory), and `n_eval`, the held-out evaluation prompts
  (`tasks.split`; it does not change the circuit, so it is not in the run's header);
- `method_options`: an instance of the method's own frozen options dataclass (its
  `MethodSpec.options`; `methods.base.option` fields), at its defaults when not given;
- `select`: for a score method (`MethodSpec.selects_circuit` False), how the run chooses its
  circuit from the scores (`methods.selection.SelectOptions`: `--edges`, `--threshold`,
  `--sparsity`, `--selection`, `--prune`); None for a method that selects its circuit itself.

`DiscoverOptions.build(method, **flat)` makes one from flat names, as the command line and
scripts give them (`build("eap-ig", ig_steps=3, edges=50)`): each name goes to the run, to the
method's options or to the selection; a name the method does not take is refused with one line
naming the flag and the method's options. `flat()` is the inverse: every field by name, which is
what circuit.json records as "options" (so `build(**circuit.options)` rebuilds the run) and,
without the device and `force`, what identifies a run in its checkpoint files (`run_header`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from subcircuit.errors import UserError, unknown
from subcircuit.methods import MethodSpec, SelectOptions, get_method, option_fields, options_dict
from subcircuit.methods.base import refuse_unknown
from subcircuit.models import dtype_name, resolve_dtype
from subcircuit.patching import ABLATIONS

__all__ = ["RUN_FIELDS", "DiscoverOptions", "run_header"]

# the run-level fields, in the order of `flat()`
RUN_FIELDS = ("method", "metric", "ablation", "granularity", "n_examples", "seed", "device", "force", "dtype",
              "offload", "positions", "n_eval")
POSITIONS = ("spans",)  # --positions: a position-aware graph with an edge per prompt span
# run-level fields that do not change the result (left out of a run's header)
NOT_IN_HEADER = ("device", "force", "offload", "n_eval")


def _device_kind(device: str) -> str:
    return "cuda" if str(device).startswith("cuda") else "cpu"


def _names(options_type: type) -> list[str]:
    return [f.name for f in option_fields(options_type)]


@dataclass(frozen=True)
class DiscoverOptions:
    """Options of one discovery run (see the module docstring). Prefer `DiscoverOptions.build`."""

    method: str = "acdc"
    metric: str | None = None  # default: the task's default metric (kl for most)
    ablation: str = "corrupted"
    granularity: str = "heads-qkv"
    n_examples: int | None = None
    seed: int = 0
    device: str = "cpu"
    force: bool = False  # run even if the memory estimate exceeds the free memory (`--force`)
    dtype: str | None = None  # compute dtype (`--dtype`); None: float32 on CPU, bfloat16 on CUDA (resolved here)
    offload: str | None = None  # "cpu": layers that do not fit on the GPUs stay in host memory (`--offload cpu`)
    positions: str | None = None  # "spans": the position-aware graph (`subcircuit.positional`); None: plain
    n_eval: int | None = None  # held-out prompts (`--n-eval`; None: tasks.split.DEFAULT_N_EVAL; 0: none)
    method_options: Any = None  # an instance of the method's options dataclass (None: its defaults)
    select: SelectOptions | None = None  # score methods only (None: the defaults)

    def __post_init__(self) -> None:
        spec = get_method(self.method)
        object.__setattr__(self, "dtype", dtype_name(resolve_dtype(self.dtype, _device_kind(self.device))))
        if self.offload not in (None, "cpu"):
            raise UserError(f"--offload {self.offload!r} is not supported; valid: cpu")
        if self.ablation not in ABLATIONS:
            raise unknown("ablation", self.ablation, ABLATIONS)
        if self.positions is not None and self.positions not in POSITIONS:
            raise unknown("positions", self.positions, POSITIONS)
        if self.n_examples is not None and (isinstance(self.n_examples, bool) or not isinstance(self.n_examples, int)
                                            or self.n_examples < 1):
            raise UserError(f"--n-examples {self.n_examples} is invalid; expected at least 1")
        if self.n_eval is not None and (isinstance(self.n_eval, bool) or not isinstance(self.n_eval, int)
                                        or self.n_eval < 0):
            raise UserError(f"--n-eval {self.n_eval} is invalid; expected 0 or more")
        if self.method_options is None:
            object.__setattr__(self, "method_options", spec.options())
        elif type(self.method_options) is not spec.options:
            raise TypeError(f"method_options of {self.method} must be {spec.options.__name__}, "
                            f"not {type(self.method_options).__name__}")
        if spec.selects_circuit:
            if self.select is not None:
                raise UserError(f"{self.method} selects its circuit itself; it takes no selection options")
        elif self.select is None:
            object.__setattr__(self, "select", SelectOptions())
        elif not isinstance(self.select, SelectOptions):
            raise TypeError(f"select must be SelectOptions, not {type(self.select).__name__}")

    @property
    def spec(self) -> MethodSpec:
        """The registered method."""
        return get_method(self.method)

    @classmethod
    def build(cls, method: str = "acdc", **values: Any) -> DiscoverOptions:
        """Options from flat names: run-level fields, the method's option fields and, for a score
        method, the `SelectOptions` fields. A name the method does not take -> a one-line
        UserError naming its flag and the method's options; a bad value -> the UserError of the
        options' validation."""
        spec = get_method(method)
        run = {k: values.pop(k) for k in RUN_FIELDS[1:] if k in values}
        own = _names(spec.options)
        select_names = [] if spec.selects_circuit else _names(SelectOptions)
        both = set(own) & set(select_names)
        if both:  # a registry bug: the name would be ambiguous
            raise TypeError(f"options {sorted(both)} of {method} are also selection options")
        types = (spec.options,) if spec.selects_circuit else (spec.options, SelectOptions)
        refuse_unknown(values, types, method)
        method_options = spec.options(**{k: v for k, v in values.items() if k in own})
        select = None if spec.selects_circuit else SelectOptions(**{k: v for k, v in values.items()
                                                                    if k in select_names})
        return cls(method=method, **run, method_options=method_options, select=select)

    def flat(self) -> dict[str, Any]:
        """Every field by name: the run-level ones, the method's options, the selection's
        (circuit.json's "options"; `build(**flat())` gives these options back)."""
        out = {k: getattr(self, k) for k in RUN_FIELDS}
        out.update(options_dict(self.method_options))
        if self.select is not None:
            out.update(options_dict(self.select))
        return out

    def updated(self, **values: Any) -> DiscoverOptions:
        """These options with some fields (flat names, as in `build`) replaced."""
        return DiscoverOptions.build(**{**self.flat(), **values})

    def given(self) -> dict[str, Any]:
        """The method and selection fields that are not at their defaults (flat names)."""
        out = {}
        for opts in (self.method_options, self.select):
            if opts is not None:
                out.update({f.name: getattr(opts, f.name) for f in dataclasses.fields(opts)
                            if getattr(opts, f.name) != f.default})
        return out


def run_header(options: DiscoverOptions, model: str, task: str) -> dict[str, Any]:
    """What identifies a run in its checkpoint files (ACDC's trace, a training checkpoint): every
    option but the device and `force`, the model and the task. A checkpoint whose header differs
    is refused on resume."""
    header = {k: v for k, v in options.flat().items() if k not in NOT_IN_HEADER}
    header.update(model=model, task=task)
    return header
