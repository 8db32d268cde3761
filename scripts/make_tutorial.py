"""Writes docs/tutorial.ipynb (without outputs): edit the cells here, run `python scripts/make_tutorial.py`."""
import nbformat as nbf

nb = nbf.v4.new_notebook()
md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
cells = [
md("""# subcircuit in a notebook: a task of your own, EAP-IG then ACDC, and out to EAP-IG / MIB

This tutorial runs offline on SmolLM2-135M (bundled). It

1. loads the model,
2. writes a task from a **template** (no Python: a TOML file of slots and word lists),
3. checks that the model does the task *before* any circuit work,
4. scores every edge with **EAP-IG**, then runs exact **ACDC** on EAP-IG's top candidates,
5. looks at the circuit (inline diagram, a DataFrame of edges, heads with their roles, networkx),
6. evaluates it,
7. exports it for EAP-IG, MIB, Graphviz and spreadsheets.

The sizes are kept small so the notebook runs in about a minute on a laptop CPU (CI executes it:
`tests/test_tutorial.py`); raise `N_EXAMPLES` and `CANDIDATES` for real work."""),
code("""import os
import tempfile
from pathlib import Path

N_EXAMPLES = int(os.environ.get("SUBCIRCUIT_TUTORIAL_N", "8"))      # prompts per run
CANDIDATES = int(os.environ.get("SUBCIRCUIT_TUTORIAL_K", "12"))     # edges ACDC tries
IG_STEPS = 2                                                         # EAP-IG interpolation steps
WORK = Path(tempfile.mkdtemp(prefix="subcircuit-tutorial-"))         # where the run folders go
# the template ships in examples/templates/ of the repository (this notebook lives in docs/)
TEMPLATE = next(p for p in (Path("../examples/templates/surname.toml"), Path("examples/templates/surname.toml"))
                if p.exists())"""),
md("## 1. Load the model"),
code("""import subcircuit as sc

lm = sc.load("smollm2-135m")
lm.cfg.n_layers, lm.cfg.n_heads, lm.cfg.n_kv_heads"""),
md("""## 2. A task from a template

The template names slots in a prompt, where their words come from, the answer and the wrong
answer, how the corrupted prompt differs, and how slot orders are balanced (see docs/tasks.md).
This one asks the model to finish a person's surname, with the other person's surname as the
wrong answer; the corrupted prompt asks about the other person, so the answer flips."""),
code("""print(TEMPLATE.read_text())"""),
code("""from subcircuit.tasks.templates import generate_examples, read_template, write_task_file

template = read_template(TEMPLATE)
examples, stats = generate_examples(template, lm.tokenizer, n=64, seed=0)
task_file = write_task_file(template, examples, WORK / "surname.jsonl")
print(stats["kept"])          # words per list that are one token for SmolLM2's tokenizer
print(stats["orders"])        # examples per slot order (balanced)
examples[0]"""),
md("""## 3. Does the model do it?

A circuit is only worth finding for a behaviour the model has. `measure_task_file` is what
`subcircuit tasks check FILE --model M` prints: every metric on the clean and on the corrupted
prompts."""),
code("""from subcircuit.tasks.performance import measure_task_file

check = measure_task_file(task_file, lm, n=2 * N_EXAMPLES)   # the first 16 examples
{k: check["scores"][k] for k in ("accuracy", "logit-diff", "logit-diff@corrupted", "kl@corrupted")}"""),
md("""## 4. EAP-IG, then ACDC on its candidates

EAP-IG scores all of SmolLM2's 70,651 edges in a few forward and backward passes; we keep its
top 150 edges as a first circuit (`report=False`: only circuit.json, no report.html and no
head-role measurement, to keep the tutorial quick). A `Circuit` shows itself inline: the summary and the same interactive diagram as
`report.html` (hover an edge, move the slider, click a node)."""),
code("""from subcircuit.runs.discover import discover
from subcircuit.runs.options import DiscoverOptions

eap_ig = discover(lm, str(task_file), DiscoverOptions.build(
    "eap-ig", metric="logit-diff", n_examples=N_EXAMPLES, ig_steps=IG_STEPS, edges=150), out=WORK / "eap-ig", report=False)
eap_ig"""),
md("""Exact ACDC on every edge is out of reach for a CPU tutorial; on EAP-IG's top `CANDIDATES`
edges it is cheap. Every edge outside the candidates is ablated from the start; ACDC tries the
candidates in its usual order against the current graph. We hand it the EAP-IG scores we
already have, so EAP-IG is not run twice."""),
code("""from subcircuit.circuit import scores_tensor
from subcircuit.graph import build_graph

graph = build_graph(lm.cfg, "heads-qkv")
acdc_dir = WORK / "acdc"
acdc = discover(lm, str(task_file), DiscoverOptions.build(
    "acdc", metric="logit-diff", n_examples=N_EXAMPLES, candidates=CANDIDATES, ig_steps=IG_STEPS, threshold=0.05),
    out=acdc_dir, candidate_scores=scores_tensor(eap_ig, graph))
len(acdc.in_circuit), acdc.results["faithfulness"]"""),
md("""## 5. Look at the circuit

`open_run` loads a run folder with its head roles (roles.json); it displays like a `Circuit`,
with the roles drawn in."""),
code("""from subcircuit.runs.notebook import open_run

run = open_run(acdc_dir)
run"""),
code("""frame = acdc.edges_frame(only_circuit=True)      # pandas, one row per edge
frame.head(10)"""),
code("""run.heads()                                      # the circuit's heads with their role labels and scores"""),
code("""import networkx as nx

g = acdc.to_networkx()
sorted(g.nodes)[:10], nx.is_directed_acyclic_graph(g)"""),
md("""## 6. Evaluate

`evaluate_run` is `subcircuit evaluate DIR`: faithfulness (as measured by the run) and, where a
reference circuit exists for the model and task, TPR/FPR and ROC AUC (there is none for a task
of your own).

*Held-out evaluation* — faithfulness on prompts the method never saw — goes here once
`--n-eval` is available (`results["faithfulness_heldout"]` in circuit.json)."""),
code("""from subcircuit.evaluation.compare import evaluate_run

ev = evaluate_run(acdc_dir)
{k: ev.circuit.results.get(k) for k in ("n_edges_in_circuit", "faithfulness", "faithfulness_heldout")}"""),
md("""## 7. Export

EAP-IG's JSON (what `Graph.from_json` reads), an MIB circuit-track folder (per-edge importances,
or the nine binary circuits at MIB's edge fractions), Graphviz DOT and CSV — the same as
`subcircuit export DIR --format eap-ig|mib|dot|csv`. `subcircuit import FILE --model M --out DIR`
reads EAP-IG / MIB files back, checking every edge name against the model's graph."""),
code("""from subcircuit.exchange.convert import export_circuit, import_file

files = [
    *export_circuit(eap_ig, graph, "eap-ig", WORK / "eap-ig.json"),
    *export_circuit(eap_ig, graph, "mib", WORK / "mib"),        # mib_kind="circuits": the nine binary circuits
    *export_circuit(acdc, None, "dot", WORK / "acdc.dot"),
    *export_circuit(acdc, None, "csv", WORK / "acdc.csv"),
]
back = import_file(WORK / "eap-ig.json", graph, "smollm2-135m")
assert [(e["edge"], e["score"]) for e in back.edges] == [(e["edge"], e["score"]) for e in eap_ig.edges]
[str(p.relative_to(WORK)) for p in files]"""),
]
for i, cell in enumerate(cells):
    cell["id"] = f"cell-{i:02d}"  # stable ids: regenerating gives the same file
nb["cells"] = cells
nb["metadata"] = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                  "language_info": {"name": "python"}}
nbf.write(nb, "docs/tutorial.ipynb")
