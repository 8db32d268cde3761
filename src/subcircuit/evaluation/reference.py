"""Reference circuits: hand-found (or compiled-in) circuits to score discovered ones against.

A reference is a JSON file in `subcircuit/data/reference/` (or any path):

    {"model": "gpt2", "task": "ioi", "granularity": "heads-qkv",
     "edges": ["a9.h9->logits", ...], "source": "...", ...}

`task` may be absent (the tracr models have one task each: the reference then applies to every
task of its model). Loading checks every edge name against the model's graph at the file's
granularity: an unknown, malformed, impossible or duplicated edge is a `UserError` naming it,
never silently dropped.

Shipped references:
- `gpt2-ioi`, `gpt2-greater-than`: GPT-2 small, built by `scripts/build_reference_circuits.py`
  from the published group rules (Wang et al. 2022; Hanna et al. 2023; as the ACDC paper restates
  them);
- `tracr-reverse`, `tracr-proportion`: derived from the compiled RASP programs
  (`subcircuit.models.tracr.derive_ground_truth`).

GPT-2's weights need the network; its graph does not: `graph_for_model("gpt2")` builds it from
the known GPT-2 small config, so the references are checked offline.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from subcircuit.errors import UserError, unknown
from subcircuit.graph import Graph, build_graph
from subcircuit.models.config import ModelConfig

log = logging.getLogger(__name__)

GPT2_SMALL = ModelConfig(family="gpt2", n_layers=12, d_model=768, n_heads=12, d_head=64, d_mlp=3072,
                         vocab_size=50257, n_ctx=1024)
KNOWN_CONFIGS: dict[str, ModelConfig] = {"gpt2": GPT2_SMALL}


def reference_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "data" / "reference"


@dataclass(frozen=True)
class Reference:
    """A reference circuit, its edges checked against `graph`."""

    name: str
    model: str
    task: str | None
    granularity: str
    edges: tuple[str, ...]
    source: str
    graph: Graph = field(repr=False)

    @property
    def edge_mask(self) -> Tensor:
        """[n_edges] bool in `graph.edges` order."""
        return self.graph.to_flat(self.graph.mask_from_edges(self.edges, torch.bool))


def list_references() -> list[str]:
    """Names of the shipped reference circuits."""
    return sorted(p.stem for p in reference_dir().glob("*.json"))


def _read(path: Path) -> dict[str, Any]:
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from e
    if not isinstance(d, dict) or not isinstance(d.get("edges"), list) or "model" not in d:
        raise UserError(f"{path}: not a reference circuit (needs 'model' and a list 'edges')")
    return d


def resolve(spec: str | Path) -> Path:
    """A shipped reference name or a path to a reference file."""
    p = Path(spec)
    if p.suffix == ".json" and p.exists():
        return p
    if str(spec) in list_references():
        return reference_dir() / f"{spec}.json"
    raise unknown("reference circuit", str(spec), list_references())


def graph_for_model(model: str, granularity: str = "heads-qkv") -> Graph:
    """The graph of a model, from a known config when there is one (no weights needed), else
    from the loaded model's config."""
    if model in KNOWN_CONFIGS:
        return build_graph(KNOWN_CONFIGS[model], granularity)
    from subcircuit.models import load

    return build_graph(load(model).cfg, granularity)


def load_reference(spec: str | Path, graph: Graph | None = None) -> Reference:
    """Load a reference circuit and check every edge name against `graph` (default: the graph of
    the file's model at the file's granularity)."""
    path = resolve(spec)
    d = _read(path)
    gran = d.get("granularity", "heads-qkv")
    graph = graph if graph is not None else graph_for_model(d["model"], gran)
    if graph.granularity != gran:
        raise UserError(f"reference {path.stem!r} is at granularity {gran!r}; the circuit's graph is "
                        f"{graph.granularity!r}")
    seen: set[str] = set()
    for e in d["edges"]:
        if e in seen:
            raise UserError(f"reference {path.stem!r}: edge {e!r} is listed twice")
        seen.add(e)
        try:
            graph.edge(e)
        except UserError as err:
            raise UserError(f"reference {path.stem!r}: {err}") from None
    return Reference(path.stem, d["model"], d.get("task"), gran, tuple(d["edges"]), str(d.get("source", "")), graph)


def canonical_name(model: str, task: str) -> str | None:
    """The shipped reference of (model, task), if any: same model, and the same task or no task."""
    for name in list_references():
        d = _read(reference_dir() / f"{name}.json")
        if d["model"] == model and d.get("task") in (None, task):
            return name
    return None
