"""Discovery methods, found by name in `METHODS` (see `base.register_method`)."""

from subcircuit.methods import acdc, attribution, baselines, edge_pruning  # noqa: F401  (registers)
from subcircuit.methods.base import (
    METHODS,
    MethodResult,
    MethodSpec,
    Problem,
    get_method,
    make_problem,
    register_method,
)

__all__ = ["METHODS", "MethodResult", "MethodSpec", "Problem", "get_method", "make_problem", "register_method"]
