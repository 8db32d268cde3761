"""Any local folder of a supported family works end to end: `subcircuit discover --model FOLDER`.

Each family's tiny random transformers model (the configs of test_models.py, with their special
features on) is saved with `save_pretrained` next to a tiny word-level tokenizer built in-process
(no network); the CLI then loads the folder (family detected from `model_type`), builds the task
(IOI prompts need the tokenizer), runs ACDC and writes the circuit.
"""

from __future__ import annotations

import json

import pytest
import torch
from test_models import FAMILIES, randomize
from word_tokenizer import word_tokenizer

from subcircuit.cli import run_cli
from subcircuit.graph import build_graph
from subcircuit.models import load


def save_family(kind: str, folder) -> torch.nn.Module:
    """A tiny random checkpoint of `kind` whose vocabulary is the word tokenizer's, in `folder`."""
    tok = word_tokenizer()
    torch.manual_seed(0)
    hf = FAMILIES[kind]()
    cfg = hf.config
    cfg.vocab_size = len(tok)
    cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id = tok.bos_token_id, tok.bos_token_id, tok.pad_token_id
    hf = randomize(type(hf)(cfg).eval())
    hf.save_pretrained(folder)
    tok.save_pretrained(folder)
    return hf


@pytest.mark.parametrize("kind", sorted(FAMILIES))
def test_discover_runs_on_a_local_folder_of_every_family(tmp_path, capsys, kind: str) -> None:
    folder = tmp_path / kind
    hf = save_family(kind, folder)
    loaded = load(str(folder))
    assert loaded.tokenizer is not None and loaded.cfg.vocab_size == len(word_tokenizer())
    tokens = torch.randint(0, loaded.cfg.vocab_size, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (loaded.model(tokens) - hf(input_ids=tokens).logits).abs().max() < 1e-4

    out = tmp_path / "run"
    rc = run_cli(["discover", "--model", str(folder), "--task", "ioi", "--n-examples", "4", "--threshold", "0.05",
                  "--granularity", "heads", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    circuit = json.loads((out / "circuit.json").read_text())
    graph = build_graph(loaded.cfg, "heads")
    assert circuit["task"] == "ioi" and circuit["method"] == "acdc"
    assert len(circuit["edges"]) == graph.n_edges == circuit["results"]["n_edges_total"]
    assert {e["edge"] for e in circuit["edges"]} == set(graph.edges)
