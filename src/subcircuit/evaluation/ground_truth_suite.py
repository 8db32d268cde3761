"""The ground-truth suite: every registered method on every shipped model whose circuit is known.

`subcircuit benchmark ground-truth` runs this. For each model of `SUITE` (its task, ablation and
metric; the tracr and micro models as the ACDC paper ran tracr: zero ablation, `l2` metric) and
each registered method, against the model's reference circuit (`data/reference/<model>.json`):

- **edge AUC, node AUC**: the ACDC paper's pessimistic ROC AUC (`evaluation.roc`). ACDC gives one
  circuit per τ of `ACDC_TAUS`, and the AUC is taken over their Pareto points plus (0, 0) and
  (1, 1); a score method (every other registered method: EAP, EAP-IG, HISP, SP, node patching,
  Edge Pruning's learned gates, random) ranks the edges, and the AUC is over the top-k circuits
  of every size k (node level: a node's score is its best edge's, or a node method's own node
  score: HISP, SP, node patching);
- **recovery at the true size**: |C ∩ R| / |R| for the circuit C with |R| edges: a score method's
  top-|R| edges (ties broken by graph order), ACDC's circuit from the τ sweep whose size is
  nearest |R| (ties: the smaller τ). 1.0 means the method finds exactly the true circuit at the
  true size.

`check_ground_truth` is the test that a reference is what the model computes, by patching with
the suite's ablation: the reference alone (every other edge ablated) keeps the metric of the
full model, and removing any one reference edge (from the full model) moves it.

The ground truths: tracr models derived from the compiled weights (`models.tracr.ground_truth`),
micro models by construction (`models.micro`), `toy-induction-2l` the textbook induction circuit of
its measured heads (docs/models-with-known-circuits.md).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from subcircuit.evaluation.faithfulness import baseline
from subcircuit.evaluation.reference import load_reference
from subcircuit.evaluation.roc import (
    auc_of_circuits,
    auc_of_ranking,
    node_incidence,
    node_names,
    node_scores,
    nodes_of,
    rates,
)
from subcircuit.graph import Graph, build_graph
from subcircuit.methods import METHODS, Context, Problem, make_problem
from subcircuit.methods.base import build_options
from subcircuit.models import LoadedModel, load
from subcircuit.tasks import get_metric, get_task

log = logging.getLogger(__name__)

# τ grid of the ACDC sweeps: 0 (keeps every edge whose removal changes the metric at all) and
# half-decades from 1e-9 to 10 (the tracr l2 losses and toy KL live between 1e-6 and 10)
ACDC_TAUS: tuple[float, ...] = (0.0, *(10.0 ** (e / 2) for e in range(-18, 3)))


@dataclass(frozen=True)
class SuiteModel:
    """One model of the suite: the task, ablation and metric it is benchmarked with."""

    model: str
    task: str
    what: str  # the kind of circuit, for the table
    ablation: str = "zero"
    metric: str = "l2"
    n_examples: int = 32
    reference: str = ""  # default: the model's name

    @property
    def reference_name(self) -> str:
        return self.reference or self.model


SUITE: tuple[SuiteModel, ...] = (
    SuiteModel("tracr-reverse", "tracr-reverse", "tracr: Q-composition through MLPs"),
    SuiteModel("tracr-proportion", "tracr-proportion", "tracr: MLP -> head value"),
    SuiteModel("tracr-sort-unique", "tracr-sort-unique", "tracr: selector width -> MLP -> key"),
    SuiteModel("tracr-sort", "tracr-sort", "tracr: MLP -> query and key, MLP -> key"),
    SuiteModel("tracr-hist", "tracr-hist", "tracr: selector width"),
    SuiteModel("tracr-pair-balance", "tracr-pair-balance", "tracr: two parallel heads"),
    SuiteModel("micro-induction", "micro-induction", "hand-built: K-composition, parallel paths, distractors"),
    SuiteModel("micro-pointer", "micro-pointer", "hand-built: Q-composition via MLP, parallel heads, distractors"),
    SuiteModel("toy-induction-2l", "induction", "trained: previous-token -> induction head", ablation="corrupted",
               metric="kl"),
)


def suite_model(name: str) -> SuiteModel:
    for s in SUITE:
        if s.model == name:
            return s
    from subcircuit.errors import unknown

    raise unknown("suite model", name, [s.model for s in SUITE])


@dataclass
class MethodScore:
    """One method on one model."""

    model: str
    method: str
    auc_edge: float
    auc_node: float
    recovery: float  # TPR of the circuit at the true size
    size: int  # that circuit's size
    seconds: float
    roc_edge: list[tuple[float, float]] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "method": self.method, "auc_edge": _num(self.auc_edge),
                "auc_node": _num(self.auc_node), "recovery": _num(self.recovery), "size": self.size,
                "seconds": round(self.seconds, 3), "roc_edge": [list(p) for p in self.roc_edge], "note": self.note}


def _num(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 4)


@dataclass
class Setup:
    """A suite model loaded: the problem and its reference (edge and node masks)."""

    entry: SuiteModel
    loaded: LoadedModel
    graph: Graph
    problem: Problem
    ref_edges: Tensor  # [n_edges] bool
    incidence: Tensor  # [n_nodes n_edges] bool

    @property
    def ref_nodes(self) -> Tensor:
        return nodes_of(self.ref_edges, self.incidence)


def setup(entry: SuiteModel, n_examples: int | None = None, seed: int = 0,
          loaded: LoadedModel | None = None) -> Setup:
    """Load a suite model, build its task, problem and reference."""
    loaded = loaded if loaded is not None else load(entry.model)
    graph = build_graph(loaded.cfg, "heads-qkv")
    task = get_task(entry.task, loaded, n_examples or entry.n_examples, seed)
    torch.manual_seed(seed)
    problem = make_problem(loaded.model, graph, task, get_metric(entry.metric), entry.ablation)
    ref = load_reference(entry.reference_name, graph)
    return Setup(entry, loaded, graph, problem, ref.edge_mask.bool(), node_incidence(graph))


# ------------------------------------------------------------------------------ the truth, by patching


def check_ground_truth(s: Setup) -> dict[str, Any]:
    """Does the reference compute what the model computes? (with the suite's ablation)

    Returns the metric loss (lower is better) of the full model, the reference alone and the
    empty graph, the reference's faithfulness, and per reference edge the loss of the full model
    without it (`drop_from_full`) and of the reference without it (`drop_from_truth`)."""
    g, p = s.graph, s.problem
    full = g.full_mask()
    truth = g.from_flat(s.ref_edges.float())
    idx = s.ref_edges.nonzero().flatten().tolist()
    without_full = full.unsqueeze(0).repeat(len(idx), 1, 1)
    without_truth = truth.unsqueeze(0).repeat(len(idx), 1, 1)
    for k, e in enumerate(idx):
        r, c = g.edge_index[e].tolist()
        without_full[k, r, c] = 0.0
        without_truth[k, r, c] = 0.0
    with torch.no_grad():
        base = p.loss(torch.stack([full, truth, torch.zeros_like(full)])).tolist()
        drop_full = p.loss(without_full).tolist()
        drop_truth = p.loss(without_truth).tolist()
    b = baseline(p)
    value = float(p.value(truth.unsqueeze(0))[0])
    return {
        "loss_full": base[0], "loss_truth": base[1], "loss_empty": base[2],
        "faithfulness_truth": b.normalize(value),
        "drop_from_full": {g.edges[e]: drop_full[k] - base[0] for k, e in enumerate(idx)},
        "drop_from_truth": {g.edges[e]: drop_truth[k] - base[1] for k, e in enumerate(idx)},
    }


# ------------------------------------------------------------------------------ methods


def _defined(ref: Tensor) -> bool:
    """ROC is defined only when the reference has both positives and negatives (tracr-hist's
    reference holds every node of its 1-layer graph: node AUC n/a)."""
    return 0 < int(ref.sum()) < ref.numel()


def _size_nearest(masks: Sequence[Tensor], n: int) -> int:
    return min(range(len(masks)), key=lambda i: (abs(int(masks[i].sum()) - n), i))


def run_acdc(s: Setup, taus: Sequence[float] = ACDC_TAUS, seed: int = 0) -> MethodScore:
    """ACDC over the τ grid (one shared cache: each run replays the nearest finished one)."""
    spec = METHODS["acdc"]
    ctx = Context(seed=seed, cache={})
    t0 = time.perf_counter()
    masks = []
    for tau in sorted(taus):
        res = spec.fn(s.problem, build_options(spec.options, {"threshold": float(tau)}, "acdc"), ctx)
        masks.append(res.in_circuit.bool().flatten().cpu())
    auc_e, pts = auc_of_circuits(masks, s.ref_edges)
    auc_n = (auc_of_circuits([nodes_of(m, s.incidence) for m in masks], s.ref_nodes)[0] if _defined(s.ref_nodes)
             else math.nan)
    i = _size_nearest(masks, int(s.ref_edges.sum()))
    rec = rates(masks[i], s.ref_edges).tpr
    return MethodScore(s.entry.model, "acdc", auc_e, auc_n, rec, int(masks[i].sum()), time.perf_counter() - t0, pts,
                       f"{len(taus)} thresholds")


def _node_ranking(s: Setup, scores: Tensor, info: dict[str, Any]) -> Tensor:
    """Node scores [n_nodes]: a node method's own (`info["node_scores"]`: HISP, SP, node patching;
    `input` and `logits`, in every circuit, first), else each node's best edge. (Through its best edge every
    node of a node method would tie with `input`'s score: `input -> x` edges carry it.)"""
    own = info.get("node_scores")
    if not isinstance(own, dict):
        return node_scores(scores, s.incidence)
    names = node_names(s.graph)
    vals = torch.tensor([float(own.get(n, math.nan)) for n in names])
    vals = torch.where(torch.isfinite(vals), vals, torch.tensor(-math.inf))
    vals[names.index("logits")] = vals[names.index("input")] = math.inf
    return vals


