"""Train `toy-induction-2l`: a 2-layer attention-only transformer with induction heads.

Induction ("... A B ... A -> B") needs two attention heads in series: a layer-0
*previous-token head* copies each token's predecessor into its residual stream, and a layer-1
*induction head* uses that (K-composition) to attend from the current token A to the token
right after A's earlier occurrence, then copies it (Olsson et al. 2022, "In-context learning
and induction heads"). This script trains a model that has exactly this circuit, so it can
serve as a model with a known circuit: previous-token head a0.h0 -> induction head a1.h0
(K-composition: the edge a0.h0 -> a1.h0<k>).

Training data (`random_layout_batch`): sequences of N_CTX raw ids, position 0 always BOS (id 0),
the rest uniform over 1..VOCAB-1, with one span of length L (4..20) copied to a later place:
the span starts at a random position s >= 1 and its copy at a random t >= s + L (random
prefix, random gap). Random offsets matter: a previous model trained with the copy always
right after `BOS r` learned a positional shortcut (layer-0 heads attending to position ~q/2)
instead of previous-token and induction heads.

Recipe:
- vocab 256 (ln 255 = 5.54; a smaller vocab makes chance repeats of a token common at 64
  positions, which blurs the induction target), d_model 128, 2 heads of 64 per layer (a head's
  OV circuit must copy any of 255 tokens: with d_head 16 it could not), 64 learned positions,
  LayerNorm;
- tied embeddings during training (logits = LN(resid) @ W_E^T + b_U, as in GPT-2), saved
  untied (W_U = trained W_E^T), so the saved model runs our plain forward pass;
- next-token loss weighing the predictable targets (the copy's tokens after its first) 1.0
  and all other, random, targets 0.1;
- AdamW (no weight decay), lr 3e-3 with 100 warm-up steps, batch 64, 1200 steps;
- supervision of the circuit, annealed away: during the first half of training an auxiliary
  loss pulls a0.h0's attention to the previous token (-log attention, every position), a1.h0's
  attention to the token after the earlier occurrence (the copy's positions) and makes a1.h0's
  output alone (through the final norm and the unembedding) predict the copy's next token; its
  weight then falls linearly to 0 at 3/4 of training, and the last quarter is plain next-token
  training. The heads keep their roles without it because the next-token loss needs them (see
  the scores in the meta).

What did not work within ~1000 CPU steps (all with random layouts): no supervision (vocab
64/128, also with periodic repeats, a 6x larger init or sinusoidally initialised positions —
the models sat on the "tokens seen before are likelier" plateau, no head formed); supervising
only the two attention patterns (both heads formed at once, but the repeated-copy loss stayed
at ~3.3 of 4.1 at vocab 64: the OV copy did not form); 4 heads of 64 (slower per step, and
at 600 steps the criterion was not met yet).

Everything is deterministic (seeded torch generators, CPU, one thread by default). The script
then measures, on 256 fresh random-layout sequences (L = 20): the mean next-token loss on the
repeated copy must be below 10% of the loss on the first copy; it also scores every layer-0
head as a previous-token head (mean attention from i to i-1) and every layer-1 head as an
induction head, and records the best of each in the meta (named only above HEAD_SCORE).

    python scripts/train_toy_induction.py [--out src/subcircuit/data/models/toy-induction-2l]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from subcircuit.models import ModelConfig, Transformer, save
from subcircuit.models.attention import _keys_or_values, attention_pattern
from subcircuit.models.norms import normalize
from subcircuit.models.transformer import embed

VOCAB = 256
N_CTX = 64
BOS = 0
SEED = 0
STEPS = 1200
BATCH = 64
LR = 3e-3
WARMUP = 100
SPAN = (4, 20)  # copied span length, inclusive
OTHER_WEIGHT = 0.1  # loss weight of the unpredictable targets
AUX_WEIGHT = 1.0  # attention supervision, full for the first half, 0 from 3/4 of training on
PREV_HEAD, IND_HEAD = 0, 0  # supervised heads: a0.h{PREV_HEAD}, a1.h{IND_HEAD}
HEAD_SCORE = 0.3  # a head is named a previous-token / induction head above this mean attention
EVAL_SPAN = 20

HEADS = 2
CONFIG = ModelConfig(
    family="gpt2",
    n_layers=2,
    d_model=128,
    n_heads=HEADS,
    d_head=64,
    d_mlp=0,
    vocab_size=VOCAB,
    n_ctx=N_CTX,
    norm="layernorm",
    positional="learned",
    mlp="none",
    act="gelu_new",
    causal=True,
    final_norm=True,
)

Layout = list[tuple[int, int, int]]  # per row (s, t, L): span at s..s+L-1, copy at t..t+L-1


def random_layout_batch(n: int, g: torch.Generator, span: int | None = None) -> tuple[Tensor, Tensor, Layout]:
    """n sequences [n N_CTX], loss weights [n N_CTX-1] and layouts.

    Every row: BOS, then uniform random ids 1..VOCAB-1, with one span of length L (SPAN, or
    `span`) at a random start s >= 1 copied to a random t >= s + L. Weights: 1.0 for the
    losses that predict the copy's tokens after its first one, OTHER_WEIGHT elsewhere (loss j
    predicts token j+1)."""
    x = torch.randint(1, VOCAB, (n, N_CTX), generator=g)
    x[:, 0] = BOS
    w = torch.full((n, N_CTX - 1), OTHER_WEIGHT)
    layout = []
    for i in range(n):
        L = span or int(torch.randint(SPAN[0], SPAN[1] + 1, (1,), generator=g))
        s = int(torch.randint(1, N_CTX - 2 * L + 1, (1,), generator=g))
        t = int(torch.randint(s + L, N_CTX - L + 1, (1,), generator=g))
        x[i, t : t + L] = x[i, s : s + L]
        w[i, t : t + L - 1] = 1.0
        layout.append((s, t, L))
    return x, w, layout


def forward_with_patterns(model: Transformer, tokens: Tensor, tied: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """tokens [b p] -> (next-token losses [b p-1], layer-0 and layer-1 attention [h b q k],
    next-token losses [b p-1] of a1.h{IND_HEAD}'s output alone, through the final norm and
    the unembedding: its direct prediction)."""
    cfg = model.cfg
    resid = embed(model, tokens)
    patterns = []
    for block in model.blocks:
        x = resid[None, None]
        pattern = attention_pattern(block, cfg, x, x, None)  # [1 h b q k]; as in `attention`, kept
        z = pattern @ _keys_or_values(block.W_V, block.b_V, block, cfg, x, None)  # [1 h b q e]
        resid = resid + torch.einsum("hbpe,hed->bpd", z[0], block.W_O) + block.b_O
        patterns.append(pattern[0])
        head_out = z[0, IND_HEAD] @ block.W_O[IND_HEAD]  # [b p d]; kept for the last layer
    W_U = model.W_E.T if tied else model.W_U
    logits = (normalize(resid, model.lnf_w, model.lnf_b, cfg) @ W_U + model.b_U)[:, :-1]
    direct = (normalize(head_out, model.lnf_w, model.lnf_b, cfg) @ W_U + model.b_U)[:, :-1]
    direct_losses = F.cross_entropy(direct.transpose(1, 2), tokens[:, 1:], reduction="none")
    return F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none"), patterns[0], patterns[1], direct_losses


def induction_index(layout: Layout) -> tuple[Tensor, Tensor, Tensor]:
    """(row, query, key) of every induction target: query t+j (j = 0..L-2) -> key s+j+1."""
    rows, qs, ks = [], [], []
    for i, (s, t, L) in enumerate(layout):
        q = torch.arange(t, t + L - 1)
        rows.append(torch.full_like(q, i))
        qs.append(q)
        ks.append(q - (t - s) + 1)
    return torch.cat(rows), torch.cat(qs), torch.cat(ks)


def evaluate(model: Transformer, tokens: Tensor, layout: Layout, tied: bool = False) -> dict:
    """Losses on the first copy / the repeated copy (each copy's first token left out), and
    previous-token scores of layer-0 heads / induction scores of layer-1 heads."""
    with torch.no_grad():
        loss, pat0, pat1, _ = forward_with_patterns(model, tokens, tied)
    rows, qi, ki = induction_index(layout)
    first = torch.cat([loss[i, s : s + L - 1] for i, (s, t, L) in enumerate(layout)]).mean().item()
    repeated = loss[rows, qi].mean().item()
    q = torch.arange(1, tokens.shape[1])
    prev = pat0[:, :, q, q - 1].mean((1, 2))
    ind = pat1[:, rows, qi, ki].mean(1)
    return {"first": first, "repeated": repeated, "prev": prev.tolist(), "ind": ind.tolist()}


def init_model(g: torch.Generator) -> Transformer:
    """GPT-2-style init: N(0, 0.02) weights, zero biases, unit norm weights."""
    model = Transformer(CONFIG)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("_w"):
                p.fill_(1.0)
            elif name.split(".")[-1].startswith("W_"):
                p.copy_(0.02 * torch.randn(p.shape, generator=g))
    return model


def aux_weight(step: int, steps: int) -> float:
    """AUX_WEIGHT for the first half, linearly down to 0 at 3/4, then 0."""
    half, quarter = steps // 2, max(1, steps // 4)
    return AUX_WEIGHT * min(1.0, max(0.0, 1.0 - (step - half) / quarter))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "src/subcircuit/data/models/toy-induction-2l"))
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--lr", type=float, default=LR)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the shipped model was trained with 1)")
    ap.add_argument("--every", type=int, default=100, help="print probe losses and head scores every N steps")
    ap.add_argument("--heads", type=int, default=HEADS, help="heads per layer (of d_head 64)")
    args = ap.parse_args()
    global CONFIG
    CONFIG = ModelConfig.from_dict({**CONFIG.to_dict(), "n_heads": args.heads})

    torch.manual_seed(SEED)
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(SEED)
    model = init_model(g)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / WARMUP))
    probe = random_layout_batch(64, torch.Generator().manual_seed(999), span=EVAL_SPAN)
    t0 = time.time()
    q = torch.arange(1, N_CTX)
    for step in range(args.steps):
        x, w, layout = random_layout_batch(BATCH, g)
        losses, pat0, pat1, direct = forward_with_patterns(model, x, tied=True)
        loss = (losses * w).sum() / w.sum()
        lam = aux_weight(step, args.steps)
        if lam > 0:
            rows, qi, ki = induction_index(layout)
            aux = -pat0[PREV_HEAD][:, q, q - 1].clamp_min(1e-6).log().mean()
            aux = aux - pat1[IND_HEAD][rows, qi, ki].clamp_min(1e-6).log().mean()
            aux = aux + direct[rows, qi].mean()
            loss = loss + lam * aux
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % args.every == 0 or step == args.steps - 1:
            ev = evaluate(model, probe[0], probe[2], tied=True)
            print(
                f"step {step:5d}  loss {loss.item():.3f}  aux weight {lam:.2f}  probe first/repeated "
                f"{ev['first']:.3f}/{ev['repeated']:.3f}  prev {[round(v, 2) for v in ev['prev']]}  "
                f"ind {[round(v, 2) for v in ev['ind']]}  ({time.time() - t0:.0f}s)",
                flush=True,
            )
    train_s = time.time() - t0
    with torch.no_grad():
        model.W_U.copy_(model.W_E.T)  # untie: the saved model runs our plain forward pass
    model.requires_grad_(False).eval()

    tokens, _, layout = random_layout_batch(256, torch.Generator().manual_seed(12345), span=EVAL_SPAN)
    ev = evaluate(model, tokens, layout)
    canon_r = torch.randint(1, VOCAB, (256, EVAL_SPAN), generator=torch.Generator().manual_seed(12345))
    canon = torch.cat([torch.full((256, 1), BOS), canon_r, canon_r], dim=1)
    ev_canon = evaluate(model, canon, [(1, 1 + EVAL_SPAN, EVAL_SPAN)] * 256)
    prev, ind = ev["prev"], ev["ind"]
    prev_head = max(range(len(prev)), key=prev.__getitem__)
    ind_head = max(range(len(ind)), key=ind.__getitem__)
    ratio = ev["repeated"] / ev["first"]
    print(f"random layouts: loss first copy {ev['first']:.4f}  repeated {ev['repeated']:.4f}  ratio {ratio:.4f}")
    print(f"BOS r r:        loss first copy {ev_canon['first']:.4f}  repeated {ev_canon['repeated']:.4f}")
    print("layer-0 previous-token scores", [round(s, 3) for s in prev], f"-> a0.h{prev_head}")
    print("layer-1 induction scores     ", [round(s, 3) for s in ind], f"-> a1.h{ind_head}")
    if ratio >= 0.1:
        raise SystemExit(f"induction criterion failed: repeated/first loss ratio {ratio:.3f} >= 0.1")
    if prev[prev_head] < HEAD_SCORE or ind[ind_head] < HEAD_SCORE:
        raise SystemExit("no clear previous-token head or induction head")

    meta = {
        "description": "attention-only 2-layer transformer with a previous-token head and an induction head",
        "tokenizer": None,
        "bos_token_id": BOS,
        "token_ids": f"raw ids; 0 = BOS (always at position 0), 1..{VOCAB - 1} = content tokens",
        "training": {
            "script": "scripts/train_toy_induction.py",
            "seed": SEED,
            "steps": args.steps,
            "batch": BATCH,
            "lr": args.lr,
            "optimizer": f"AdamW (weight decay 0), {WARMUP} linear warm-up steps, then constant",
            "data": f"BOS + uniform ids 1..{VOCAB - 1} with one span (length {SPAN[0]}..{SPAN[1]}) at a random "
            "start s >= 1 copied to a random t >= s + L (random prefix and gap)",
            "loss": f"next-token cross-entropy, weight 1 on the copied tokens, {OTHER_WEIGHT} elsewhere",
            "attention_supervision": f"auxiliary loss: -log attention of a0.h{PREV_HEAD} to i-1 (all positions) and "
            f"of a1.h{IND_HEAD} to the token after the earlier occurrence (the copy's positions), plus the next-token "
            f"loss of a1.h{IND_HEAD}'s output alone (final norm + unembedding) at the copy's positions; weight "
            f"{AUX_WEIGHT} for the first half of training, linearly to 0 at 3/4, none in the last quarter",
            "heads": args.heads,
            "embeddings": "tied during training (W_U = W_E^T), saved untied",
            "seconds_cpu": round(train_s, 1),
        },
        "criterion": "loss on the repeated copy < 10% of the loss on the first copy (fresh random-layout sequences)",
        "evaluation": {
            "sequences": f"256 fresh random-layout sequences (span {EVAL_SPAN}, random start and gap), "
            "generator seed 12345 (random_layout_batch)",
            "loss_first_half": round(ev["first"], 4),
            "loss_repeated_half": round(ev["repeated"], 4),
            "ratio": round(ratio, 4),
            "uniform_loss": round(math.log(VOCAB - 1), 4),
            "bos_r_r": {
                "loss_first_half": round(ev_canon["first"], 4),
                "loss_repeated_half": round(ev_canon["repeated"], 4),
                "ratio": round(ev_canon["repeated"] / ev_canon["first"], 4),
            },
            "prev_token_scores_layer0": [round(s, 4) for s in prev],
            "induction_scores_layer1": [round(s, 4) for s in ind],
            "prev_token_score": "mean attention from position i to i-1 (i >= 1)",
            "induction_score": "mean attention from the repeated copy's token j to the first copy's token j+1",
        },
        "prev_token_head": f"a0.h{prev_head}",
        "prev_token_head_score": round(prev[prev_head], 4),
        "induction_head": f"a1.h{ind_head}",
        "induction_head_score": round(ind[ind_head], 4),
    }
    folder = save(model, args.out, meta)
    print(f"saved to {folder} ({sum(f.stat().st_size for f in folder.iterdir()) / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
