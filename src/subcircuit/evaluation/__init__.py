"""Evaluation of circuits: faithfulness, faithfulness-vs-size curves (MIB's CPR and CMD), ROC/AUC
against reference circuits (the ACDC paper's), run comparison and the measured roles of heads.

Modules (see each docstring for definitions and sources):
- `faithfulness`: f = (m(C) − m(∅)) / (m(N) − m(∅)), batched over circuits;
- `curves`: top-k circuits at MIB's edge fractions, CPR and CMD (trapezoid rule);
- `roc`: TPR/FPR at edge and node level, Pareto points, the ACDC paper's pessimistic AUC;
- `reference`: reference circuit files, checked against the model's graph;
- `compare`: `subcircuit evaluate` / `subcircuit compare` (tables and PNG plots);
- `roles`: what the heads of a circuit do (induction, previous-token, ...), measured on the model;
- `tables`: how a number is printed in a table.

Sweeps (one method over τ values or sizes) are runs: `subcircuit.runs.sweep`.

Names are imported lazily so `import subcircuit.evaluation` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    "Baseline": "faithfulness", "baseline": "faithfulness", "faithfulness_many": "faithfulness",
    "faithfulness_value": "faithfulness", "measure": "faithfulness",
    "FRACTIONS": "curves", "Curve": "curves", "CprCmd": "curves", "area_under": "curves",
    "area_from_one": "curves", "cpr_cmd": "curves", "faithfulness_curve": "curves", "topk_masks": "curves",
    "Rates": "roc", "rates": "roc", "pareto": "roc", "pessimistic_auc": "roc", "auc_of_circuits": "roc",
    "auc_of_ranking": "roc", "ranking_roc": "roc", "node_names": "roc", "node_incidence": "roc", "nodes_of": "roc",
    "Reference": "reference", "load_reference": "reference", "list_references": "reference",
    "canonical_name": "reference", "graph_for_model": "reference", "GPT2_SMALL": "reference",
    "ROLES": "roles", "ATTENTION_ROLES": "roles", "CUTOFFS": "roles", "TIE": "roles", "HeadRoles": "roles",
    "label_of": "roles", "head_roles": "roles", "save_roles": "roles", "load_roles": "roles",
    "ROLES_FILE": "roles", "ROLES_FORMAT": "roles", "circuit_heads": "roles",
    "fmt": "tables",
    "evaluate_run": "compare", "compare_runs": "compare", "RunEvaluation": "compare",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
