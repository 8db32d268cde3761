"""Plans on a local Ray cluster (ray.init(num_cpus=2), no dashboard; started once for the module):
the same circuit.json files as the local backend, a killed worker retried to identical circuits,
a failing run isolated and reported, a rerun doing no work."""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from subcircuit.runs.backends import run_plan  # noqa: E402
from subcircuit.runs.plan import plan_from_dict  # noqa: E402

pytestmark = pytest.mark.slow  # Ray's start (a few seconds) and one task per run

PLAN = {
    "n_examples": 8,
    "grid": [
        {"models": "toy-induction-2l", "tasks": "induction", "methods": ["acdc", "eap-ig"],
         "thresholds": [0.05, 0.2], "sizes": [10], "options": {"eap-ig": {"ig_steps": 2}}},
        {"models": "tracr-reverse", "tasks": "tracr-reverse", "methods": ["acdc", "eap-ig"],
         "thresholds": [0.01], "sizes": [5, 10], "options": {"eap-ig": {"ig_steps": 2}}},
    ],
}


def circuits(folder: Path) -> dict[str, dict]:
    """{run name: circuit.json without its timings}."""
    out = {}
    for p in sorted(folder.glob("*/circuit.json")):
        d = json.loads(p.read_text())
        d.pop("timings_s")
        out[p.parent.name] = d
    return out


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # the worker hook below is defined in this module, which the workers cannot import by name
    import ray.cloudpickle as cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def runs():
    return plan_from_dict(PLAN)


