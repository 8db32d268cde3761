"""Data-parallel scoring: EAP, EAP-IG and faithfulness over a prompt set split into shards, one
Ray actor per shard, each holding the model.

Every built-in metric is a mean over the prompts (`tasks.metrics`: "averaged over the batch"), and
EAP's and EAP-IG's scores are gradients of that mean (`methods.attribution`). For N prompts in
shards of n_i prompts, with L_i the mean loss of shard i,

    L = (1/N) Σ_i n_i L_i      so      ∂L/∂m = (1/N) Σ_i n_i ∂L_i/∂m,

and likewise for a metric value (faithfulness is a ratio of three metric values). So each actor
returns its shard's *sum* (its mean × n_i: `ShardScorer.score_sum`, `value_sums`) and the driver
divides the total by N: the same numbers as one process over all N prompts, up to float32
rounding (tested within 1e-5). No change to the methods is needed: the shard is a `Problem` of its
own (the task's rows lo:hi with their own corrupted prompts; a mean ablation keeps the mean over
the WHOLE prompt set, so every shard ablates with the same vectors as one process would).

    pool = ShardPool("smollm2-135m", "ioi", DiscoverOptions.build("eap-ig", n_examples=64), shards=4)
    scores = pool.scores()                  # flat [n_edges], as `eap_ig` in one process
    results = pool.measure(circuit_mask)    # metric_full_model, metric_circuit, ..., faithfulness
    pool.close()

Each actor asks for `cpus` CPUs (default 1) or, with `device = "cuda"`, `gpus` GPUs (default 1);
the cluster needs room for all the pool's actors at once (`actors`, default one per shard; fewer
actors than shards score their shards in turn, which bounds the memory: one model and one
shard's activations per actor). Ray is imported only when a pool is made.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from subcircuit.errors import UserError
from subcircuit.evaluation.faithfulness import Baseline, metric_values
from subcircuit.methods import Context, Problem, get_method
from subcircuit.runs.options import DiscoverOptions
from subcircuit.runs.pipeline import run_metric

__all__ = ["PARALLEL_METHODS", "ShardPool", "ShardScorer", "shard_bounds", "shard_problem"]

PARALLEL_METHODS = ("eap", "eap-ig")


def shard_bounds(n: int, shards: int) -> list[tuple[int, int]]:
    """[lo, hi) of each of `shards` contiguous shards of n prompts (sizes differ by at most one)."""
    if shards < 1 or shards > n:
        raise UserError(f"--shards {shards} is invalid; expected 1..{n} (the number of prompts)")
    return [(i * n // shards, (i + 1) * n // shards) for i in range(shards)]


def shard_problem(model: Any, graph: Any, task: Any, metric: Any, ablation: str, lo: int, hi: int) -> Problem:
    """The `Problem` of prompts lo:hi of `task` (a mean ablation: the mean over every prompt)."""
    from dataclasses import replace

    from subcircuit.methods import make_problem
    from subcircuit.patching import make_ablation

    task = task.to(model.device)
    part = task.rows(slice(lo, hi))
    problem = make_problem(model, graph, part, metric, ablation)
    if ablation == "mean":
        abl = make_ablation(model, graph, "mean", part.clean, part.corrupted, reference=task.corrupted)
        problem = replace(problem, ablation=abl)
    return problem


class ShardScorer:
    """Holds the model and the whole prompt set (built as one process would, same seed); scores
    shards of it (the `Problem` of each shard is built on first use and kept). Used as a Ray actor
    (`ShardPool`) or directly."""

    def __init__(self, model: str, task: str, options: DiscoverOptions, threads: int = 1) -> None:
        from subcircuit.graph import build_graph
        from subcircuit.models import load
        from subcircuit.models.loading import check_device
        from subcircuit.tasks import get_metric, get_task

        torch.set_num_threads(max(1, threads))
        check_device(options.device)
        self.loaded = load(model, options.device, options.dtype)
        self.task = get_task(task, self.loaded, options.n_examples, options.seed)
        self.graph = build_graph(self.loaded.cfg, options.granularity)
        self.metric = get_metric(run_metric(task, self.task, options)[0])  # the metric a one-process run uses
        self.options = options
        self.problems: dict[tuple[int, int], Problem] = {}

    def n_total(self) -> int:
        """The number of prompts in the whole set."""
        return self.task.n

    def full_mask(self) -> Tensor:
        """[receiver sender] the full graph's mask (1 on every edge that exists)."""
        return self.graph.full_mask()

    def problem(self, lo: int, hi: int) -> Problem:
        if (lo, hi) not in self.problems:
            torch.manual_seed(self.options.seed)
            self.problems[lo, hi] = shard_problem(self.loaded.model, self.graph, self.task, self.metric,
                                                  self.options.ablation, lo, hi)
        return self.problems[lo, hi]

    def score_sum(self, lo: int, hi: int) -> Tensor:
        """[n_edges] the method's scores over prompts lo:hi × their number (float64)."""
        spec = get_method(self.options.method)
        torch.manual_seed(self.options.seed)
        res = spec.fn(self.problem(lo, hi), self.options.method_options, Context(seed=self.options.seed))
        return res.scores.double() * (hi - lo)

    def value_sums(self, lo: int, hi: int, masks: Tensor) -> Tensor:
        """masks [c receiver sender] -> [c] the metric's value over prompts lo:hi × their number (float64)."""
        return torch.tensor(metric_values(self.problem(lo, hi), masks), dtype=torch.float64) * (hi - lo)


