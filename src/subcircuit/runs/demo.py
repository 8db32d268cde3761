"""The demo behind `subcircuit demo` / `make demo`: real work on the bundled models, offline.

1. SmolLM2-135M does Indirect Object Identification (IOI; Wang et al. 2022), shown on prompts.
2. ACDC on the models with known circuits (toy-induction-2l, tracr-reverse, tracr-proportion).
3. The IOI circuit of SmolLM2: EAP-IG (top `IOI_EAP_EDGES` edges), then exact ACDC on the top
   `IOI_CANDIDATES` EAP-IG edges (`--candidates`), on `IOI_N_PROMPTS` prompts.

Every run is a folder under `runs/` with circuit.json, circuit.svg, report.html and roles.json;
`runs/index.html` links the reports.

IOI: In "When Mary and John went to the
store, John gave a drink to", the indirect object (IO) is Mary and the repeated subject (S) is
John; a model that does IOI puts more weight on " Mary" than on " John". We measure that as the
**logit difference IO − S** at the last position (positive = the model does the task).

Everything here returns data; the command line (`subcircuit.cli`) does the printing.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

from subcircuit.errors import UserError

DEMO_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class IOIPrompt:
    """One IOI prompt: the text up to the answer, the indirect object and the subject."""

    text: str
    io: str
    s: str


IOI_PROMPTS: tuple[IOIPrompt, ...] = (
    IOIPrompt("When Mary and John went to the store, John gave a drink to", "Mary", "John"),
    IOIPrompt("When Tom and James went to the park, James gave a ball to", "Tom", "James"),
    IOIPrompt("After Sarah and Michael had lunch at the cafe, Michael handed the bill to", "Sarah", "Michael"),
    IOIPrompt("When Anna and David arrived at the party, David gave a present to", "Anna", "David"),
    IOIPrompt("While Lisa and Mark were working at the office, Mark sent an email to", "Lisa", "Mark"),
    IOIPrompt("Then, Emma and Robert went to the school. Robert gave a book to", "Emma", "Robert"),
    IOIPrompt("When Kate and Paul went to the restaurant, Paul passed the menu to", "Kate", "Paul"),
    IOIPrompt("Afterwards, Laura and Peter went to the garden. Peter gave a flower to", "Laura", "Peter"),
    IOIPrompt("When Alice and Bob got to the station, Bob gave a ticket to", "Alice", "Bob"),
    IOIPrompt("Friends Jessica and Daniel went to the beach. Daniel threw the ball to", "Jessica", "Daniel"),
)


@dataclass(frozen=True)
class PromptResult:
    """The model's next-token prediction for one IOI prompt."""

    prompt: IOIPrompt
    top: tuple[tuple[str, float], ...]  # (token text, probability), most likely first
    logit_diff: float  # logit(" IO") − logit(" S") at the last position


@dataclass(frozen=True)
class DemoResult:
    """What `subcircuit demo` measured."""

    model: str
    n_params: int
    load_s: float
    load_was_first: bool  # True when the first load had to dequantize and build the cache
    cached_load_s: float
    forward_s: float  # one forward pass at batch × seq tokens (median of a few)
    batch: int
    seq: int
    results: tuple[PromptResult, ...]

    @property
    def mean_logit_diff(self) -> float:
        return statistics.fmean(r.logit_diff for r in self.results)


def name_token(tokenizer: Any, name: str) -> int:
    """The single token id of `" " + name` (names follow a space in every IOI prompt)."""
    ids = tokenizer.encode(" " + name, add_special_tokens=False)
    if len(ids) != 1:
        raise UserError(f"name {name!r} is {len(ids)} tokens for this tokenizer; IOI needs single-token names")
    return int(ids[0])


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a prompt, exactly as the tokenizer's defaults produce them."""
    return list(tokenizer.encode(text))


def predict(loaded: Any, prompt: IOIPrompt, k: int = 5) -> PromptResult:
    """Top-k next tokens and the IO − S logit difference for one prompt."""
    import torch

    tok = loaded.tokenizer
    ids = torch.tensor([encode(tok, prompt.text)], device=loaded.model.device)
    with torch.no_grad():
        logits = loaded.model(ids)[0, -1].float()  # [v]
    probs = logits.softmax(-1)
    p, idx = probs.topk(k)
    top = tuple((tok.decode([int(i)]), float(q)) for q, i in zip(p, idx, strict=True))
    diff = logits[name_token(tok, prompt.io)] - logits[name_token(tok, prompt.s)]
    return PromptResult(prompt, top, float(diff))


