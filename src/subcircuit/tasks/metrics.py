"""Metrics: how well a (patched) model does a task, as one number per mask configuration.

Every metric has the signature

    fn(logits: [c b v], task: Task, base_logits: [b v]) -> [c]

`logits` are the next-token logits of c model configurations (c circuits / mask settings run
side by side), already gathered at each example's metric position `task.positions`;
`base_logits` are the full, unpatched model's logits at the same positions. The result is one
number per configuration, averaged over the batch. All arithmetic is in fp32 or better
(log-softmax in fp64 for KL) whatever dtype the model ran in.

Sign and direction, once for all metrics:

| name         | value                                                           | better |
|--------------|-----------------------------------------------------------------|--------|
| `kl`         | KL(full model ‖ patched) of the next-token distributions        | lower  |
| `logit-diff` | mean logit of the correct answers − mean logit of the wrong ones| higher |
| `prob-diff`  | Σ p(correct answers) − Σ p(wrong answers)                       | higher |
| `nll`        | −log p(correct answer), mean over the correct answers           | lower  |
| `accuracy`   | 1 if the best-scored answer among correct ∪ wrong is correct    | higher |

Algorithms never look at `higher_is_better`: they call `Metric.loss`, which is the value
oriented so that LOWER IS BETTER (negated for higher-is-better metrics). ACDC's "the metric got
worse by less than τ" is then always `loss(patched) − loss(current) < τ`.

`kl` is ACDC's default: it needs no answers, is zero exactly when the patched model agrees with
the full model, and measures the whole distribution rather than two logits. The others are the
"natural" metrics of the tasks' papers (logit difference for IOI, probability difference for
Greater-Than). Answers are the rows of `task.correct` / `task.wrong` ([b n], padded with -1);
padding entries are ignored by every metric.

`accuracy` compares only the answer tokens (max logit over the valid correct answers against
max logit over the valid wrong ones; ties count as wrong), not the argmax over the whole
vocabulary, so it asks "does the model prefer a right answer to a wrong one".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from subcircuit.errors import UserError, unknown
from subcircuit.tasks.base import Task

MetricFn = Callable[[Tensor, Task, Tensor], Tensor]


@dataclass(frozen=True)
class Metric:
    """A named metric. `fn(logits [c b v], task, base_logits [b v]) -> [c]`; see the module doc."""

    name: str
    higher_is_better: bool
    fn: MetricFn
    description: str = ""

    def __call__(self, logits: Tensor, task: Task, base_logits: Tensor) -> Tensor:
        """The metric's value [c] (accepts [b v] logits too, returning a 0-d tensor)."""
        if logits.dim() == 2:
            return self.fn(logits.unsqueeze(0), task, base_logits)[0]
        return self.fn(logits, task, base_logits)

    def loss(self, logits: Tensor, task: Task, base_logits: Tensor) -> Tensor:
        """The value oriented so that lower is better: [c]. Every algorithm minimizes this."""
        value = self(logits, task, base_logits)
        return -value if self.higher_is_better else value

    @staticmethod
    def custom(fn: MetricFn, name: str = "custom", higher_is_better: bool = False, description: str = "") -> Metric:
        """Wrap a user callable with the metric signature (see the module docstring)."""
        if not callable(fn):
            raise UserError(f"custom metric {name!r} is not callable")
        return Metric(name, higher_is_better, fn, description or "user-supplied metric")


# ------------------------------------------------------------------------------ helpers


def logits_at(logits: Tensor, positions: Tensor) -> Tensor:
    """Gather each example's metric position: [b p v] -> [b v], or [c b p v] -> [c b v]."""
    b = positions.shape[0]
    rows = torch.arange(b, device=logits.device)
    pos = positions.to(logits.device)
    return logits[rows, pos] if logits.dim() == 3 else logits[:, rows, pos]


def answer_values(values: Tensor, answers: Tensor) -> tuple[Tensor, Tensor]:
    """values [c b v] at answer ids [b n] (padded with -1) -> ([c b n] values, [b n] bool valid)."""
    valid = answers >= 0
    idx = answers.clamp(min=0).to(values.device)
    c = values.shape[0]
    got = values.gather(-1, idx.unsqueeze(0).expand(c, *idx.shape))
    return got, valid.to(values.device)


def _masked_mean(x: Tensor, valid: Tensor) -> Tensor:
    """Mean of x [c b n] over the valid [b n] entries of each row -> [c b] (0 for empty rows)."""
    w = valid.to(x.dtype)
    return (x * w).sum(-1) / w.sum(-1).clamp(min=1)