class ShardPool:
    """`actors` Ray actors (`ShardScorer`, default one per shard) scoring `shards` shards of one
    prompt set, round robin (an actor scores its shards one after the other); see the module
    docstring. `address`: an existing Ray cluster; none: Ray must be initialized in this process
    or a local instance is started (and stopped by `close`)."""

    def __init__(self, model: str, task: str, options: DiscoverOptions, shards: int, cpus: float = 1.0,
                 gpus: float | None = None, address: str | None = None, actors: int | None = None) -> None:
        if options.method not in PARALLEL_METHODS:
            raise UserError(f"data-parallel scoring is for {', '.join(PARALLEL_METHODS)}, not {options.method!r}")
        actors = shards if actors is None else actors
        if shards < 1 or not 1 <= actors <= shards:
            raise UserError(f"--shards {shards} with {actors} actors is invalid; expected 1 <= actors <= shards")
        try:
            import ray
        except ImportError:
            raise UserError("data-parallel scoring needs Ray: pip install 'subcircuit[ray]'") from None
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
            self._started = True
        if gpus is None:
            gpus = 1.0 if options.device.startswith("cuda") else 0.0
        res = {"num_gpus": gpus, "num_cpus": 0} if gpus else {"num_cpus": cpus}
        actor = ray.remote(ShardScorer)
        self.actors = [actor.options(**res).remote(model, task, options, max(1, int(cpus))) for _ in range(actors)]
        totals = ray.get([a.n_total.remote() for a in self.actors])
        self.n = totals[0]
        self.bounds = shard_bounds(self.n, shards)

    def _each(self, method: str, *args: Any) -> list[Any]:
        refs = [getattr(self.actors[i % len(self.actors)], method).remote(lo, hi, *args)
                for i, (lo, hi) in enumerate(self.bounds)]
        return self._ray.get(refs)

    def scores(self) -> Tensor:
        """[n_edges] float32: the method's scores over every prompt (Σ shard sums / N)."""
        return (torch.stack(self._each("score_sum")).sum(0) / self.n).float()

    def values(self, masks: Tensor) -> list[float]:
        """masks [c receiver sender] -> the metric's value over every prompt, per configuration."""
        sums = self._each("value_sums", masks.detach().cpu().float())
        return [float(v) for v in torch.stack(sums).sum(0) / self.n]

    def measure(self, mask: Tensor) -> dict[str, float | None]:
        """circuit.json's results for one circuit mask [receiver sender] (as `evaluation.faithfulness.measure`)."""
        full_mask = self._ray.get(self.actors[0].full_mask.remote()).to(mask)
        full, empty, value = self.values(torch.stack([full_mask, torch.zeros_like(mask), mask]))
        base = Baseline(full, empty)
        return {"metric_full_model": full, "metric_circuit": value, "metric_empty_circuit": empty,
                "faithfulness": base.normalize(value)}

    def close(self) -> None:
        for a in self.actors:
            self._ray.kill(a)
        self.actors = []
        if self._started:
            self._ray.shutdown()

    def __enter__(self) -> ShardPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
