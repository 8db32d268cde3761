"""Head roles: what each attention head of a circuit does, measured on the model.

Every score is computed from the model's own forward pass (never typed in), on two kinds of
input, and lies in [0, 1]:

- **repeated random tokens** `BOS r1 … rL r1 … rL` (L up to 20; fixed seed):
  - `previous-token`: mean attention from position i to position i−1 (every i ≥ 1 after BOS).
  - `induction`: mean attention from the second copy's r_j to the first copy's r_(j+1) (the
    token that followed the current token last time; Olsson et al. 2022).
  - `duplicate-token`: mean attention from the second copy's r_j to the first copy's r_j (an
    earlier occurrence of the current token; Wang et al. 2022).
- **the task's clean prompts** (repeated random tokens when there is no task):
  - `copying`: the share of the head's attention that goes to tokens its OV circuit copies. A
    source token t is *copied* when t is among the top k tokens of the head's direct logit effect
    from that position (its value-output `LN1(x) W_V W_O` passed through the final norm and the
    unembedding; k = 5, or vocab/50 for vocabularies under 250 tokens, at least 1). The score is
    the attention mass, averaged over the destination positions, on non-BOS sources that the head
    copies (sources that get less than 1% attention from every destination are not checked) — so a head that rests on BOS scores low, and a head that attends to tokens and raises
    their logits (a name mover, an induction head) scores high. This is Wang et al.'s copy score,
    weighted by where the head actually looks.
  - `answer-attention`: attention from the metric position (the last prompt token) to the
    positions in the prompt that hold a correct answer token, averaged over prompts where the
    answer occurs in the prompt (IOI's name movers attend to the indirect object).

**Label.** A head's label is the best-scoring *attention role* (previous-token, induction,
duplicate-token, answer-attention) whose score reaches `CUTOFFS`. Copying is a property of the
OV circuit, not of the attention pattern, and most heads with a clear attention role also copy
(induction heads and name movers do by definition), so it is added as a suffix (`induction +
copying`) and labels a head on its own only when no attention role passes. Ties within `TIE`
are broken by `ROLES`' order (most specific first). See docs/report.md.

**Where the numbers come from.** The patterns and each layer's residual input are those of the
model's one forward pass (`Transformer.run(patterns=True, residuals=True)`), computed by the same
attention call that produces the layer's output; tests/test_roles_families.py checks them
against transformers' own attention weights for every family. (An earlier hand-written forward
here skipped the post-attention norm, so for Gemma 2/3 and OLMo 2 every layer past the first was
measured on the wrong residual stream.)
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from subcircuit.errors import UserError
from subcircuit.files import atomic_write_text
from subcircuit.graph import parse_edge, parse_node
from subcircuit.models.norms import normalize
from subcircuit.report.roles import ATTENTION_ROLES, CUTOFFS, ROLES, TIE, HeadRoles, label_of  # noqa: F401  (defined with the drawing)

MIN_SOURCE_WEIGHT = 0.01  # copying: sources no destination gives this much attention are skipped
SEQ_HALF = 20  # L of the repeated random tokens
N_SEQ = 8  # how many repeated random sequences
ROLES_FILE = "roles.json"
ROLES_FORMAT = "subcircuit.roles/1"


# ------------------------------------------------------------------------------ measured on the model's forward


def patterns_and_inputs(model: Any, tokens: Tensor, n_layers: int | None = None) -> tuple[list[Tensor], list[Tensor]]:
    """tokens [b p] -> (attention patterns per layer [h b q k] (fp32), each layer's residual
    input [b p d]), for the first `n_layers` layers (all by default): what every role score
    reads. Both come from the model's own forward pass (`Transformer.run`), so every family
    feature (post-norms, soft-caps, windows, q/k norms, rotary variants) is the model's."""
    with torch.no_grad():
        run = model.run(tokens, patterns=True, residuals=True, n_layers=n_layers)
    n = len(run.patterns)
    return [p.float() for p in run.patterns], [run.layer_input(layer) for layer in range(n)]


