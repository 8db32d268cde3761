"""The one patching primitive: run the model while every receiver reads a per-edge mix of its
senders' outputs in this run and their ablated outputs.

For a receiver r and mixing weights m[r, s] (1 = the sender's output in this run, 0 = its
ablated output, fractions allowed and differentiable), r's input is

    x_r = Σ_s  m[r,s] · out_s  +  (1 − m[r,s]) · abl_s   (+ constant biases)
        = base_stage(r)  +  Σ_s m[r,s] · (out_s − abl_s)

where `base` (the sum of all ablated outputs the receiver can read, plus the attention output
biases b_O, which belong to no sender) is computed once per ablation, and out_s is the sender's
output *in this patched run*, so upstream removals propagate (ACDC's semantics). Removing
the edge s→r therefore gives r the input `current − out_s + abl_s` and leaves every other
receiver alone.

Ablated outputs come from a forward pass on the corrupted prompts (`corrupted`, the default),
the mean over a reference batch (`mean`, per position) or zeros (`zero`).

Masks have shape [c receiver sender]: c configurations run in one batched pass. Senders are
ordered by computation stage, so each stage's receivers read a prefix of the senders.

The public API is this package's namespace; its modules starting with `_` are private:

- `Patcher` (`patcher.py`): `logits()` runs the engine without autograd (`_fast`: a sender
  stored once when every configuration agrees on it, only the senders a receiver needs read,
  dead components skipped, outputs reused across calls with a `Memo`); `logits_with_grad()`
  runs the autograd engine (`_autograd`), which computes every component for every
  configuration and is the reference the other is tested against. The caller picks the engine
  by the entry point, never through the global grad mode. Both start mid-model from
  `Patcher.prefix` (every sender output before a stage, cached) and, with `positions`, compute
  logits only where the metric reads.
- `Ablation`, `make_ablation`, `sender_outputs`, `Prefix` (`ablation.py`).
- `Memo` (`_memo.py`): component outputs reused across runs without autograd.

Data flows one way inside the package: ablation → _common → (_memo → _senders → _fast |
_autograd) → patcher.
"""

from subcircuit.patching._memo import Memo
from subcircuit.patching.ablation import (
    ABLATIONS,
    Ablation,
    AblationKind,
    Prefix,
    ablation_from_outputs,
    make_ablation,
    sender_outputs,
)
from subcircuit.patching.patcher import Patcher, patched_logits

__all__ = ["ABLATIONS", "Ablation", "AblationKind", "Memo", "Patcher", "Prefix", "ablation_from_outputs",
           "make_ablation", "patched_logits", "sender_outputs"]