@pytest.fixture(scope="module")
def local_sweep(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    res = run_plan(runs, out, backend="local")
    assert all(o.status == "done" for o in res.outcomes.values())
    return out


def test_ray_gives_the_local_circuits(cluster, runs, local_sweep, tmp_path):
    assert len(runs) >= 6 and {r.options.method for r in runs} == {"acdc", "eap-ig"}
    assert {r.model for r in runs} == {"toy-induction-2l", "tracr-reverse"}
    ended = []
    res = run_plan(runs, tmp_path, backend="ray", progress=lambda d, t, n: ended.append((d, t)))
    assert {o.status for o in res.outcomes.values()} == {"done"}
    assert ended[-1] == (len(runs), len(runs))
    assert circuits(tmp_path) == circuits(local_sweep)
    index = json.loads((tmp_path / "sweep.json").read_text())
    assert [r["name"] for r in index["runs"]] == [r.name for r in runs]
    assert {r["status"] for r in index["runs"]} == {"done"}

    # a rerun of the finished sweep does no work: every run skipped, no file rewritten
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/*")}
    again = run_plan(runs, tmp_path, backend="ray")
    assert {o.status for o in again.outcomes.values()} == {"skipped"}
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("*/*")} == stamps


def assert_same_resumed_run(a: dict, b: dict) -> None:
    """The rule of tests/test_interruption.py for a resumed ACDC run: the same circuit, decisions
    and options; the measured scores equal up to float rounding (after a resume the fast path
    batches its trials differently) and the cost counter `forward_configs` lower."""
    assert [(e["edge"], e["in_circuit"]) for e in a["edges"]] == [(e["edge"], e["in_circuit"]) for e in b["edges"]]
    assert [e["score"] for e in a["edges"]] == pytest.approx([e["score"] for e in b["edges"]], rel=1e-5, abs=1e-6)
    cost = {"forward_configs"}
    assert {k: v for k, v in a["results"].items() if k not in cost} == \
        {k: v for k, v in b["results"].items() if k not in cost}
    assert {k: v for k, v in a.items() if k not in ("edges", "results")} == \
        {k: v for k, v in b.items() if k not in ("edges", "results")}


def kill_once(marker: str, sweep: str, target: str, name: str, done: int, total: int, what: str) -> None:
    """Kill this worker process the first time run `target` is half way; the marker says it
    happened and whether the run's trace was on disk then (the retry resumes from it)."""
    if name == target and done >= total // 2 and not os.path.exists(marker):
        Path(marker).write_text(json.dumps({"trace": (Path(sweep) / name / "acdc-trace.json").exists()}))
        os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_worker_is_retried_to_the_same_circuits(cluster, runs, local_sweep, tmp_path):
    acdc = [r for r in runs if r.options.method == "acdc" and r.model == "toy-induction-2l"]
    marker = tmp_path / "killed"
    hook = functools.partial(kill_once, str(marker), str(tmp_path / "sweep"), acdc[0].name)
    res = run_plan(acdc, tmp_path / "sweep", backend="ray", hook=hook)
    # the worker was killed once, mid-run, after writing part of its trace
    assert json.loads(marker.read_text()) == {"trace": True}
    assert {o.status for o in res.outcomes.values()} == {"done"}
    got, want = circuits(tmp_path / "sweep"), circuits(local_sweep)
    assert sorted(got) == sorted(r.name for r in acdc)
    for name, a in got.items():
        assert_same_resumed_run(a, want[name])


def test_a_failing_run_is_reported_and_the_others_finish(cluster, tmp_path):
    """(with `files="driver"`: the workers send the run folders back and the driver writes them)"""
    runs = plan_from_dict({"models": "toy-induction-2l", "tasks": "induction", "methods": "eap",
                           "n_examples": 4, "sizes": [10, 10**6, 20]})
    res = run_plan(runs, tmp_path, backend="ray", files="driver")
    status = {n: o.status for n, o in res.outcomes.items()}
    assert sorted(status.values()) == ["done", "done", "failed"]
    (bad,) = res.failed
    assert "1000000" in res.failed[bad] and "\n" not in res.failed[bad]
    index = {r["name"]: r for r in json.loads((tmp_path / "sweep.json").read_text())["runs"]}
    assert index[bad]["status"] == "failed" and index[bad]["error"] == res.failed[bad]
    assert all((tmp_path / n / "circuit.json").exists() for n, s in status.items() if s == "done")


def test_data_parallel_scores_on_ray_actors(cluster):
    """EAP-IG and faithfulness over 4 shards on 2 Ray actors = one process (the SmolLM2 IOI check with
    64 prompts is benchmarks/bench_parallel.py: too slow for the test tier on 2 cores)."""
    import torch

    from subcircuit.methods import Context
    from subcircuit.runs.options import DiscoverOptions
    from subcircuit.runs.parallel import ShardPool
    from subcircuit.runs.pipeline import open_session

    opts = DiscoverOptions.build("eap-ig", n_examples=16, ig_steps=2)
    session = open_session("toy-induction-2l", "induction", opts)
    want = opts.spec.fn(session.problem, opts.method_options, Context()).scores
    with ShardPool("toy-induction-2l", "induction", opts, shards=4, actors=2, cpus=0.5) as pool:
        assert pool.n == 16
        got = pool.scores()
        torch.testing.assert_close(got, want.float(), rtol=0, atol=1e-5)
        keep = torch.zeros(session.graph.n_edges)
        keep[want.abs().topk(8).indices] = 1
        mask = session.graph.from_flat(keep)
        from subcircuit.evaluation.faithfulness import measure

        one = measure(session.problem, mask, session.baseline)
        par = pool.measure(mask)
    assert par == pytest.approx(one, abs=1e-5)


def test_cli_sweep_flags_on_ray(cluster, tmp_path, capsys):
    """`subcircuit sweep --model ... --backend ray` without a plan file: the flags become a plan."""
    from subcircuit import cli

    rc = cli.run_cli(["sweep", "--model", "tracr-reverse", "--task", "tracr-reverse", "--method", "acdc",
                      "--thresholds", "0.01,0.1", "--n-examples", "4", "--backend", "ray", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0 and "2 runs (2 made now" in out
    assert len(list(tmp_path.glob("tracr-reverse_tracr-reverse_acdc_tau-*/circuit.json"))) == 2
