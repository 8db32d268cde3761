"""Discovery methods, found by name in `METHODS` (see `base.register_method`).

Every method is `fn(problem, options, ctx) -> MethodResult` with its own frozen options
dataclass; `get_method(name)` gives its `MethodSpec` (function, options type, what it declares:
selects its circuit, resumable, uses gradients, checkpoint files). Score methods' circuits are
chosen by `selection.select_circuit` with `selection.SelectOptions`.
"""

from subcircuit.methods import acdc, attribution, baselines, edge_pruning  # noqa: F401  (registers)
from subcircuit.methods.base import (
    METHODS,
    Context,
    MethodResult,
    MethodSpec,
    OptionField,
    Problem,
    ProgressFn,
    build_options,
    get_method,
    make_problem,
    no_progress,
    option,
    option_fields,
    options_dict,
    register_method,
    run_method,
)
from subcircuit.methods.selection import SelectOptions, select_circuit

__all__ = ["METHODS", "Context", "MethodResult", "MethodSpec", "OptionField", "Problem", "ProgressFn",
           "SelectOptions", "build_options", "get_method", "make_problem", "no_progress", "option", "option_fields",
           "options_dict", "register_method", "run_method", "select_circuit"]
