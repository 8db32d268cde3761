"""Converting a compiled tracr model into our `Transformer`, and checking it against tracr's own.

`convert` maps tracr's haiku parameters onto our layout: GPT-2 family, no layer norms
(`norm="none"`, `final_norm=False`), ReLU MLPs, attention scale `1/sqrt(key_size)` exactly as
tracr's haiku attention, bidirectional unless compiled causal, the residual axis permuted into
sorted canonical-label order (see `programs`).

What our "logits" mean:

- categorical output (`reverse`): logits over the input token ids. An output value v gets the
  logit column of the input token id of v (values that are not input tokens get ids after the
  input vocabulary). The logit of v is the coordinate of the residual on the output direction
  `reverse:v` — exactly tracr's unembedding, whose argmax tracr decodes. Ids that are never an
  output (BOS, pad) get a zero unembedding column and a bias of `UNUSED_LOGIT` (-1e4), so
  softmax gives them probability 0 and the distribution is the one over the output values.
- numerical output (`proportion`): `logits[..., 0]` is the program's output value (tracr's
  unembedded scalar); every other column is 0. Only distance metrics (`l2`) make sense on it.

`compare_with_tracr` runs both models on every input and compares the residual stream after
every attention and MLP layer (ours from `Transformer.run`, the one forward pass) and the output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from subcircuit.models.config import ModelConfig
from subcircuit.models.loading import LoadedModel
from subcircuit.models.tracr.programs import BOS, PAD, PROGRAMS, all_inputs, canonical_labels
from subcircuit.models.transformer import Transformer

UNUSED_LOGIT = -1e4


def _np(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def convert(assembled: Any, sop: Any, name: str) -> tuple[Transformer, dict[str, Any]]:
    """A compiled tracr model -> (our Transformer, meta with the token and output mapping).

    tracr's haiku layout: query/key/value `w` [D, H*E], linear `w` [H*E, D], mlp linear_1
    [D, M], linear_2 [M, D], token_embed [V_in, D], pos_embed [n_ctx, D]. The residual axis D
    is permuted into sorted canonical-label order."""
    prog = PROGRAMS[name]
    mc = assembled.model_config
    params = {k: {kk: _np(vv) for kk, vv in v.items()} for k, v in assembled.params.items()}
    labels = canonical_labels(assembled.residual_labels, sop)
    perm = np.argsort(np.array(labels, dtype=object), kind="stable")
    labels = [labels[i] for i in perm]
    D = len(labels)
    H, E, M, L = mc.num_heads, mc.key_size, mc.mlp_hidden_size, mc.num_layers

    in_map: dict[Any, int] = dict(assembled.input_encoder.encoding_map)
    categorical = assembled.output_encoder is not None and hasattr(assembled.output_encoder, "encoding_map")
    out_name = sop.name
    if categorical:
        out_values = sorted(assembled.output_encoder.encoding_map, key=assembled.output_encoder.encoding_map.get)
        logit_id: dict[Any, int] = {}
        next_id = len(in_map)
        for v in out_values:
            if v in in_map:
                logit_id[v] = in_map[v]
            else:
                logit_id[v], next_id = next_id, next_id + 1
        vocab_size = next_id
    else:
        out_values, logit_id, vocab_size = [], {}, len(in_map)

    cfg = ModelConfig(
        family="gpt2",
        n_layers=L,
        d_model=D,
        n_heads=H,
        d_head=E,
        d_mlp=M,
        vocab_size=vocab_size,
        n_ctx=params["pos_embed"]["embeddings"].shape[0],
        norm="none",
        positional="learned",
        mlp="plain",
        act="relu",
        causal=bool(mc.causal),
        attn_scale=float(1.0 / np.sqrt(E)),
        final_norm=False,
    )
    model = Transformer(cfg)
    with torch.no_grad():
        W_E = np.zeros((vocab_size, D), np.float32)
        W_E[: len(in_map)] = params["token_embed"]["embeddings"][:, perm]
        model.W_E.copy_(_t(W_E))
        model.W_pos.copy_(_t(params["pos_embed"]["embeddings"][:, perm]))
        for layer in range(L):
            blk = model.blocks[layer]
            a = f"transformer/layer_{layer}/attn"
            for W, b, key in ((blk.W_Q, blk.b_Q, "query"), (blk.W_K, blk.b_K, "key"), (blk.W_V, blk.b_V, "value")):
                w = params[f"{a}/{key}"]["w"][perm]  # [D, H*E]
                W.copy_(_t(w.reshape(D, H, E).transpose(1, 0, 2)))
                b.copy_(_t(params[f"{a}/{key}"]["b"].reshape(H, E)))
            blk.W_O.copy_(_t(params[f"{a}/linear"]["w"][:, perm].reshape(H, E, D)))
            blk.b_O.copy_(_t(params[f"{a}/linear"]["b"][perm]))
            m = f"transformer/layer_{layer}/mlp"
            blk.W_in.copy_(_t(params[f"{m}/linear_1"]["w"][perm]))
            blk.b_in.copy_(_t(params[f"{m}/linear_1"]["b"]))
            blk.W_out.copy_(_t(params[f"{m}/linear_2"]["w"][:, perm]))
            blk.b_out.copy_(_t(params[f"{m}/linear_2"]["b"][perm]))
        W_U = np.zeros((D, vocab_size), np.float32)
        b_U = np.zeros(vocab_size, np.float32)
        if categorical:
            b_U[:] = UNUSED_LOGIT
            for v in out_values:
                W_U[labels.index(f"{out_name}:{v}"), logit_id[v]] = 1.0
                b_U[logit_id[v]] = 0.0
        else:
            W_U[labels.index(out_name), 0] = 1.0
        model.W_U.copy_(_t(W_U))
        model.b_U.copy_(_t(b_U))
    model.requires_grad_(False).eval()

    import tracr  # noqa: F401 - version for the record

    meta: dict[str, Any] = {
        "description": prog.description,
        "tokenizer": None,
        "program": prog.rasp,
        "compiler": {
            "package": "tracr-pypi",
            "version": _version("tracr-pypi"),
            "jax": _version("jax"),
            "vocab": list(prog.vocab),
            "max_seq_len": prog.max_seq_len,
            "causal": prog.causal,
            "compiler_bos": BOS,
            "compiler_pad": PAD,
        },
        "tokens": [{"value": v, "id": i} for v, i in sorted(in_map.items(), key=lambda kv: kv[1])],
        "bos_token_id": in_map[BOS],
        "pad_token_id": in_map[PAD],
        "output": (
            {
                "kind": "categorical",
                "sop": out_name,
                "values": [{"value": v, "id": logit_id[v]} for v in out_values],
                "unused_logit_bias": UNUSED_LOGIT,
                "note": "logit of value v = residual coordinate on direction sop:v; argmax decodes",
            }
            if categorical
            else {
                "kind": "numerical",
                "sop": out_name,
                "logit_index": 0,
                "note": "logits[..., 0] is the program's output value; other columns are 0",
            }
        ),
        "residual_labels": labels,
        "built_by": "scripts/build_tracr_models.py",
    }
    return model, meta


def _t(a: np.ndarray) -> torch.Tensor:
    """A float32 torch copy of a numpy array."""
    return torch.tensor(np.array(a, dtype=np.float32))


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def tracr_forward(assembled: Any, sop: Any, inputs: Sequence[Sequence[Any]]) -> dict[str, np.ndarray]:
    """Run tracr's own compiled model on a batch of equal-length inputs (values, BOS first).

    Returns `residuals` [n_half_layers b p D] (after each attention and each MLP),
    `output` [b p D] (final residual) — both in canonical (sorted) residual order — and
    `unembedded` [b p] (tracr's decoded ids for categorical, values for numerical)."""
    import jax.numpy as jnp

    tokens = jnp.array([assembled.input_encoder.encode(list(x)) for x in inputs])
    out = assembled.forward(assembled.params, tokens)
    labels = canonical_labels(assembled.residual_labels, sop)
    perm = np.argsort(np.array(labels, dtype=object), kind="stable")
    return {
        "residuals": np.stack([_np(r)[..., perm] for r in out.transformer_output.residuals]),
        "output": _np(out.transformer_output.output)[..., perm],
        "unembedded": np.asarray(out.unembedded_output),
    }


def compare_with_tracr(assembled: Any, sop: Any, loaded: LoadedModel, lengths: Sequence[int] | None = None) -> dict:
    """Run tracr's compiled model and ours on every input of the given lengths (default
    1..max_seq_len) and report the largest differences.

    `residual_max_abs_diff`: over every residual direction after every layer; `output_max_abs_diff`:
    our logits vs tracr's unembedding before its argmax (categorical) or its scalar output
    (numerical), positions >= 1; `decoded_equal`: our argmax vs tracr's decoded ids."""
    meta = loaded.meta
    name = loaded.name
    lengths = lengths or range(1, PROGRAMS[name].max_seq_len + 1)
    res_d = out_d = 0.0
    decoded_equal = True
    n = 0
    labels = meta["residual_labels"]
    for length in lengths:
        inputs = all_inputs(name, length)
        ref = tracr_forward(assembled, sop, inputs)
        tokens = torch.tensor([assembled.input_encoder.encode(list(x)) for x in inputs])
        with torch.no_grad():
            run = loaded.model.run(tokens, residuals=True)  # after every attention and every MLP
            ours_res = torch.stack(run.residuals[1:]).numpy()
            logits = run.logits.numpy()
        res_d = max(res_d, float(np.abs(ours_res - ref["residuals"]).max()))
        if meta["output"]["kind"] == "numerical":
            out_d = max(out_d, float(np.abs(logits[:, 1:, 0] - ref["unembedded"][:, 1:]).max()))
        else:
            sop_name = meta["output"]["sop"]
            ids = [v["id"] for v in meta["output"]["values"]]
            dirs = [labels.index(f"{sop_name}:{v['value']}") for v in meta["output"]["values"]]
            out_d = max(out_d, float(np.abs(logits[:, 1:, ids] - ref["output"][:, 1:, dirs]).max()))
            ours_dec = np.array(ids)[logits[:, 1:, ids].argmax(-1)]
            tracr_dec = np.array(ids)[ref["unembedded"][:, 1:]]
            decoded_equal &= bool((ours_dec == tracr_dec).all())
        n += len(inputs)
    return {
        "n_inputs": n,
        "lengths": list(lengths),
        "residual_max_abs_diff": res_d,
        "output_max_abs_diff": out_d,
        "decoded_equal": decoded_equal,
    }
