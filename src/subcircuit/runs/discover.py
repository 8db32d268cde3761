"""`discover`: one call from (model, task, options) to a `Circuit`, and what a run folder holds.

This is `subcircuit discover`: a session with one run (`runs.pipeline`): load the model and
build the task for its tokenizer, the graph and the ablation, run the registered method, select
the circuit, measure faithfulness, write `circuit.json` and, with `report`, the head roles,
`circuit.svg` and `report.html` (`runs.report`).

A method that keeps checkpoint files (`MethodSpec.checkpoint_files`: ACDC's trace
`acdc-trace.json`, written after every receiver; the gate-training methods' whole state in
`training-checkpoint.safetensors`, every few steps) lets an interrupted run resume
(`resume=True`, `subcircuit discover --resume DIR`) with the identical circuit; the run's
options are read back from the checkpoint's header (`options_from_trace`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from subcircuit.circuit import Circuit
from subcircuit.errors import UserError
from subcircuit.files import read_header
from subcircuit.methods import METHODS, ProgressFn, no_progress
from subcircuit.methods.acdc import scores_key
from subcircuit.methods.attribution import EAPIGOptions
from subcircuit.models import LoadedModel
from subcircuit.runs.options import DiscoverOptions
from subcircuit.runs.pipeline import open_session, run_in_session

log = logging.getLogger(__name__)

__all__ = ["CHECKPOINT_FILES", "RUN_FILES", "discover", "holds_run", "options_from_trace", "read_checkpoint_header"]

# the checkpoint files of the registered methods, and what makes a folder hold a run (finished or not)
CHECKPOINT_FILES = tuple(sorted({f for spec in METHODS.values() for f in spec.checkpoint_files}))
RUN_FILES = ("circuit.json", *CHECKPOINT_FILES)


def holds_run(folder: str | Path) -> bool:
    """Whether `folder` holds a run (finished or interrupted)."""
    return any((Path(folder) / f).exists() for f in RUN_FILES)


def read_checkpoint_header(path: str | Path) -> dict[str, Any]:
    """The header (the run's options) of a checkpoint file: JSON (`{"header": ...}`, ACDC's trace)
    or safetensors metadata (`files.save_state`, a training checkpoint)."""
    path = Path(path)
    if path.suffix != ".json":
        return read_header(path)
    try:
        return dict(json.loads(path.read_text())["header"])
    except (OSError, KeyError, TypeError, ValueError) as e:
        raise UserError(f"cannot resume: {path} is damaged ({e})") from e


def options_from_trace(folder: str | Path, device: str = "cpu",
                       force: bool = False) -> tuple[DiscoverOptions, str, str]:
    """(options, model, task) of the interrupted run in `folder`, from the header of its checkpoint
    file. A method's own sections of the header (objects, e.g. a training checkpoint's "train")
    are not options and are left out."""
    folder = Path(folder)
    found = [folder / f for f in CHECKPOINT_FILES if (folder / f).exists()]
    if not found:
        raise UserError(f"nothing to resume in {str(folder)!r}: no {' or '.join(CHECKPOINT_FILES)}")
    path = found[0]
    header = read_checkpoint_header(path)
    try:
        model, task = header.pop("model"), header.pop("task")
        values = {k: v for k, v in header.items() if not isinstance(v, dict)}
        return DiscoverOptions.build(**values, device=device, force=force), str(model), str(task)
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"cannot resume: {path} is damaged or from another version ({e})") from e


def _candidates_key(options: DiscoverOptions) -> tuple[Any, ...]:
    """The session-cache key of the EAP-IG scores that ACDC's `--candidates` would use: EAP-IG
    with the run's `ig_steps` and `ig` (its defaults where the method has no such option)."""
    given = {f.name: getattr(options.method_options, f.name) for f in fields(EAPIGOptions)
             if hasattr(options.method_options, f.name)}
    eap_ig = EAPIGOptions(**given)
    return scores_key(eap_ig.ig_steps, eap_ig.ig)


def discover(
    model: str | Path | LoadedModel,
    task: str | Path,
    options: DiscoverOptions | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    progress: ProgressFn = no_progress,
    report: bool = True,
    candidate_scores: torch.Tensor | None = None,
    bootstrap: int | None = None,
) -> Circuit:
    """Run a discovery method and return (and with `out`, write) the circuit; with `out` and
    `report`, also its head roles, `circuit.svg` and `report.html`.

    `candidate_scores` [n_edges]: EAP-IG scores already computed for the same model, task, prompts
    and EAP-IG options (e.g. an `eap-ig` run's circuit.json); `--candidates` then selects from them
    instead of running EAP-IG again.

    `bootstrap` B: then rerun the method on B resampled discovery sets and record each edge's
    frequency and the stability summary (`runs.bootstrap`)."""
    options = options if options is not None else DiscoverOptions()
    if bootstrap is not None:
        from subcircuit.runs.bootstrap import check_reruns

        check_reruns(bootstrap)
    session = open_session(model, task, options)
    if candidate_scores is not None:
        if tuple(candidate_scores.shape) != (session.graph.n_edges,):
            raise UserError(f"candidate scores have shape {tuple(candidate_scores.shape)}; "
                            f"expected ({session.graph.n_edges},)")
        session.cache[_candidates_key(options)] = candidate_scores
    out_dir = Path(out) if out is not None else None
    if resume and (out_dir is None or not any((out_dir / f).exists() for f in options.spec.checkpoint_files)):
        log.warning("nothing to resume in %s; starting afresh", out_dir)
    circuit = run_in_session(session, options, out_dir, resume=resume, progress=progress)
    if bootstrap:
        from subcircuit.runs.bootstrap import bootstrap_session

        circuit, _ = bootstrap_session(session, options, bootstrap, out_dir, progress, circuit=circuit)
    if out_dir is not None and report:
        from subcircuit.runs.report import report_run

        report_run(out_dir, circuit, loaded=session.loaded, task=session.task)
    return circuit