def _head_index(name: str) -> tuple[int, int] | None:
    """'a3.h5' -> (3, 5); None for any other name (other nodes, head inputs, non-names)."""
    try:
        node = parse_node(name)
    except UserError:
        return None
    if node.kind != "head" or node.port is not None:
        return None
    assert node.layer is not None and node.index is not None
    return node.layer, node.index


def circuit_heads(circuit: Any) -> list[str]:
    """The attention heads (`a{L}.h{H}`) that an edge of the circuit leaves or enters (a head's
    query, key or value input counts as the head; KV groups and whole layers are not heads)."""
    heads: dict[str, tuple[int, int]] = {}
    for edge in circuit.in_circuit:
        for end in parse_edge(edge):
            node = parse_node(end)
            if node.kind == "head":
                assert node.layer is not None and node.index is not None
                heads[node.component] = (node.layer, node.index)
    return sorted(heads, key=heads.__getitem__)


def _repeated_tokens(loaded: Any, seed: int = 0) -> tuple[Tensor, int, int] | None:
    """([n 1+2L] or [n 2L] repeated random tokens, L, offset of r1) or None when the vocabulary or
    context is too small."""
    from subcircuit.tasks.induction import vocabulary

    ids, bos = vocabulary(loaded)
    prefix = [bos] if bos is not None else []
    half = min(SEQ_HALF, (loaded.cfg.n_ctx - len(prefix)) // 2, len(ids))
    if half < 2:
        return None
    rng = random.Random(seed)
    rows = []
    for _ in range(N_SEQ):
        r = rng.sample(ids, half)
        rows.append(prefix + r + r)
    return torch.tensor(rows, device=loaded.model.device), half, len(prefix)


def _top_k(vocab: int) -> int:
    return 5 if vocab >= 250 else max(1, vocab // 50)


def _copying(model: Any, layer: int, head: int, pattern: Tensor, resid_in: Tensor, tokens: Tensor,
             dest: Tensor, skip_first: bool) -> float:
    """Copying score of one head (see the module docstring).

    pattern [b q k]; resid_in [b p d] (the layer's input); tokens [b p]; dest [b p] bool: the
    destination positions averaged over."""
    cfg, block = model.cfg, model.blocks[layer]
    with torch.no_grad():
        weight = (pattern * dest[:, :, None]).sum(1) / dest.sum().clamp(min=1)  # [b k] mean attention received
        if skip_first:
            weight[:, 0] = 0
        peak = (pattern * dest[:, :, None]).amax(1)  # [b k] the most attention a source gets
        src = (peak >= MIN_SOURCE_WEIGHT) & (weight > 0)  # [b k] sources worth checking
        if not src.any():
            return 0.0
        x = normalize(resid_in[src], block.ln1_w, block.ln1_b, cfg)  # [n d]
        g = head // cfg.group_size
        out = (x @ block.W_V[g] + block.b_V[g]) @ block.W_O[head]  # [n d] value-output per source
        if cfg.final_norm:
            if cfg.norm == "layernorm":
                out = out - out.mean(-1, keepdim=True)
            out = out * model.lnf_w
        logits = out.float() @ model.W_U.float()  # [n v]
        top = logits.topk(_top_k(logits.shape[-1]), dim=-1).indices  # [n k]
        copied = (top == tokens[src][:, None]).any(-1).float()  # [n]
        return float((weight[src] * copied).sum())


def head_roles(loaded: Any, heads: list[str], task: Any = None, seed: int = 0) -> dict[str, HeadRoles]:
    """Role scores for the named heads (`a{L}.h{H}`) of a loaded model; `task` (a `Task`, optional)
    adds answer-attention and measures copying on its clean prompts."""
    model = loaded.model
    parsed = {h: p for h in heads if (p := _head_index(h)) is not None}
    scores: dict[str, dict[str, float | None]] = {h: dict.fromkeys(ROLES) for h in parsed}
    if not parsed:
        return {}
    n_layers = 1 + max(layer for layer, _ in parsed.values())
    rep = _repeated_tokens(loaded, seed)
    if rep is not None:
        tokens, half, off = rep
        patterns, inputs = patterns_and_inputs(model, tokens, n_layers)
        n = tokens.shape[1]
        i = torch.arange(off + 1, n)
        second = torch.arange(off + half, off + 2 * half - 1)  # r_j of the second copy, j < L
        for h, (layer, idx) in parsed.items():
            a = patterns[layer][idx]  # [b q k]
            scores[h]["previous-token"] = float(a[:, i, i - 1].mean())
            scores[h]["induction"] = float(a[:, second, second - half + 1].mean())
            scores[h]["duplicate-token"] = float(a[:, second, second - half].mean())
            if task is None:
                dest = torch.zeros_like(tokens, dtype=torch.bool)
                dest[:, off:] = True
                scores[h]["copying"] = _copying(model, layer, idx, a, inputs[layer], tokens, dest, off > 0)
    if task is not None:
        t = task.to(model.device)
        patterns, inputs = patterns_and_inputs(model, t.clean, n_layers)
        b, p = t.clean.shape
        pos = torch.arange(p, device=t.clean.device)
        dest = pos[None, :] <= t.positions[:, None]  # [b p] real (unpadded) positions
        rows = torch.arange(b, device=t.clean.device)
        correct = t.correct  # [b n] (-1 padded)
        holds = ((t.clean[:, :, None] == correct[:, None, :]) & (correct[:, None, :] >= 0)).any(-1)
        holds &= pos[None, :] < t.positions[:, None]  # [b p] earlier positions holding an answer
        has = holds.any(-1)
        bos = loaded.meta.get("bos_token_id") if isinstance(getattr(loaded, "meta", None), dict) else None
        tok = getattr(loaded, "tokenizer", None)
        bos = getattr(tok, "bos_token_id", bos) if tok is not None else bos
        skip_first = bos is not None and bool((t.clean[:, 0] == bos).all())
        for h, (layer, idx) in parsed.items():
            a = patterns[layer][idx]  # [b q k]
            last = a[rows, t.positions]  # [b k]
            if has.any():
                scores[h]["answer-attention"] = float((last * holds.float()).sum(-1)[has].mean())
            scores[h]["copying"] = _copying(model, layer, idx, a, inputs[layer], t.clean, dest, skip_first)
    return {h: HeadRoles(h, {r: (None if v is None else round(v, 4)) for r, v in s.items()})
            for h, s in scores.items()}


# ------------------------------------------------------------------------------ roles.json


def save_roles(path: str | Path, roles: dict[str, HeadRoles], model: str, task: str | None) -> Path:
    """Write roles.json (scores, labels, cut-offs) atomically; a folder gets roles.json inside."""
    path = Path(path)
    if path.is_dir():
        path = path / ROLES_FILE
    d = {"format": ROLES_FORMAT, "model": model, "task": task, "cutoffs": CUTOFFS,
         "heads": {h: {"scores": r.scores, "label": r.label} for h, r in roles.items()}}
    atomic_write_text(path, json.dumps(d, indent=1))
    return path


def load_roles(path: str | Path) -> dict[str, HeadRoles]:
    """Read roles.json (labels are recomputed from the scores with the current cut-offs)."""
    path = Path(path)
    if path.is_dir():
        path = path / ROLES_FILE
    try:
        d = json.loads(path.read_text())
        if d.get("format") != ROLES_FORMAT:
            raise UserError(f"{path}: format {d.get('format')!r} is not {ROLES_FORMAT!r}")
        return {h: HeadRoles(h, {r: v.get("scores", {}).get(r) for r in ROLES}) for h, v in d["heads"].items()}
    except (json.JSONDecodeError, KeyError, AttributeError, TypeError) as e:
        raise UserError(f"{path}: not a valid roles file ({e})") from e
