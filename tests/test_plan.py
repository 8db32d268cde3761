"""Plans (runs.plan) and the local backend (runs.backends): TOML and YAML grids, stable run names,
bad plans refused with one line before any work, resuming, fault isolation, `subcircuit sweep PLAN`;
Ray stays an optional import."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from subcircuit import cli
from subcircuit.errors import UserError
from subcircuit.runs.backends import execute_run, run_plan
from subcircuit.runs.plan import plan_from_dict, read_plan

TOML = """
n_examples = 4
[[grid]]
models = ["toy-induction-2l"]
tasks = ["induction"]
methods = ["acdc", "eap-ig"]
thresholds = [0.05, 0.2]
sizes = [10]
[grid.options.eap-ig]
ig_steps = [1, 2]
[[grid]]
models = "tracr-reverse"
task = "tracr-reverse"
method = "eap"
size = 5
"""

YAML = """
n_examples: 4
grid:
  - models: [toy-induction-2l]
    tasks: [induction]
    methods: [acdc, eap-ig]
    thresholds: [0.05, 0.2]
    sizes: [10]
    options: {eap-ig: {ig_steps: [1, 2]}}
  - {models: tracr-reverse, task: tracr-reverse, method: eap, size: 5}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_toml_and_yaml_plans_give_the_same_runs_with_stable_names(tmp_path):
    a = read_plan(write(tmp_path, "p.toml", TOML))
    b = read_plan(write(tmp_path, "p.yaml", YAML))
    assert [r.name for r in a] == [r.name for r in b]
    assert len(a) == 2 + 2 + 1  # acdc × 2 τ, eap-ig × 2 ig_steps × 1 size, eap × 1 size
    assert a[0].name.startswith("toy-induction-2l_induction_acdc_tau-0.05_s0_")
    assert len({r.name for r in a}) == len(a)
    assert [r.name for r in read_plan(tmp_path / "p.toml")] == [r.name for r in a]  # same file, same names
    eap_ig = [r for r in a if r.options.method == "eap-ig"]
    assert sorted(r.options.method_options.ig_steps for r in eap_ig) == [1, 2]
    assert all(r.options.select.edges == 10 for r in eap_ig)
    assert a[0].resources() == {"num_cpus": 1.0}
    cuda = plan_from_dict({"models": "toy-induction-2l", "tasks": "induction", "methods": "eap", "device": "cuda"})
    assert cuda[0].resources() == {"num_gpus": 1.0, "num_cpus": 0}


@pytest.mark.parametrize(("plan", "needle"), [
    ({"models": "toy-induction-2l", "tasks": "induction", "methods": "acdc", "seedz": [0]}, "'seedz'"),
    ({"models": "toy-induction-2l", "tasks": "induction", "methods": "acdcx"}, "'acdcx'"),
    ({"models": "toy", "tasks": "induction", "methods": "acdc"}, "'toy'"),
    ({"models": "toy-induction-2l", "tasks": "inductio", "methods": "acdc"}, "'inductio'"),
    ({"models": "toy-induction-2l", "tasks": "induction", "methods": "acdc", "metrics": "kll"}, "'kll'"),
    ({"models": "toy-induction-2l", "tasks": "induction", "methods": "eap-ig", "options": {"eap-ig": {"ig_stepz": 2}}},
     "--ig-stepz"),
    ({"models": "toy-induction-2l", "tasks": "induction", "methods": "eap", "options": {"acdc": {"threshold": 1}}},
     "'acdc'"),
    ({"models": "toy-induction-2l", "tasks": "induction", "methods": "acdc", "thresholds": [-1]}, "-1"),
    ({"models": "toy-induction-2l", "methods": "acdc"}, "no tasks"),
    ({"models": "toy-induction-2l", "tasks": "induction", "methods": "eap", "thresholds": [0.1]}, "take sizes"),
    ({"models": "toy-induction-2l", "tasks": "induction", "methods": "acdc", "grid": {"seeds": 1}}, "grid"),
])
def test_bad_plans_are_refused_with_one_line(plan, needle):
    with pytest.raises(UserError, match=None) as e:
        plan_from_dict(plan)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_local_backend_resumes_isolates_failures_and_skips_finished_runs(tmp_path):
    runs = plan_from_dict({"models": "toy-induction-2l", "tasks": "induction", "n_examples": 4,
                           "grid": [{"methods": "acdc", "thresholds": [0.05]},
                                    {"methods": "eap", "sizes": [10, 10**6]}]})
    acdc = runs[0]

    # an ACDC run interrupted mid-way (Ctrl-C in its progress callback) resumes from its trace
    class Stop(BaseException):
        pass

    def stop(name, done, total, what):
        if done == total // 2:
            raise Stop

    with pytest.raises(Stop):
        execute_run(acdc, tmp_path / "sweep" / acdc.name, hook=stop)
    assert (tmp_path / "sweep" / acdc.name / "acdc-trace.json").exists()
    res = run_plan(runs, tmp_path / "sweep")
    assert [o.status for o in res.outcomes.values()] == ["done", "done", "failed"]
    assert "1000000" in res.failed[runs[2].name]
    fresh = run_plan([acdc], tmp_path / "fresh")
    assert fresh.outcomes[acdc.name].status == "done"
    a = json.loads((tmp_path / "sweep" / acdc.name / "circuit.json").read_text())
    b = json.loads((tmp_path / "fresh" / acdc.name / "circuit.json").read_text())
    assert [(e["edge"], e["in_circuit"]) for e in a["edges"]] == [(e["edge"], e["in_circuit"]) for e in b["edges"]]

    again = run_plan(runs, tmp_path / "sweep")  # finished runs skipped, the failed one tried again
    assert [o.status for o in again.outcomes.values()] == ["skipped", "skipped", "failed"]
    index = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert [r["status"] for r in index["runs"]] == ["skipped", "skipped", "failed"]