def time_forward(model: Any, batch: int = 16, seq: int = 16, repeats: int = 3) -> float:
    """Seconds for one forward pass on a [batch seq] batch of random tokens (median of `repeats`,
    after one warm-up pass)."""
    import torch

    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, model.cfg.vocab_size, (batch, seq), generator=g).to(model.device)
    times = []
    with torch.no_grad():
        model(tokens)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(tokens)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def timed_load(spec: str, device: str = "cpu") -> tuple[Any, float]:
    """Load a model and return it with the seconds it took."""
    from subcircuit.models import load

    t0 = time.perf_counter()
    loaded = load(spec, device)
    return loaded, time.perf_counter() - t0


def smollm2_is_cached() -> bool:
    """Whether SmolLM2's fp32 cache exists (so the next load skips dequantization)."""
    from subcircuit.models.gguf import smollm2_cache
    from subcircuit.models.loading import OUR_WEIGHTS

    return (smollm2_cache() / OUR_WEIGHTS).exists()


def _registered_params(name: str, loaded: Any) -> int:
    """The model's parameter count as published (tied embeddings counted once; our layout
    stores the unembedding as a separate copy, so `n_params()` is larger)."""
    from subcircuit.models import MODELS

    entry = MODELS.get(name)
    return entry.n_params if entry and entry.n_params else loaded.model.n_params()


def run_demo(n_prompts: int = 4, device: str = "cpu", batch: int = 16, seq: int = 16) -> DemoResult:
    """Load SmolLM2 twice (first/cached load, then cached), run IOI prompts, time a forward."""
    if not 1 <= n_prompts <= len(IOI_PROMPTS):
        raise UserError(f"--prompts {n_prompts} is out of range; valid: 1..{len(IOI_PROMPTS)}")
    first = not smollm2_is_cached()
    loaded, load_s = timed_load(DEMO_MODEL, device)
    reloaded, cached_s = timed_load(DEMO_MODEL, device)
    del reloaded
    results = tuple(predict(loaded, p) for p in IOI_PROMPTS[:n_prompts])
    return DemoResult(
        model=loaded.name,
        n_params=_registered_params(DEMO_MODEL, loaded),
        load_s=load_s,
        load_was_first=first,
        cached_load_s=cached_s,
        forward_s=time_forward(loaded.model, batch, seq),
        batch=batch,
        seq=seq,
        results=results,
    )


# ------------------------------------------------------------------------------ circuit discovery

#: (run folder, model, task, options) of the demo's ACDC runs on the models with known circuits.
DISCOVERY_RUNS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("toy-induction-2l-acdc", "toy-induction-2l", "induction", {"ablation": "corrupted"}),
    ("tracr-reverse-acdc", "tracr-reverse", "tracr-reverse", {"ablation": "zero"}),
    ("tracr-proportion-acdc", "tracr-proportion", "tracr-proportion", {"ablation": "zero"}),
)


@dataclass(frozen=True)
class DiscoveryRun:
    label: str
    folder: Any  # Path
    circuit: Any  # subcircuit.circuit.Circuit
    reference: list[str] | None  # the known circuit's edges, when there is one
    seconds: float


def run_discovery_demo(out: str = "runs", device: str = "cpu") -> list[DiscoveryRun]:
    """ACDC on the bundled models with known circuits; each run is written to `out/<label>/`."""
    import json
    import time
    from pathlib import Path

    from subcircuit.models.loading import data_dir
    from subcircuit.runs.discover import RUN_FILES, discover
    from subcircuit.runs.options import DiscoverOptions

    runs = []
    for label, model, task, opts in DISCOVERY_RUNS:
        folder = Path(out) / label
        for f in RUN_FILES:
            (folder / f).unlink(missing_ok=True)
        t0 = time.perf_counter()
        circuit = discover(model, task, DiscoverOptions.build(device=device, **opts), out=folder)
        ref_file = data_dir() / "reference" / f"{model}.json"
        reference = json.loads(ref_file.read_text())["edges"] if ref_file.exists() else None
        runs.append(DiscoveryRun(label, folder, circuit, reference, time.perf_counter() - t0))
    return runs


# ------------------------------------------------------------------------------ IOI circuit of SmolLM2

IOI_N_PROMPTS = 16
IOI_METRIC = "logit-diff"  # as MIB scores IOI; with KL the small candidate sets gave faithfulness < 0.3
IOI_EAP_EDGES = 100  # EAP-IG circuit size (top edges by score)
IOI_CANDIDATES = 600  # ACDC tries only the top K EAP-IG edges
IOI_TAU = 0.01

