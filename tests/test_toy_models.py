"""toy-induction-2l: the shipped model loads, is small, and does induction (fast tier)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from subcircuit.models import MODELS, load
from subcircuit.models.loading import data_dir
from subcircuit.models.transformer import attention, attention_pattern, embed

NAME = "toy-induction-2l"


@pytest.fixture(scope="module")
def toy():
    if not MODELS[NAME].available():
        pytest.fail(f"{NAME} is not shipped; run scripts/train_toy_induction.py")
    return load(NAME)


def _repeated(n: int, half: int, vocab: int, bos: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    r = torch.randint(1, vocab, (n, half), generator=g)
    return torch.cat([torch.full((n, 1), bos), r, r], dim=1)


def test_config_and_size(toy):
    cfg = toy.cfg
    assert (cfg.n_layers, cfg.mlp, cfg.positional, cfg.norm) == (2, "none", "learned", "layernorm")
    assert toy.tokenizer is None and cfg.vocab_size >= 256 and cfg.n_ctx >= 64
    folder = data_dir() / "models" / NAME
    assert sum(f.stat().st_size for f in folder.iterdir()) < 5_000_000
    for key in ("bos_token_id", "prev_token_head", "induction_head", "training", "evaluation"):
        assert key in toy.meta


def test_induction_loss_criterion(toy):
    """Loss on the repeated half < 10% of the loss on the first half (fresh random sequences)."""
    half = 31
    tokens = _repeated(16, half, toy.cfg.vocab_size, toy.meta["bos_token_id"], seed=2024)
    with torch.no_grad():
        logits = toy.model(tokens)[:, :-1]
    loss = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none")  # [b p-1]
    first = loss[:, 1:half].mean()
    repeated = loss[:, half + 1 : 2 * half].mean()
    assert first > 5.0  # random tokens: about ln(vocab)
    assert repeated < 0.1 * first


def _head_scores(toy, half: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Previous-token scores of layer-0 heads, induction scores of layer-1 heads [h] each."""
    cfg = toy.cfg
    tokens = _repeated(8, half, cfg.vocab_size, toy.meta["bos_token_id"], seed=7)
    with torch.no_grad():
        resid = embed(toy.model, tokens)
        x = resid[None, None]
        pat0 = attention_pattern(toy.model.blocks[0], cfg, x, x, None)[0]
        resid1 = resid + attention(toy.model.blocks[0], cfg, x, x, x, None).sum(1)[0] + toy.model.blocks[0].b_O
        pat1 = attention_pattern(toy.model.blocks[1], cfg, resid1[None, None], resid1[None, None], None)[0]
    q = torch.arange(1, tokens.shape[1])
    qi = torch.arange(1 + half, 2 * half)
    return pat0[:, :, q, q - 1].mean((1, 2)), pat1[:, :, qi, qi - half + 1].mean((1, 2))


def test_recorded_heads(toy):
    """The head scores in the meta are reproduced; heads named there clearly do their job."""
    prev, ind = _head_scores(toy)
    ev = toy.meta["evaluation"]
    torch.testing.assert_close(prev, torch.tensor(ev["prev_token_scores_layer0"]), atol=0.05, rtol=0)
    torch.testing.assert_close(ind, torch.tensor(ev["induction_scores_layer1"]), atol=0.05, rtol=0)
    if toy.meta["prev_token_head"] is not None:
        assert prev[int(toy.meta["prev_token_head"].split(".h")[1])] > 0.3
    if toy.meta["induction_head"] is not None:
        assert ind[int(toy.meta["induction_head"].split(".h")[1])] > 0.3


def test_does_the_induction_task(toy):
    """The `induction` task (repeated half of length 20): the model's loss on the clean prompts
    is below 10% of its loss on the corrupted ones."""
    from subcircuit.tasks import full_model_scores, get_task

    task = get_task("induction", toy, n=32, seed=0)
    scores = full_model_scores(toy.model, task, ["nll"])
    assert scores["nll"] < 0.1 * scores["nll@corrupted"]