def test_cli_sweep_plan(tmp_path, capsys):
    plan = write(tmp_path, "p.toml", """
        n_examples = 4
        models = ["tracr-reverse"]
        tasks = ["tracr-reverse"]
        methods = ["acdc", "eap"]
        thresholds = [0.01]
        sizes = [5, 100000]
        """)
    out = tmp_path / "out"
    rc = cli.run_cli(["sweep", str(plan), "--out", str(out)])
    o, e = capsys.readouterr()
    assert rc == 1  # one run failed; the others finished
    assert "3 runs (2 made now, 0 finished before, 1 failed)" in o and "faithfulness" in o
    failed = [ln for ln in e.splitlines() if ln.startswith("failed: ")]
    assert len(failed) == 1 and "100000" in failed[0]
    assert (out / "summary.md").exists() and (out / "sweep.json").exists()
    rc = cli.run_cli(["sweep", "--plan", str(plan), "--out", str(out)])
    assert "(0 made now, 2 finished before, 1 failed)" in capsys.readouterr().out
    # refused before any work, one line, exit 2
    bad = write(tmp_path, "bad.toml", 'models = ["toy-induction-2l"]\ntasks = ["induction"]\nmethods = ["acd"]\n')
    assert cli.run_cli(["sweep", str(bad), "--out", str(tmp_path / "bad")]) == 2
    e = capsys.readouterr().err
    assert e.count("\n") == 1 and "'acd'" in e and not (tmp_path / "bad").exists()
    assert cli.run_cli(["sweep", str(plan), "--model", "tracr-reverse", "--out", str(tmp_path / "x")]) == 2
    assert cli.run_cli(["sweep", str(plan), "--backend", "dask", "--out", str(tmp_path / "x")]) == 2
    assert cli.run_cli(["sweep", "--model", "tracr-reverse", "--task", "tracr-reverse", "--address", "auto",
                        "--out", str(tmp_path / "x")]) == 2
    capsys.readouterr()


def test_a_folder_holding_a_sweep_without_a_plan_is_refused(tmp_path):
    (tmp_path / "sweep.json").write_text('{"header": {}}')
    runs = plan_from_dict({"models": "toy-induction-2l", "tasks": "induction", "methods": "eap"})
    with pytest.raises(UserError, match="another kind of sweep"):
        run_plan(runs, tmp_path)


def test_import_subcircuit_does_not_import_ray():
    code = ("import sys, subcircuit, subcircuit.cli, subcircuit.cli.plans, subcircuit.runs.plan, "
            "subcircuit.runs.backends, subcircuit.runs.parallel\n"
            "print('ray' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[-1] == "False"
