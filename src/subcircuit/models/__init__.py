"""Models: our forward pass over transformers' weights, with every component's output separate."""

from subcircuit.models import tracr as _tracr  # noqa: F401  (registers tracr-reverse, tracr-proportion)
from subcircuit.models.config import ModelConfig
from subcircuit.models.families import FAMILIES, family_for, from_hf
from subcircuit.models.loading import MODELS, LoadedModel, ModelEntry, load, register, save
from subcircuit.models.transformer import Transformer

__all__ = [
    "FAMILIES",
    "MODELS",
    "LoadedModel",
    "ModelConfig",
    "ModelEntry",
    "Transformer",
    "family_for",
    "from_hf",
    "load",
    "register",
    "save",
]
