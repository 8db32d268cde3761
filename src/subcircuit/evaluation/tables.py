"""Numbers in tables: how the evaluation, comparison and sweep tables print a value."""

from __future__ import annotations

import math
from typing import Any


def fmt(x: Any, digits: int = 4) -> str:
    """A table cell: floats to `digits` significant digits, None and NaN as 'n/a'."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, float):
        return f"{x + 0.0:.{digits}g}"  # + 0.0: no "-0"
    return str(x)
