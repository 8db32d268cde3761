"""`discover --bootstrap B`: how stable a circuit is under resampling of its discovery prompts.

After the run itself (the circuit written to circuit.json is the one found on the discovery
prompts, as without `--bootstrap`), the method runs B more times, rerun b on a bootstrap sample
of the discovery prompts (as many prompts, drawn with replacement, seed `seed + 1 + b`) and with
the seed `seed + 1 + b` (which is what changes for the stochastic methods: Edge Pruning's gate
noise, SP, random). Every rerun is a run of the same pipeline (`run_in_session` in a session
that shares the model, graph and held-out prompts, with the resampled prompts' problem), made
one after the other; each rerun's circuit is measured on the same held-out prompts.

What is recorded (circuit.json):

- per edge `"frequency"`: the fraction of the B reruns whose circuit kept the edge
  (count / B, in [0, 1]);
- `results["bootstrap"]`: `n_reruns`; `size_mean` and `size_interval` (the 2.5% and 97.5%
  percentiles of the reruns' circuit sizes); `faithfulness_heldout_mean` and
  `faithfulness_heldout_interval` (the same for the reruns' held-out faithfulness);
  `jaccard_mean` (the mean over pairs of reruns of |A ∩ B| / |A ∪ B|); and `stable_core`: the
  edges kept in at least `STABLE` (90%) of the reruns, its size, and its faithfulness on the
  discovery and on the held-out prompts.

The report draws each edge with an opacity that grows with its frequency and lists the stable core.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from subcircuit.circuit import Circuit
from subcircuit.errors import UserError
from subcircuit.evaluation.faithfulness import measure
from subcircuit.methods import ProgressFn, make_problem, no_progress
from subcircuit.runs.options import DiscoverOptions
from subcircuit.runs.pipeline import Session, run_in_session
from subcircuit.tasks import get_metric
from subcircuit.tasks.split import resample_task

log = logging.getLogger(__name__)

__all__ = ["STABLE", "BootstrapResult", "bootstrap_session", "check_reruns", "jaccard_mean", "percentile_interval"]

STABLE = 0.9  # the stable core: edges kept in at least this fraction of the reruns


@dataclass(frozen=True, eq=False)
class BootstrapResult:
    """The reruns of a bootstrap: their circuits' edge sets [B n_edges] bool and circuits."""

    keeps: torch.Tensor
    circuits: tuple[Circuit, ...]

    @property
    def frequency(self) -> torch.Tensor:
        """[n_edges] the fraction of reruns that kept each edge."""
        return self.keeps.float().mean(0)


def percentile_interval(values: list[float], lo: float = 2.5, hi: float = 97.5) -> list[float] | None:
    """[lo-th, hi-th] percentile of `values` (linear interpolation); None if there are none."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None
    t = torch.tensor(vals, dtype=torch.float64)
    return [float(torch.quantile(t, lo / 100)), float(torch.quantile(t, hi / 100))]


def jaccard_mean(keeps: torch.Tensor) -> float | None:
    """The mean over pairs of rows of |A ∩ B| / |A ∪ B| (two empty sets count as 1)."""
    rows = keeps.bool()
    if rows.shape[0] < 2:
        return None
    vals = []
    for i, j in itertools.combinations(range(rows.shape[0]), 2):
        union = int((rows[i] | rows[j]).sum())
        vals.append(1.0 if union == 0 else int((rows[i] & rows[j]).sum()) / union)
    return sum(vals) / len(vals)


def check_reruns(reruns: Any) -> None:
    """A one-line UserError unless `reruns` is an int >= 2."""
    if isinstance(reruns, bool) or not isinstance(reruns, int) or reruns < 2:
        raise UserError(f"--bootstrap {reruns} is invalid; expected at least 2 reruns")


def _rerun_session(session: Session, options: DiscoverOptions, b: int) -> Session:
    """A session for rerun b: the session's model, graph and held-out prompts, a bootstrap
    sample of its discovery prompts, its own cache."""
    task = resample_task(session.task, options.seed + 1 + b)
    problem = make_problem(session.loaded.model, session.graph, task, get_metric(session.metric_name),
                           options.ablation)
    return replace(session, task=task, problem=problem, options=options, cache={}, runs=1)


def _mean(values: list[Any]) -> float | None:
    vals = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


def bootstrap_session(session: Session, options: DiscoverOptions, reruns: int, out: str | Path | None = None,
                      progress: ProgressFn = no_progress, circuit: Circuit | None = None
                      ) -> tuple[Circuit, BootstrapResult]:
    """The run's circuit (made here unless given) with the bootstrap's frequencies and summary
    (see the module docstring), written to `out/circuit.json` when `out` is given."""
    check_reruns(reruns)
    if circuit is None:
        circuit = run_in_session(session, options, out)
    graph = session.graph
    t0 = time.perf_counter()
    keeps, circuits = [], []
    progress(0, reruns, "bootstrap reruns")
    for b in range(reruns):
        rerun_options = options.updated(seed=options.seed + 1 + b)
        c = run_in_session(_rerun_session(session, rerun_options, b), rerun_options)
        keeps.append(graph.to_flat(graph.mask_from_edges(c.in_circuit)).bool())
        circuits.append(c)
        progress(b + 1, reruns, "bootstrap reruns")
        log.info("bootstrap rerun %d/%d: %d edges", b + 1, reruns, c.results["n_edges_in_circuit"])
    res = BootstrapResult(torch.stack(keeps), tuple(circuits))
    freq = res.frequency
    counts = res.keeps.sum(0).tolist()
    edges = [{**e, "frequency": counts[graph.edge_position(e["edge"])] / reruns} for e in circuit.edges]
    core = freq >= STABLE
    core_mask = graph.from_flat(core.float())
    core_res = measure(session.problem, core_mask, session.baseline)
    core_info: dict[str, Any] = {"min_frequency": STABLE, "n_edges": int(core.sum()),
                                 "faithfulness": core_res["faithfulness"]}
    if session.heldout is not None:
        core_info["faithfulness_heldout"] = session.heldout.measure(core_mask)["faithfulness_heldout"]
    sizes = [float(c.results["n_edges_in_circuit"]) for c in circuits]
    held = [c.results.get("faithfulness_heldout") for c in circuits]
    summary = {
        "n_reruns": reruns,
        "resampling": "discovery prompts with replacement; seed + 1 + b",
        "size_mean": _mean(sizes),
        "size_interval": percentile_interval(sizes),
        "faithfulness_mean": _mean([c.results.get("faithfulness") for c in circuits]),
        "faithfulness_heldout_mean": _mean(held),
        "faithfulness_heldout_interval": percentile_interval(held),
        "jaccard_mean": jaccard_mean(res.keeps),
        "stable_core": core_info,
    }
    timings = {**circuit.timings_s, "bootstrap": round(time.perf_counter() - t0, 3)}
    circuit = replace(circuit, edges=edges, results={**circuit.results, "bootstrap": summary}, timings_s=timings,
                      params={**circuit.params, "bootstrap": reruns})
    if out is not None:
        circuit.save(Path(out))
    return circuit, res
