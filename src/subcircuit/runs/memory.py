"""Memory check before a run: estimate what a run needs, compare with what is free, refuse early.

A run that does not fit is better refused in a second with one line than killed by the kernel
after loading for minutes. `check_memory(model, task, ...)` estimates, *before* the model is
loaded,

    parameters  = n_params × 4 bytes (we run fp32), ×2 for a transformers checkpoint (the
                  transformers model and ours are both alive while converting)
    activations = the tensors the patching primitive keeps for one run: the clean and the
                  ablated output of every sender, the patched forward pass's own, logits over
                  the vocabulary and attention patterns for the batch; more for the methods
                  that run the autograd engine (`MethodSpec.uses_gradients`: backward keeps the
                  forward's tensors) and for batched trials (a method whose options have a
                  `memory_gb` budget and `max_batch`, ACDC's speculative batches: capped by
                  that budget, 2 GiB by default)

from what can be read without loading: the shipped model's files (`subcircuit_model.json` and the
size of `model.safetensors`), a local folder's `config.json` (or our config), the Hub cache's
`config.json`, or the known shapes of the named models. The batch is `--n-examples` (or the
task's default), the sequence length the task file's longest prompt (or 32 tokens for built-in
tasks, 64 for docstring). Free memory is `psutil.virtual_memory().available` (psutil if installed, else
`MemAvailable` from /proc/meminfo) for the CPU, `torch.cuda.mem_get_info` for a GPU.

When the estimate exceeds the free memory the run is refused with a `UserError` giving both
numbers, unless `force` (`--force`). When either number cannot be known (a Hub id that is not
cached, a platform without /proc/meminfo) the check is skipped (logged at INFO).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from subcircuit.errors import UserError
from subcircuit.evaluation.faithfulness import configs_fitting
from subcircuit.models.placement import free_bytes, gpu_free  # noqa: F401  (re-exported)

log = logging.getLogger(__name__)

BYTES_PER_PARAM = 4  # parameters as stored: float32 (shipped models, the SmolLM2 cache)
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
DEFAULT_SEQ = 32  # tokens assumed for built-in tasks (IOI, Greater-Than, ...: 10-20 tokens in BPE tokenizers)
TASK_SEQ = {"docstring": 64}  # built-in tasks with longer prompts


@dataclass(frozen=True)
class Shape:
    """The sizes an estimate needs (a subset of ModelConfig, readable without loading)."""

    n_layers: int
    d_model: int
    n_heads: int
    d_mlp: int
    vocab_size: int
    n_params: int


# Models known by short name whose config is not on disk before their first load.
KNOWN_SHAPES: dict[str, Shape] = {
    "smollm2-135m": Shape(30, 576, 9, 1536, 49152, 134_515_008),
    "gpt2": Shape(12, 768, 12, 3072, 50257, 124_439_808),
}


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a run needs: parameters and activations (an estimate, on the high side)."""

    params: int
    activations: int
    batch: int
    seq: int

    @property
    def total(self) -> int:
        return self.params + self.activations


def gb(n: float) -> str:
    """Bytes as '1.23 GB' (or MB below 0.1 GB)."""
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


# ------------------------------------------------------------------------------ model sizes


def _shape_from_ours(cfg: dict[str, Any], n_params: int) -> Shape:
    return Shape(int(cfg["n_layers"]), int(cfg["d_model"]), int(cfg["n_heads"]), int(cfg.get("d_mlp") or 0),
                 int(cfg["vocab_size"]), n_params)


