"""toy-induction-2l: the shipped model loads, is small, does induction, and has a
previous-token head in layer 0 and an induction head in layer 1 (fast tier)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from subcircuit.models import MODELS, load
from subcircuit.models.attention import attention, attention_pattern
from subcircuit.models.loading import data_dir
from subcircuit.models.transformer import embed

NAME = "toy-induction-2l"
SPAN = 20


@pytest.fixture(scope="module")
def toy():
    if not MODELS[NAME].available():
        pytest.fail(f"{NAME} is not shipped; run scripts/train_toy_induction.py")
    return load(NAME)


def _random_layouts(toy, n: int, seed: int) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """n sequences BOS + random ids with a span of length SPAN at a random start s >= 1 copied
    to a random t >= s + SPAN (the layout the model was trained and evaluated on)."""
    cfg, bos = toy.cfg, toy.meta["bos_token_id"]
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, cfg.vocab_size, (n, cfg.n_ctx), generator=g)
    x[:, 0] = bos
    layout = []
    for i in range(n):
        s = int(torch.randint(1, cfg.n_ctx - 2 * SPAN + 1, (1,), generator=g))
        t = int(torch.randint(s + SPAN, cfg.n_ctx - SPAN + 1, (1,), generator=g))
        x[i, t : t + SPAN] = x[i, s : s + SPAN]
        layout.append((s, t))
    return x, layout


def test_config_and_size(toy):
    cfg = toy.cfg
    assert (cfg.n_layers, cfg.mlp, cfg.positional, cfg.norm, cfg.family) == (2, "none", "learned", "layernorm", "gpt2")
    assert toy.tokenizer is None and cfg.vocab_size >= 2 * SPAN + 2 and cfg.n_ctx >= 2 * SPAN + 1
    folder = data_dir() / "models" / NAME
    assert sum(f.stat().st_size for f in folder.iterdir()) < 5_000_000
    for key in ("bos_token_id", "prev_token_head", "induction_head", "training", "evaluation", "criterion"):
        assert key in toy.meta


def test_induction_loss_criterion(toy):
    """Loss on the repeated copy < 10% of the loss on the first copy (fresh random layouts)."""
    tokens, layout = _random_layouts(toy, 16, seed=2024)
    with torch.no_grad():
        logits = toy.model(tokens)[:, :-1]
    loss = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none")  # loss j predicts j+1
    first = torch.cat([loss[i, s : s + SPAN - 1] for i, (s, t) in enumerate(layout)]).mean()
    repeated = torch.cat([loss[i, t : t + SPAN - 1] for i, (s, t) in enumerate(layout)]).mean()
    assert first > 0.8 * torch.log(torch.tensor(toy.cfg.vocab_size - 1.0))  # random tokens: about ln(vocab)
    assert repeated < 0.1 * first


def _head_scores(toy) -> tuple[torch.Tensor, torch.Tensor]:
    """Previous-token scores of layer-0 heads, induction scores of layer-1 heads [h] each."""
    cfg, model = toy.cfg, toy.model
    tokens, layout = _random_layouts(toy, 32, seed=7)
    with torch.no_grad():
        resid = embed(model, tokens)
        x = resid[None, None]
        pat0 = attention_pattern(model.blocks[0], cfg, x, x, None)[0]  # [h b q k]
        resid1 = resid + attention(model.blocks[0], cfg, x, x, x, None).sum(1)[0] + model.blocks[0].b_O
        pat1 = attention_pattern(model.blocks[1], cfg, resid1[None, None], resid1[None, None], None)[0]
    q = torch.arange(1, tokens.shape[1])
    prev = pat0[:, :, q, q - 1].mean((1, 2))
    ind = []
    for i, (s, t) in enumerate(layout):
        qi = torch.arange(t, t + SPAN - 1)  # repeated copy's token j attends to the first copy's j+1
        ind.append(pat1[:, i, qi, qi - (t - s) + 1])
    return prev, torch.cat(ind, 1).mean(1)


def test_recorded_heads(toy):
    """The head scores in the meta are reproduced; the named heads clearly do their job."""
    prev, ind = _head_scores(toy)
    ev = toy.meta["evaluation"]
    torch.testing.assert_close(prev, torch.tensor(ev["prev_token_scores_layer0"]), atol=0.05, rtol=0)
    torch.testing.assert_close(ind, torch.tensor(ev["induction_scores_layer1"]), atol=0.05, rtol=0)
    p_name, i_name = toy.meta["prev_token_head"], toy.meta["induction_head"]
    assert p_name.startswith("a0.h") and i_name.startswith("a1.h")
    p, i = int(p_name.split(".h")[1]), int(i_name.split(".h")[1])
    assert prev[p] > 0.3 and prev[p] == prev.max()
    assert ind[i] > 0.3 and ind[i] == ind.max()


def test_does_the_induction_task(toy):
    """The `induction` task (BOS r r, len(r) = 20): the model's loss on the clean prompts is
    below 10% of its loss on the corrupted ones."""
    from subcircuit.tasks import full_model_scores, get_task

    task = get_task("induction", toy, n=32, seed=0)
    scores = full_model_scores(toy.model, task, ["nll"])
    assert scores["nll"] < 0.1 * scores["nll@corrupted"]
