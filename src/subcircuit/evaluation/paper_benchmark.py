"""The ACDC paper's ROC evaluation on GPT-2 small: IOI and Greater-Than against the reference circuits.

`subcircuit benchmark paper --model gpt2` reproduces the setup of Conmy et al. 2023, §4.1 (Figure
3, Table 2, the rows "KL, corrupted"): for each task (`ioi`, `greater-than`) and method (ACDC over
`PAPER_TAUS`, HISP and SP by default; any registered method with `methods=`), the edge- and
node-level pessimistic ROC AUC against the shipped reference circuits `gpt2-ioi` and
`gpt2-greater-than` (docs/evaluation.md), at heads-qkv granularity, with corrupted-prompt
ablation and the KL metric. The published numbers are in `PUBLISHED` (edge AUC).

The output has the ground-truth suite's format (`evaluation.benchmark_output`): rows are
`MODEL/TASK`, columns the methods, and recovery at the true size (|R| = 963 edges for IOI, 235
for Greater-Than in our names).

The weights of GPT-2 are not shipped: `--model gpt2` needs the Hugging Face cache or the network
(offline without the cache: one line, exit 2). Any model with GPT-2 small's layers and heads
(12 x 12) works, e.g. a local folder; the tests run it on a random GPT-2-shaped model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from subcircuit.errors import UserError, unknown
from subcircuit.evaluation.faithfulness import baseline
from subcircuit.evaluation.ground_truth_suite import MethodScore, Setup, SuiteModel, run_method_on
from subcircuit.evaluation.reference import load_reference
from subcircuit.evaluation.roc import node_incidence
from subcircuit.graph import build_graph
from subcircuit.methods import METHODS, make_problem
from subcircuit.models import LoadedModel, load
from subcircuit.tasks import get_metric, get_task

PAPER_TASKS: dict[str, str] = {"ioi": "gpt2-ioi", "greater-than": "gpt2-greater-than"}
PAPER_METHODS: tuple[str, ...] = ("acdc", "hisp", "sp")
# log-spaced thresholds for KL, from where ACDC keeps most of the graph to where it keeps almost
# nothing (the paper sweeps τ on a log grid; its exact list was not available to us offline)
PAPER_TAUS: tuple[float, ...] = tuple(10.0 ** (e / 4) for e in range(-20, 1))
PAPER_N_EXAMPLES = 50
# Conmy et al. 2023, Table 2 (KL, corrupted ablation, edge AUC)
PUBLISHED: dict[str, dict[str, float]] = {
    "ioi": {"acdc": 0.869, "hisp": 0.789, "sp": 0.823},
    "greater-than": {"acdc": 0.853, "hisp": 0.693, "sp": 0.806},
}


def _load(model: str | Path | LoadedModel, device: str = "cpu") -> LoadedModel:
    if isinstance(model, LoadedModel):
        return model
    from subcircuit.models.loading import check_device

    check_device(device)
    return load(model, device)


def check_shape(loaded: LoadedModel) -> None:
    cfg = loaded.cfg
    if (cfg.n_layers, cfg.n_heads) != (12, 12):
        raise UserError(f"model {loaded.name!r} has {cfg.n_layers} layers x {cfg.n_heads} heads; the paper's "
                        "reference circuits are GPT-2 small's (12 x 12)")


def run_paper(model: str | Path | LoadedModel = "gpt2", tasks: Sequence[str] = tuple(PAPER_TASKS),
              methods: Sequence[str] = PAPER_METHODS, n_examples: int = PAPER_N_EXAMPLES,
              taus: Sequence[float] = PAPER_TAUS, seed: int = 0, metric: str = "kl", ablation: str = "corrupted",
              progress: Callable[[str], None] = lambda msg: None, device: str = "cpu") -> dict[str, Any]:
    """Run the paper's evaluation -> the suite's result dict (rows `MODEL/TASK`)."""
    for t in tasks:
        if t not in PAPER_TASKS:
            raise unknown("paper task", t, PAPER_TASKS)
    for m in methods:
        if m not in METHODS:
            raise unknown("method", m, METHODS)
    loaded = _load(model, device)
    check_shape(loaded)
    graph = build_graph(loaded.cfg, "heads-qkv")
    inc = node_incidence(graph)
    scores: list[MethodScore] = []
    truth: dict[str, Any] = {}
    rows: list[str] = []
    for t in tasks:
        label = f"{loaded.name}/{t}"
        rows.append(label)
        ref = load_reference(PAPER_TASKS[t], graph)
        task = get_task(t, loaded, n_examples, seed)
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        problem = make_problem(loaded.model, graph, task, get_metric(metric), ablation)
        entry = SuiteModel(label, t, f"reference {ref.name}", ablation, metric, task.n, ref.name)
        s = Setup(entry, loaded, graph, problem, ref.edge_mask.bool(), inc)
        b = baseline(problem)
        value = float(problem.value(graph.from_flat(s.ref_edges.float()).unsqueeze(0))[0])
        truth[label] = {"what": f"reference {ref.name}", "task": t, "ablation": ablation, "metric": metric,
                        "n_examples": task.n, "n_edges": graph.n_edges, "n_true_edges": int(s.ref_edges.sum()),
                        "n_nodes": int(inc.shape[0]), "n_true_nodes": int(s.ref_nodes.sum()),
                        "faithfulness_truth": b.normalize(value), "published_auc_edge": PUBLISHED.get(t, {}),
                        "setup_s": round(time.perf_counter() - t0, 3)}
        for m in methods:
            progress(f"{label}: {m}")
            scores.append(run_method_on(s, m, taus, seed))
    return {"models": rows, "methods": list(methods), "scores": scores, "truth": truth, "taus": list(taus),
            "seed": seed}