def _masked_sum(x: Tensor, valid: Tensor) -> Tensor:
    return (x * valid.to(x.dtype)).sum(-1)


# ------------------------------------------------------------------------------ the metrics


def kl_divergence(logits: Tensor, task: Task, base_logits: Tensor) -> Tensor:
    """KL(full ‖ patched) = Σ_v p_full (log p_full − log p_patched), mean over the batch -> [c]."""
    logp = torch.log_softmax(logits.double(), dim=-1)
    logq = torch.log_softmax(base_logits.double(), dim=-1).unsqueeze(0)
    kl = (logq.exp() * (logq - logp)).sum(-1)
    return kl.mean(-1).to(torch.float32)


def logit_diff(logits: Tensor, task: Task, base_logits: Tensor) -> Tensor:
    """mean_valid logit[correct] − mean_valid logit[wrong], mean over the batch -> [c]."""
    x = logits.float()
    good, gv = answer_values(x, task.correct)
    bad, bv = answer_values(x, task.wrong)
    return (_masked_mean(good, gv) - _masked_mean(bad, bv)).mean(-1)


def prob_diff(logits: Tensor, task: Task, base_logits: Tensor) -> Tensor:
    """Σ p(correct) − Σ p(wrong) (softmax over the whole vocabulary), mean over the batch -> [c]."""
    p = torch.softmax(logits.float(), dim=-1)
    good, gv = answer_values(p, task.correct)
    bad, bv = answer_values(p, task.wrong)
    return (_masked_sum(good, gv) - _masked_sum(bad, bv)).mean(-1)


def nll(logits: Tensor, task: Task, base_logits: Tensor) -> Tensor:
    """−log p(correct), mean over each example's valid correct answers, then the batch -> [c]."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    good, gv = answer_values(logp, task.correct)
    return (-_masked_mean(good, gv)).mean(-1)


def accuracy(logits: Tensor, task: Task, base_logits: Tensor) -> Tensor:
    """Fraction of examples whose best correct answer out-scores every wrong answer -> [c]."""
    x = logits.float()
    good, gv = answer_values(x, task.correct)
    bad, bv = answer_values(x, task.wrong)
    best_good = good.masked_fill(~gv, float("-inf")).amax(-1)
    best_bad = bad.masked_fill(~bv, float("-inf")).amax(-1)
    return (best_good > best_bad).float().mean(-1)


BUILTIN_METRICS = ("kl", "logit-diff", "prob-diff", "nll", "accuracy")

METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("kl", False, kl_divergence, "KL divergence of the full model's next-token distribution to the patched one"),
        Metric("logit-diff", True, logit_diff, "logit of the correct answer minus logit of the wrong one"),
        Metric("prob-diff", True, prob_diff, "probability of the correct answers minus that of the wrong ones"),
        Metric("nll", False, nll, "negative log-probability of the correct answer"),
        Metric("accuracy", True, accuracy, "fraction of examples preferring a correct answer to every wrong one"),
    )
}


def get_metric(metric: str | Metric | MetricFn) -> Metric:
    """A metric by name (`kl`, `logit-diff`, ...), a `Metric`, or a bare callable (lower is better)."""
    if isinstance(metric, Metric):
        return metric
    if isinstance(metric, str):
        if metric not in METRICS:
            raise unknown("metric", metric, METRICS)
        return METRICS[metric]
    if callable(metric):
        return Metric.custom(metric, getattr(metric, "__name__", "custom"))
    raise UserError(f"a metric must be a name, a Metric or a callable, not {type(metric).__name__}")


@torch.no_grad()
def full_model_scores(model: Callable[[Tensor], Tensor], task: Task, metrics: list[str] | None = None) -> dict[str, float]:
    """The unpatched model's value of each metric (default: the built-in ones) on the clean prompts, plus (for the answer
    metrics) on the corrupted prompts under the key `"<name>@corrupted"`.

    model: tokens [b p] -> logits [b p v]. For `kl` the clean value is 0 by definition; the
    corrupted value is KL(clean run ‖ corrupted run), how far apart the two inputs put the model.
    """
    names = metrics or list(BUILTIN_METRICS)
    base = logits_at(model(task.clean), task.positions).float()
    corr = logits_at(model(task.corrupted), task.positions).float()
    out: dict[str, float] = {}
    for name in names:
        m = get_metric(name)
        out[name] = float(m(base, task, base))
        out[f"{name}@corrupted"] = float(m(corr, task, base))
    return out
