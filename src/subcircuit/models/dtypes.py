"""Compute dtypes: `--dtype float32|bfloat16|float16`, and the default (float32 on CPU, bfloat16 on CUDA).

The weights and the residual stream are kept in the run's dtype; what low precision would
change is computed in float32 whatever the dtype: norms, attention softmax and soft-caps
(`norms`, `attention`), the running sums that mix sender deltas (`patching`), the metric
(`tasks.metrics`: float32, KL in float64) and so ACDC's comparisons against τ. The tolerances
the tests hold bf16/fp16 to are in docs/models.md ("Precision").
"""

from __future__ import annotations

import torch

from subcircuit.errors import UserError

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}


def dtype_name(dtype: torch.dtype) -> str:
    """'bfloat16' for torch.bfloat16 (the name circuit.json records)."""
    return str(dtype).removeprefix("torch.")


def resolve_dtype(name: str | torch.dtype | None, device: str | torch.device = "cpu") -> torch.dtype:
    """The compute dtype for `name` (None: float32 on CPU, bfloat16 on CUDA); an unknown name is a
    one-line UserError listing the valid ones."""
    if isinstance(name, torch.dtype):
        if name not in DTYPES.values():
            raise UserError(f"dtype {dtype_name(name)!r} is not supported; valid: {', '.join(DTYPES)}")
        return name
    if name is None:
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    key = ALIASES.get(str(name), str(name))
    if key not in DTYPES:
        raise UserError(f"--dtype {name!r} is not supported; valid: {', '.join(DTYPES)}")
    return DTYPES[key]


def bytes_per_value(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()
