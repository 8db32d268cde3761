"""Placing a model's layers over several devices, and keeping the ones that do not fit in host memory.

`plan(model, max_memory)` asks accelerate's planner (`get_balanced_memory`,
`infer_auto_device_map`, whole `Block`s never split) where each layer goes, from the model's
shapes alone: it runs on a model built on the "meta" device, so planning an 8B model allocates
nothing. `place(model, device_map, compute)` moves each layer to its device; a layer planned on
"cpu" (`--offload cpu`) stays in host memory and streams its weights to `compute` when it runs
(`models.block.weights_at`).

The forward pass needs nothing else: every component function (`embed`, `attention`,
`post_attention`, `mlp`, `unembed`) computes where its layer's weights are and returns on the
caller's device, and `Transformer.run` moves the residual stream to each layer's device at the
layer boundary. So the patched engines and every method run on a placed model unchanged: their
cached sender outputs stay on the first device, and each layer's inputs cross to it and its
outputs back.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from subcircuit.models.config import ModelConfig
from subcircuit.models.transformer import Transformer

log = logging.getLogger(__name__)

DeviceMap = dict[str, str | int]


def meta_model(cfg: ModelConfig, dtype: torch.dtype) -> Transformer:
    """The model's structure at `dtype` on the "meta" device: shapes and sizes, no memory."""
    return Transformer(cfg, dtype=dtype, device="meta")


def plan(model: Transformer | ModelConfig, max_memory: dict[str | int, int], dtype: torch.dtype | None = None,
         balanced: bool = True, reserve: int = 0) -> DeviceMap:
    """Where each part of the model goes: {"W_E": 0, "blocks.0": 0, ..., "blocks.15": 1, "W_U": 1}
    (a GPU index, or "cpu" for offloaded layers), from `max_memory` (bytes per device; what the
    run's activations need is left free on the GPUs through `reserve` bytes each)."""
    from accelerate import infer_auto_device_map
    from accelerate.utils import get_balanced_memory

    if isinstance(model, ModelConfig):
        model = meta_model(model, dtype or torch.float32)
    elif model.device.type != "meta":
        model = meta_model(model.cfg, dtype or model.dtype)
    limits = {k: max(0, v - reserve) if k != "cpu" else v for k, v in max_memory.items()}
    gpus = [k for k in limits if k != "cpu"]
    if balanced and len(gpus) > 1:
        limits = get_balanced_memory(model, max_memory=limits, no_split_module_classes=["Block"])
    dmap = infer_auto_device_map(model, max_memory=limits, no_split_module_classes=["Block"])
    return {k: v for k, v in dmap.items()}


def device_of(where: str | int) -> torch.device:
    return torch.device(f"cuda:{where}" if isinstance(where, int) else where)


def place(model: Transformer, device_map: DeviceMap, compute: str | torch.device | None = None) -> Transformer:
    """Move each part of `model` to its device in `device_map` (keys: module or parameter names, as
    `plan` gives them; "disk" is refused). Parts mapped to "cpu" while `compute` is a GPU stay in
    host memory and stream their weights to `compute` when they run (`--offload cpu`)."""
    compute_dev = torch.device(compute) if compute is not None else None
    for name, where in device_map.items():
        if where == "disk":
            raise ValueError("offloading to disk is not supported; use --offload cpu")
        dev = device_of(where)
        part = model.get_submodule(name) if name in dict(model.named_modules()) else None
        if part is None:
            if name == "":
                model.to(dev)
                continue
            param = model.get_parameter(name)  # embeddings, final norm, unembedding: never offloaded
            on_gpu = dev.type == "cpu" and compute_dev is not None and compute_dev.type != "cpu"
            param.data = param.data.to(compute_dev if on_gpu else dev)
            continue
        part.to(dev)
        streams = dev.type == "cpu" and compute_dev is not None and compute_dev.type != "cpu"
        for blk in part.modules() if name else model.modules():
            if hasattr(blk, "stream_to"):
                blk.stream_to = compute_dev if streams else None
    log.info("placed %s over %s", model.cfg.family, sorted({str(v) for v in device_map.values()}))
    return model


def placement(model: Transformer) -> list[str]:
    """Per layer, where it computes ("cuda:1", or "cpu->cuda:0" for a streamed layer)."""
    out = []
    for b in model.blocks:
        home = str(b.W_Q.device)
        out.append(home if b.stream_to is None else f"{home}->{b.stream_to}")
    return out


def auto_place(model: Transformer, device: str | torch.device, offload: str | None = None,
               reserve: int = 0, max_memory: dict[str | int, int] | None = None) -> Transformer:
    """`--device cuda`: the whole model on one GPU when it fits there, else whole layers over every
    visible GPU by `plan`, and with `offload="cpu"` the rest in host memory. `max_memory` (bytes per
    device) overrides the free memory read from the devices (`torch.cuda.mem_get_info`)."""
    dev = torch.device(device)
    if max_memory is None:
        if dev.type != "cuda":
            return model.to(dev)
        max_memory = {i: int(torch.cuda.mem_get_info(i)[0]) for i in range(torch.cuda.device_count())}
        if offload == "cpu":
            import psutil

            max_memory["cpu"] = int(psutil.virtual_memory().available)
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    first = dev.index if dev.index is not None else next((k for k in max_memory if k != "cpu"), 0)
    if size + reserve <= max_memory.get(first, 0):
        return model.to(device_of(first) if dev.type == "cuda" else dev)
    if offload != "cpu":
        max_memory = {k: v for k, v in max_memory.items() if k != "cpu"}
    dmap = plan(model, max_memory, reserve=reserve)
    missing = [k for k, v in dmap.items() if v == "disk"]
    if missing:
        raise ValueError(f"the model does not fit: {len(missing)} part(s) left for disk")
    compute = device_of(next(v for v in dmap.values() if v != "cpu")) if any(v != "cpu" for v in dmap.values()) \
        else dev
    return place(model, dmap, compute)


def planned_devices(cfg: ModelConfig, dtype: torch.dtype, max_memory: dict[str | int, int],
                    reserve: int = 0) -> dict[str, Any]:
    """The plan's summary without any model in memory: {device: [layers]} (what `--device cuda`
    would do on devices with `max_memory`)."""
    dmap = plan(cfg, max_memory, dtype, reserve=reserve)
    out: dict[str, Any] = {}
    for k, v in dmap.items():
        if k.startswith("blocks."):
            out.setdefault(str(v), []).append(int(k.split(".")[1]))
    return out


def free_bytes(device: str = "cpu") -> int | None:
    """Free memory of `device` in bytes (None when it cannot be read)."""
    if str(device).startswith("cuda"):
        import torch

        try:
            return int(torch.cuda.mem_get_info(torch.device(device))[0])
        except (RuntimeError, AssertionError):
            return None
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def gpu_free() -> list[int]:
    """Free bytes of every visible GPU (`torch.cuda.mem_get_info`); [] without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return []
    return [int(torch.cuda.mem_get_info(i)[0]) for i in range(torch.cuda.device_count())]