def run_ranking(s: Setup, method: str, seed: int = 0) -> MethodScore:
    """A score method: the AUC of its ranking, recovery of its top-|R| edges."""
    spec = METHODS[method]
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    res = spec.fn(s.problem, build_options(spec.options, {}, method), Context(seed=seed, cache={}))
    scores = res.scores.detach().float().flatten().cpu()
    scores = torch.where(torch.isfinite(scores), scores, torch.tensor(-math.inf))
    auc_e, pts = auc_of_ranking(scores, s.ref_edges)
    auc_n = auc_of_ranking(_node_ranking(s, scores, res.info), s.ref_nodes)[0] if _defined(s.ref_nodes) else math.nan
    n = int(s.ref_edges.sum())
    top = torch.zeros_like(s.ref_edges)
    top[torch.argsort(scores, descending=True, stable=True)[:n]] = True
    rec = rates(top, s.ref_edges).tpr
    return MethodScore(s.entry.model, method, auc_e, auc_n, rec, n, time.perf_counter() - t0, pts)


def run_method_on(s: Setup, method: str, taus: Sequence[float] = ACDC_TAUS, seed: int = 0) -> MethodScore:
    """ACDC (a method that does not rank edges and has a threshold) over τ; the others by ranking."""
    spec = METHODS[method]
    if not spec.ranks_edges:
        return run_acdc(s, taus, seed)
    return run_ranking(s, method, seed)