#: (run folder, options) of the demo's IOI runs on SmolLM2
IOI_RUNS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("smollm2-ioi-eap-ig", {"method": "eap-ig", "edges": IOI_EAP_EDGES, "n_examples": IOI_N_PROMPTS, "ig_steps": 5,
                            "metric": IOI_METRIC}),
    ("smollm2-ioi-acdc", {"method": "acdc", "candidates": IOI_CANDIDATES, "threshold": IOI_TAU,
                          "n_examples": IOI_N_PROMPTS, "ig_steps": 5, "metric": IOI_METRIC}),
)


def run_ioi_demo(out: str = "runs", device: str = "cpu", loaded: Any = None) -> list[DiscoveryRun]:
    """EAP-IG and ACDC-on-candidates on SmolLM2 IOI; each run is written to `out/<label>/`.

    Both runs are made in one session (same prompts, metric and ablation): ACDC's candidates are
    the top edges of the EAP-IG run just made (same prompts and steps), taken from the session."""
    from pathlib import Path

    from subcircuit.models import load
    from subcircuit.runs.discover import RUN_FILES
    from subcircuit.runs.options import DiscoverOptions
    from subcircuit.runs.pipeline import open_session, run_in_session
    from subcircuit.runs.report import report_run

    loaded = loaded if loaded is not None else load(DEMO_MODEL, device)
    plan = [(label, DiscoverOptions.build(device=device, **opts)) for label, opts in IOI_RUNS]
    session = open_session(loaded, "ioi", plan[0][1])
    runs = []
    for label, options in plan:
        folder = Path(out) / label
        for f in RUN_FILES:
            (folder / f).unlink(missing_ok=True)
        t0 = time.perf_counter()
        circuit = run_in_session(session, options, folder)
        report_run(folder, circuit, loaded=session.loaded, task=session.task)
        runs.append(DiscoveryRun(label, folder, circuit, None, time.perf_counter() - t0))
    return runs


def head_labels(folder: Any) -> dict[str, str]:
    """{head: label} of the labelled heads of a run folder (from its roles.json; {} without)."""
    from pathlib import Path

    from subcircuit.evaluation.roles import ROLES_FILE, load_roles

    path = Path(folder) / ROLES_FILE
    if not path.exists():
        return {}
    return {h: r.label for h, r in load_roles(path).items() if r.label}


def _heldout(res: dict[str, Any]) -> str:
    f = res.get("faithfulness_heldout")
    if "n_examples_heldout" not in res:
        return "—"
    return f"{'n/a' if f is None else f'{f:.3f}'} ({res['n_examples_heldout']} prompts)"


def write_index(out: str, runs: list[DiscoveryRun]) -> Any:
    """`out/index.html`: one self-contained page linking every run's report, with the summary."""
    from html import escape
    from pathlib import Path

    from subcircuit.files import atomic_write_text

    rows = []
    for r in runs:
        res = r.circuit.results
        faith = res.get("faithfulness")
        labels = head_labels(r.folder)
        rel = Path(r.folder).name
        rows.append(
            f"<tr><td><a href='{escape(rel)}/report.html'>{escape(r.label)}</a></td>"
            f"<td>{escape(r.circuit.model)}</td><td>{escape(r.circuit.method)}</td>"
            f"<td>{res.get('n_edges_in_circuit')} / {res.get('n_edges_total')}</td>"
            f"<td>{'n/a' if faith is None else f'{faith:.3f}'}</td><td>{_heldout(res)}</td>"
            f"<td>{escape(', '.join(f'{h}: {lab}' for h, lab in labels.items()) or '—')}</td>"
            f"<td>{r.seconds:.1f} s</td><td><a href='{escape(rel)}/circuit.svg'>svg</a></td></tr>")
    html = ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>subcircuit demo runs</title>"
            "<style>body{font-family:Helvetica,Arial,sans-serif;margin:24px}td,th{padding:4px 12px 4px 0;"
            "text-align:left;vertical-align:top;border-bottom:1px solid #eee}table{border-collapse:collapse}"
            "</style></head><body><h1>subcircuit demo runs</h1><table><tr><th>run</th><th>model</th>"
            "<th>method</th><th>edges</th><th>faithfulness</th><th>held-out faithfulness</th><th>labelled heads</th><th>time</th><th></th></tr>"
            + "".join(rows) + "</table></body></html>\n")
    path = Path(out) / "index.html"
    atomic_write_text(path, html)
    return path
