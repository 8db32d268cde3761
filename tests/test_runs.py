"""Runs: one pipeline behind `discover` and `sweep` (a sweep's run gives the same circuit.json as a
`discover` run with the same options), options built from the methods' own dataclasses, and the
refusals of options a method does not take (Python and command line)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from subcircuit.cli import run_cli
from subcircuit.errors import UserError
from subcircuit.methods import SelectOptions
from subcircuit.methods.acdc import ACDCOptions
from subcircuit.methods.attribution import EAPIGOptions
from subcircuit.runs.discover import discover, options_from_trace
from subcircuit.runs.options import DiscoverOptions, run_header
from subcircuit.runs.sweep import sweep

# (model, task, run-level options) of the two models the equality is shown on
CASES = {
    "toy": ("toy-induction-2l", "induction", {"n_examples": 8}),
    "tracr": ("tracr-reverse", "tracr-reverse", {"ablation": "zero"}),
}


def circuit_file(folder: Path, drop: tuple[str, ...] = ()) -> dict:
    """circuit.json without `timings_s` (and without the `results` entries in `drop`)."""
    d = json.loads((folder / "circuit.json").read_text())
    d.pop("timings_s")
    d["results"] = {k: v for k, v in d["results"].items() if k not in drop}
    return d


def approx(v, tol: float = 1e-7):
    """Floats to `tol` (absolute and relative)."""
    if isinstance(v, float):
        return pytest.approx(v, rel=tol, abs=tol)
    if isinstance(v, dict):
        return {k: approx(x, tol) for k, x in v.items()}
    if isinstance(v, list):
        return [approx(x, tol) for x in v]
    return v


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_acdc_sweep_run_equals_discover_with_its_threshold(tmp_path, case):
    """Every τ of a sweep, run again by `discover --threshold τ`: the same circuit.json. The runs
    after the first replay the trace of the nearest τ done (the same decisions, and the losses that
    run measured, without their forward passes), so their cost counter `forward_configs` differs,
    and a score measured in another batch may differ in the last bit of the float32 losses it is
    the difference of (2.4e-7 at a loss of 2 here): those are compared to 1e-6."""
    model, task, run = CASES[case]
    options = DiscoverOptions.build("acdc", **run)
    taus = [0.001, 0.03, 0.3]
    res = sweep(model, task, options, taus, out=tmp_path / "sweep")
    for i, tau in enumerate(taus):
        name = f"tau-{tau:g}"
        alone = discover(model, task, options.updated(threshold=tau), out=tmp_path / name, report=False)
        assert alone.options == res.circuits[name].options and alone.options["threshold"] == tau
        drop = () if i == 0 else ("forward_configs",)
        a, b = circuit_file(tmp_path / "sweep" / name, drop), circuit_file(tmp_path / name, drop)
        assert [(e["edge"], e["in_circuit"]) for e in a["edges"]] == [(e["edge"], e["in_circuit"]) for e in b["edges"]]
        assert a.pop("edges") == approx(b.pop("edges"), 1e-7 if i == 0 else 1e-6)
        assert a == approx(b)
    trace = json.loads((tmp_path / "sweep" / "tau-0.03" / "acdc-trace.json").read_text())
    assert trace["header"] == run_header(options.updated(threshold=0.03), model, task)  # a discover run's
    assert options_from_trace(tmp_path / "sweep" / "tau-0.03") == (options.updated(threshold=0.03), model, task)


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_score_sweep_run_equals_discover_with_its_size(tmp_path, case):
    model, task, run = CASES[case]
    options = DiscoverOptions.build("eap-ig", ig_steps=2, **run)
    res = sweep(model, task, options, sizes=[3, 7], out=tmp_path / "sweep")
    for k in (3, 7):
        alone = discover(model, task, options.updated(edges=k), out=tmp_path / f"edges-{k}", report=False)
        assert alone.params["ig_steps"] == 2 and alone.params["edges"] == k
        assert circuit_file(tmp_path / "sweep" / f"edges-{k}") == approx(circuit_file(tmp_path / f"edges-{k}"))
    assert [r["n_edges"] for r in res.summary["runs"]] == [3, 7]


def test_a_score_sweep_runs_its_method_once(tmp_path, monkeypatch):
    """The runs of a size sweep share the method's result (kept in the session, and in
    scores.safetensors for --resume)."""
    import dataclasses

    from subcircuit.methods import METHODS

    spec = METHODS["random"]
    calls = []

    def counted(problem, opts, ctx):
        calls.append(ctx.folder)
        return spec.fn(problem, opts, ctx)

    monkeypatch.setitem(METHODS, "random", dataclasses.replace(spec, fn=counted))
    sweep("toy-induction-2l", "induction", DiscoverOptions.build("random", n_examples=4), sizes=[2, 5, 9],
          out=tmp_path)
    assert len(calls) == 1 and (tmp_path / "scores.safetensors").exists()


# ------------------------------------------------------------------------------ options


def test_build_routes_flat_names_to_the_run_the_method_and_the_selection():
    o = DiscoverOptions.build("eap-ig", ig_steps=3, edges=50, selection="greedy", seed=2, metric="logit-diff")
    assert o.method_options == EAPIGOptions(ig_steps=3) and o.select == SelectOptions(edges=50, selection="greedy")
    assert (o.seed, o.metric) == (2, "logit-diff")
    a = DiscoverOptions.build("acdc", threshold=0.05, abs_value=True)
    assert a.method_options == ACDCOptions(threshold=0.05, abs_value=True) and a.select is None
    for opts in (o, a):
        assert DiscoverOptions.build(**opts.flat()) == opts  # flat() rebuilds the options
    assert list(a.flat())[:8] == ["method", "metric", "ablation", "granularity", "n_examples", "seed", "device",
                                  "force"]
    assert set(a.flat()) - set(o.flat()) >= {"abs_value", "candidates", "max_batch"}
    assert DiscoverOptions() == DiscoverOptions.build()  # defaults: ACDC with its defaults
    assert a.updated(threshold=0.1).method_options.threshold == 0.1


@pytest.mark.parametrize(("method", "values", "message"), [
    ("eap-ig", {"abs_value": True, "edges": 200},
     r"^--abs is not an option of eap-ig \(its options: --ig-steps, --ig, --edges, --threshold, --sparsity, "
     r"--selection, --prune, --ranking\)$"),
    ("acdc", {"selection": "greedy"}, r"^--selection is not an option of acdc \(its options: --threshold, "),
    ("random", {"ig_steps": 3}, r"^--ig-steps is not an option of random \(its options: --edges, "),
    ("edge-pruning", {"prune": True}, r"^--prune is not an option of edge-pruning "),
    ("acdcc", {}, r"^unknown method 'acdcc' \(did you mean 'acdc'\?\)"),
    ("acdc", {"threshold": -1.0}, r"^--threshold -1.0 is invalid"),
    ("eap", {"edges": 3, "threshold": 0.1}, r"^give only one of --sparsity, --edges, --threshold"),
    ("acdc", {"n_examples": 0}, r"^--n-examples 0 is invalid"),
    ("acdc", {"ablation": "mean2"}, r"^unknown ablation 'mean2'"),
    ("acdc", {"ig": "bogus"}, r"^--ig 'bogus' is invalid; expected one of inputs, activations$"),
])
def test_build_refuses_with_one_line(method, values, message):
    with pytest.raises(UserError, match=message) as e:
        DiscoverOptions.build(method, **values)
    assert "\n" not in str(e.value)


def test_selection_options_only_for_score_methods():
    with pytest.raises(UserError, match="acdc selects its circuit itself"):
        DiscoverOptions(method="acdc", select=SelectOptions(edges=3))
    with pytest.raises(TypeError, match="EAPIGOptions"):
        DiscoverOptions(method="eap-ig", method_options=ACDCOptions())


def test_options_come_back_from_a_checkpoint(tmp_path):
    opts = DiscoverOptions.build("acdc", threshold=0.02, n_examples=4, seed=3)
    discover("toy-induction-2l", "induction", opts, out=tmp_path, report=False)
    back, model, task = options_from_trace(tmp_path, device="cpu", force=True)
    assert (model, task) == ("toy-induction-2l", "induction")
    assert back == opts.updated(force=True)


# ------------------------------------------------------------------------------ command line


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_cli_refuses_a_flag_the_method_does_not_take(tmp_path, capsys):
    rc = run_cli(["discover", "--model", "toy-induction-2l", "--task", "induction", "--method", "eap-ig",
                  "--edges", "200", "--abs", "--out", str(tmp_path / "never")])
    with pytest.raises(UserError) as python:
        DiscoverOptions.build("eap-ig", edges=200, abs_value=True)
    assert rc == 2 and one_line_error(capsys) == f"error: {python.value}"  # the same line as in Python
    assert not (tmp_path / "never").exists()
    rc = run_cli(["sweep", "-m", "toy-induction-2l", "-t", "induction", "--method", "eap", "--ig-steps", "2",
                  "--sizes", "3", "-o", str(tmp_path / "never")])
    assert rc == 2 and "--ig-steps is not an option of eap" in one_line_error(capsys)
    rc = run_cli(["sweep", "-m", "toy-induction-2l", "-t", "induction", "--threshold", "0.1", "-o", str(tmp_path)])
    assert rc == 2 and "No such option: --threshold" in one_line_error(capsys)  # a sweep gives each run its τ


def test_cli_resume_refuses_options_of_its_own(tmp_path, capsys):
    """`--resume DIR` takes the run's options from DIR's checkpoint: a method flag (or another
    run option) given with it is refused, not silently ignored."""
    assert run_cli(["discover", "-m", "toy-induction-2l", "-t", "induction", "--n-examples", "4", "--threshold",
                    "0.05", "-o", str(tmp_path)]) == 0
    capsys.readouterr()
    for extra in (["--abs"], ["--threshold", "0.1"], ["--method", "eap"], ["--seed", "2"]):
        assert run_cli(["discover", "--resume", str(tmp_path), *extra]) == 2
        err = one_line_error(capsys)
        assert f"{extra[0]} cannot be given with it" in err and err.startswith("error: --resume takes the run's")


def test_cli_sweep_passes_method_flags_to_every_run(tmp_path, capsys):
    assert run_cli(["sweep", "-m", "toy-induction-2l", "-t", "induction", "--n-examples", "4", "--method", "eap-ig",
                    "--ig-steps", "2", "--ig", "activations", "--sizes", "3,5", "-o", str(tmp_path)]) == 0
    for k in (3, 5):
        c = json.loads((tmp_path / f"edges-{k}" / "circuit.json").read_text())
        assert c["params"]["ig_steps"] == 2 and c["options"]["ig"] == "activations" and c["options"]["edges"] == k