def default_methods() -> list[str]:
    """Every registered method."""
    return list(METHODS)


def run_suite(models: Sequence[str] | None = None, methods: Sequence[str] | None = None,
              n_examples: int | None = None, taus: Sequence[float] = ACDC_TAUS, seed: int = 0,
              progress: Callable[[str], None] = lambda msg: None) -> dict[str, Any]:
    """Run the suite -> {"models": [...], "methods": [...], "scores": [MethodScore...], "truth": {...}}."""
    from subcircuit.errors import unknown

    entries = [suite_model(m) for m in models] if models else list(SUITE)
    names = list(methods) if methods else default_methods()
    for m in names:
        if m not in METHODS:
            raise unknown("method", m, METHODS)
    scores: list[MethodScore] = []
    truth: dict[str, Any] = {}
    for entry in entries:
        s = setup(entry, n_examples, seed)
        chk = check_ground_truth(s)
        f = chk["faithfulness_truth"]
        if f is None or f < 0.9:
            log.warning("%s: its reference circuit alone has faithfulness %s (the truth may be wrong)", entry.model, f)
        truth[entry.model] = {"what": entry.what, "task": entry.task, "ablation": entry.ablation,
                              "metric": entry.metric, "n_examples": s.problem.task.n,
                              "n_edges": s.graph.n_edges, "n_true_edges": int(s.ref_edges.sum()),
                              "n_nodes": int(s.incidence.shape[0]), "n_true_nodes": int(s.ref_nodes.sum()),
                              "faithfulness_truth": chk["faithfulness_truth"],
                              "min_drop_from_full": min(chk["drop_from_full"].values())}
        for m in names:
            progress(f"{entry.model}: {m}")
            scores.append(run_method_on(s, m, taus, seed))
    return {"models": [e.model for e in entries], "methods": names, "scores": scores, "truth": truth,
            "taus": list(taus), "seed": seed}
