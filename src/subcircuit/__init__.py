"""subcircuit: automated circuit discovery (ACDC and its faster relatives) for transformer LMs.

The public API is small and imported lazily, so `import subcircuit` stays cheap (no torch, no
transformers until you touch a name that needs them):

    import subcircuit as sc
    lm = sc.load("smollm2-135m")          # our forward pass over transformers' weights
    logits = lm.model(tokens)             # tokens [batch pos] -> logits [batch pos vocab]

See README.md and docs/ for the method, the command line and the file formats.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from subcircuit.errors import UserError

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("subcircuit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

# public name -> module that defines it (imported on first access). Add new public names here.
_LAZY: dict[str, str] = {
    "load": "subcircuit.models",
    "save": "subcircuit.models",
    "from_hf": "subcircuit.models",
    "LoadedModel": "subcircuit.models",
    "ModelConfig": "subcircuit.models",
    "ModelEntry": "subcircuit.models",
    "MODELS": "subcircuit.models",
    "Transformer": "subcircuit.models",
}

__all__ = ["UserError", "__version__", *sorted(_LAZY)]

if TYPE_CHECKING:  # for type checkers and IDEs only; nothing heavy runs at import time
    from subcircuit.models import (  # noqa: F401
        MODELS,
        LoadedModel,
        ModelConfig,
        ModelEntry,
        Transformer,
        from_hf,
        load,
        save,
    )


def __getattr__(name: str) -> Any:
    """Import the module behind a public name on first use (PEP 562)."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'subcircuit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