def _first(d: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for k in keys:
        if d.get(k) is not None:
            return d[k]
    return default


def shape_from_hf_config(cfg: dict[str, Any]) -> Shape:
    """Sizes and parameter count from a transformers `config.json` (GPT-2, Llama, NeoX, ... keys)."""
    if "text_config" in cfg and isinstance(cfg["text_config"], dict):
        cfg = cfg["text_config"]
    d = int(_first(cfg, "hidden_size", "n_embd", "d_model"))
    n_layers = int(_first(cfg, "num_hidden_layers", "n_layer", "num_layers"))
    n_heads = int(_first(cfg, "num_attention_heads", "n_head"))
    kv = int(_first(cfg, "num_key_value_heads", default=n_heads))
    d_head = int(_first(cfg, "head_dim", default=d // n_heads))
    d_mlp = int(_first(cfg, "intermediate_size", "n_inner", default=4 * d) or 4 * d)
    vocab = int(_first(cfg, "vocab_size", default=50257))
    gated = str(cfg.get("model_type", "")) in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "olmo",
                                               "olmo2", "phi3", "smollm3", "granite")
    attn = d * n_heads * d_head * 2 + 2 * d * kv * d_head
    mlp = (3 if gated else 2) * d * d_mlp
    embed = vocab * d * (1 if cfg.get("tie_word_embeddings", True) else 2)
    n_params = embed + n_layers * (attn + mlp + 4 * d) + int(_first(cfg, "n_positions", default=0) or 0) * d
    return Shape(n_layers, d, n_heads, d_mlp, vocab, n_params)


def _folder_shape(folder: Path) -> tuple[Shape, int] | None:
    """(shape, bytes of parameters while loading) for a folder in our format or transformers'."""
    ours = folder / "subcircuit_model.json"
    if ours.exists():
        cfg = json.loads(ours.read_text())["config"]
        weights = folder / "model.safetensors"
        size = weights.stat().st_size if weights.exists() else 0
        return _shape_from_ours(cfg, size // BYTES_PER_PARAM), size
    hf = folder / "config.json"
    if hf.exists():
        shape = shape_from_hf_config(json.loads(hf.read_text()))
        return shape, 2 * shape.n_params * BYTES_PER_PARAM
    return None


def model_shape(spec: Any) -> tuple[Shape, int] | None:
    """(shape, parameter bytes while loading) of a model spec before loading it, or None if unknown."""
    if not isinstance(spec, str | Path):
        return None  # an already loaded model: nothing left to load
    s = str(spec)
    try:
        from subcircuit.models import MODELS
        from subcircuit.models.loading import data_dir

        if s in MODELS:
            shipped = data_dir() / "models" / s
            if (shipped / "subcircuit_model.json").exists():
                return _folder_shape(shipped)
            if s in KNOWN_SHAPES:
                shape = KNOWN_SHAPES[s]
                return shape, shape.n_params * BYTES_PER_PARAM * (2 if s == "gpt2" else 1)
            return None
        p = Path(s)
        if p.is_dir():
            return _folder_shape(p)
        if "/" in s and not p.exists():
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(s, "config.json")
            if isinstance(cached, str):
                shape = shape_from_hf_config(json.loads(Path(cached).read_text()))
                return shape, 2 * shape.n_params * BYTES_PER_PARAM
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError) as e:
        log.info("memory estimate: cannot read the size of model %r (%s)", s, e)
    return None


# ------------------------------------------------------------------------------ task sizes


def task_size(task: Any, n_examples: int | None) -> tuple[int, int]:
    """(batch, tokens per prompt) a task will have, without a tokenizer (an upper estimate)."""
    from subcircuit.tasks import TASKS, is_task_file

    if n_examples is not None and n_examples < 1:
        raise UserError(f"the number of examples must be at least 1, not {n_examples}")
    if isinstance(task, str | Path) and is_task_file(task) and Path(task).is_file():
        from subcircuit.tasks.files import read_task_file

        tf = read_task_file(task)  # a malformed file fails here with its own one-line error
        n = len(tf.examples) if n_examples is None else min(n_examples, len(tf.examples))

        def tokens(p: Any) -> int:  # text: at most one token per 2 bytes is plenty for BPE tokenizers
            return len(p) if not isinstance(p, str) else len(p.encode("utf-8")) // 2 + 2

        seq = max(max(tokens(ex.clean), tokens(ex.corrupted)) for ex in tf.examples[:n])
        return n, seq
    spec = TASKS.get(str(task))
    n = n_examples or (spec.default_n if spec is not None else 16)
    return n, TASK_SEQ.get(str(task), DEFAULT_SEQ)


# ------------------------------------------------------------------------------ the estimate


def estimate(shape: Shape, param_bytes: int, batch: int, seq: int, method: str = "acdc",
             granularity: str = "heads-qkv", options: Any = None, dtype: str = "float32",
             batched: int | None = None) -> MemoryEstimate:
    """Bytes a run needs (see the module docstring for what is counted); `options`: the method's
    options (None: its defaults); `dtype`: the compute dtype (`param_bytes` as stored on disk
    is rescaled to it); `batched`: bytes granted to batched trials (None: what the options ask)."""
    from subcircuit.methods import get_method

    spec = get_method(method)
    options = options if options is not None else spec.options()
    w = DTYPE_BYTES[dtype]
    L, d, H = shape.n_layers, shape.d_model, shape.n_heads
    n_senders = 1 + (2 * L if granularity == "layers" else L * (H + 1))
    unit = batch * seq * d * w  # one sender's output for the batch, in the compute dtype
    acts = 3 * n_senders * unit  # clean outputs, ablated outputs, the patched pass
    acts += 2 * batch * seq * shape.vocab_size * (w + 4)  # full logits of the clean and corrupted runs (+ fp32 metric)
    acts += 2 * batch * H * seq * seq * 4 + 2 * batch * seq * max(shape.d_mlp, d) * w  # one layer's transients
    if spec.uses_gradients:
        acts += 2 * n_senders * unit + L * batch * H * seq * seq * 4 * 2  # kept for backward
    budget = getattr(options, "memory_gb", None)
    if budget is None and hasattr(options, "memory_gb"):  # ACDC: its default budget when nothing is known
        budget = 2.0
    if batched is not None:
        acts += batched
    elif budget is not None:  # batched trials, at most `max_batch` configurations within the budget
        acts += min(int(budget * 2**30), int(getattr(options, "max_batch", 64)) * (n_senders + 8) * unit)
    params = int(param_bytes * w / BYTES_PER_PARAM) if dtype != "float32" else int(param_bytes)
    return MemoryEstimate(params, int(acts), batch, seq)


def batch_budget(free: int | None, est: MemoryEstimate, headroom: float = 0.9) -> int | None:
    """Bytes a run may give to batched work (ACDC's speculative configurations, EAP-IG's chunks):
    `headroom` of the free memory, less what the run needs besides (None when free is unknown)."""
    if free is None:
        return None
    left = int(free * headroom) - est.total
    # rounded down to a power of two: small changes in free memory do not change the batches
    return 0 if left <= 0 else 1 << (left.bit_length() - 1)


def what_fits(est: MemoryEstimate, free: int, dtype: str, cuda: bool, offload: str | None) -> str:
    """What would make a run fit, as the refusal's advice: fewer examples, a 2-byte dtype, offload."""
    tips = []
    if est.activations > 0 and est.params < free:
        n = max(1, int(est.batch * (free - est.params) / est.activations))
        if n < est.batch:
            tips.append(f"--n-examples {n}")
    if dtype == "float32":
        tips.append("--dtype bfloat16 (about half)")
    if cuda and offload is None:
        tips.append("--offload cpu")
    return "try " + " or ".join(tips) if tips else "use a smaller model"


def check_memory(model: Any, task: Any, n_examples: int | None = None, method: str = "acdc",
                 granularity: str = "heads-qkv", device: str = "cpu", force: bool = False,
                 options: Any = None, dtype: str | None = None, offload: str | None = None) -> MemoryEstimate | None:
    """Estimate the run's memory before loading `model` (`options`: the method's options, None: its
    defaults); a UserError if it exceeds the free memory (unless `force`). Returns the estimate
    (None when the model's size cannot be known)."""
    found = model_shape(model)
    if found is None:
        log.info("memory check skipped: the size of model %r is not known before loading", str(model))
        return None
    shape, param_bytes = found
    batch, seq = task_size(task, n_examples)
    cuda = str(device).startswith("cuda")
    dtype = dtype or ("bfloat16" if cuda else "float32")
    est = estimate(shape, param_bytes, batch, seq, method, granularity, options, dtype, batched=0)
    free = free_bytes(device)
    if cuda and free is not None:  # every visible GPU holds layers, and host memory with --offload cpu
        free = sum(gpu_free())
        if offload == "cpu":
            free += free_bytes("cpu") or 0
    log.info("memory estimate for %s: %s (parameters %s, activations %s); free on %s: %s", model, gb(est.total),
             gb(est.params), gb(est.activations), device, "unknown" if free is None else gb(free))
    if free is not None and est.total > free:
        msg = (f"model {str(model)!r} needs about {gb(est.total)} (parameters {gb(est.params)}, activations "
               f"{gb(est.activations)} for {batch} examples × {seq} tokens) but only {gb(free)} is free on {device}; "
               f"{what_fits(est, free, dtype, cuda, offload)}, or use --force to run anyway")
        if not force:
            raise UserError(msg)
        log.warning("%s (--force given: running anyway)", msg)
    return est


def run_budget(model: Any, batch: int, seq: int, method: str, granularity: str, options: Any,
               device: str) -> tuple[int | None, int]:
    """(bytes for batched work, evaluation batch) of a run on an already loaded `model` (a
    `Transformer`): the device's free memory now (the weights already resident), less the run's
    activations, at `headroom` (see `batch_budget`); the evaluation batch is how many mask
    configurations' sender deltas fit in it (1..64, 8 when the free memory is unknown)."""

    cfg = model.cfg
    shape = Shape(cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.d_mlp, cfg.vocab_size, 0)
    dtype = str(model.W_E.dtype).removeprefix("torch.")
    est = estimate(shape, 0, batch, seq, method, granularity, options, dtype, batched=0)
    dev = model.device
    free = free_bytes(f"cuda:{dev.index or 0}" if dev.type == "cuda" else "cpu") if dev.type != "meta" else None
    budget = batch_budget(free, est)
    if budget is None:
        return None, 8
    n_senders = 1 + (2 * cfg.n_layers if granularity == "layers" else cfg.n_layers * (cfg.n_heads + 1))
    return budget, configs_fitting(budget, n_senders, batch, seq, cfg.d_model, model.W_E.element_size())
