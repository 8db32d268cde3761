"""Flags generated from options dataclasses (`cli._method_flags`), on fake methods: the registry's
fields become typer options that parse, validate and show their help like hand-written ones; only
the flags given on the command line are returned; a flag the chosen method does not take is
refused with one line."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, get_type_hints

import pytest
import typer

from subcircuit.cli._method_flags import (
    META_KEY,
    MethodFlag,
    flags_from_fields,
    given_values,
    merge_fields,
    method_flags_command,
    refuse_unused,
)
from subcircuit.errors import UserError


def option(default: Any, help: str, *, flag: str | None = None) -> Any:
    """As methods.base.option: a dataclass field with its help and flag in the metadata."""
    return field(default=default, metadata={"help": help, "flag": flag})


@dataclass(frozen=True)
class FakeACDCOptions:
    threshold: float | None = option(None, "ACDC's τ (0.01 when neither this nor --edges).")
    edges: int | None = option(None, "Target circuit size.")
    abs_value: bool = option(False, "Compare |Δmetric| with τ.", flag="--abs")
    ig_steps: int = option(5, "EAP-IG interpolation steps.")
    ig: Literal["inputs", "activations"] = option("inputs", "EAP-IG variant.")


@dataclass(frozen=True)
class FakeEAPIGOptions:
    ig_steps: int = option(5, "EAP-IG interpolation steps.")
    ig: Literal["inputs", "activations"] = option("inputs", "EAP-IG variant.")


@dataclass(frozen=True)
class FakeSelectOptions:
    edges: int | None = option(None, "Target circuit size.")
    threshold: float | None = option(None, "ACDC's τ (0.01 when neither this nor --edges).")
    sparsity: float | None = option(None, "Fraction of edges removed.")
    selection: Literal["top", "greedy"] = option("top", "top or greedy [grow from the logits].")
    prune: bool = option(False, "Drop edges not on a path input -> logits.")


@dataclass(frozen=True)
class Field:
    name: str
    flag: str
    type: Any
    default: Any
    help: str


def fields_of(options_type: type) -> list[Field]:
    """What methods.base.option_fields gives: one entry per field, types resolved."""
    hints = get_type_hints(options_type)
    return [Field(f.name, f.metadata["flag"] or "--" + f.name.replace("_", "-"), hints[f.name], f.default,
                  f.metadata["help"]) for f in dataclasses.fields(options_type)]


PER_METHOD = {"acdc": fields_of(FakeACDCOptions), "eap-ig": fields_of(FakeEAPIGOptions) + fields_of(FakeSelectOptions),
              "random": []}
FLAGS = merge_fields(PER_METHOD)


def app_with(load, seen: dict) -> typer.Typer:
    app = typer.Typer(add_completion=False)

    @app.command(cls=method_flags_command(load))
    def run(ctx: typer.Context, method: Annotated[str, typer.Option("--method")] = "acdc") -> None:
        given = given_values(ctx, load())
        seen.update(method=method, given=given, params=dict(ctx.params))
        refuse_unused(given, load(), method)

    return app


def invoke(*argv: str, load=lambda: FLAGS) -> dict:
    seen: dict = {}
    typer.main.get_command(app_with(load, seen)).main(list(argv), prog_name="t", standalone_mode=False)
    return seen


def test_merge_gives_one_flag_per_name_with_the_methods_that_take_it() -> None:
    by = {f.name: f for f in FLAGS}
    assert list(by) == ["threshold", "edges", "abs_value", "ig_steps", "ig", "sparsity", "selection", "prune"]
    assert by["abs_value"] == MethodFlag("abs_value", "--abs", bool, False, "Compare |Δmetric| with τ.", ("acdc",))
    assert by["ig_steps"].methods == ("acdc", "eap-ig") and by["prune"].methods == ("eap-ig",)


def test_merge_refuses_one_name_with_two_types_and_lists_differing_defaults() -> None:
    one = Field("steps", "--steps", int, 200, "Steps.")
    with pytest.raises(ValueError, match="steps"):
        merge_fields({"a": [one], "b": [dataclasses.replace(one, type=float)]})
    (merged,) = merge_fields({"a": [one], "b": [dataclasses.replace(one, default=100)]})
    assert merged.default is None and merged.help == "Steps. Default: 200 (a), 100 (b)."


def test_only_given_flags_are_returned_parsed_by_type() -> None:
    assert invoke()["given"] == {}
    seen = invoke("--method", "eap-ig", "--ig-steps", "5", "--ig", "activations", "--edges", "12", "--prune")
    assert seen["given"] == {"ig_steps": 5, "ig": "activations", "edges": 12, "prune": True}  # 5 given: kept
    assert seen["params"] == {"method": "eap-ig"}  # the function's own parameters only
    seen = invoke("--abs", "--threshold", "0.05")
    assert seen["given"] == {"threshold": 0.05, "abs_value": True}


@pytest.mark.parametrize(("argv", "needle"), [
    (["--ig", "bogus"], "'bogus' is not one of 'inputs', 'activations'"),
    (["--ig-steps", "x"], "Invalid value for '--ig-steps': Input should be a valid integer"),
    (["--threshold", "abc"], "Invalid value for '--threshold'"),
    (["--abs", "1"], "unexpected extra argument(s) (1)"),
    (["--abs-value"], "No such option: --abs-value"),
])
def test_bad_values_are_usage_errors(argv: list[str], needle: str) -> None:
    with pytest.raises(typer.TyperException) as e:
        invoke(*argv)
    assert e.value.exit_code == 2 and needle in e.value.format_message()


def test_a_flag_the_method_does_not_take_is_refused_with_one_line() -> None:
    with pytest.raises(UserError) as e:
        invoke("--method", "eap-ig", "--abs", "--edges", "200")
    assert str(e.value) == ("--abs is not an option of eap-ig (its options: --threshold, --edges, --ig-steps, --ig, "
                            "--sparsity, --selection, --prune)")
    with pytest.raises(UserError, match=r"^--sparsity and --prune are not options of acdc \(its options: "):
        invoke("--sparsity", "0.9", "--prune")
    with pytest.raises(UserError, match=r"^--ig-steps is not an option of random \(it takes none\)$"):
        invoke("--method", "random", "--ig-steps", "3")
    assert invoke("--method", "acdc", "--ig-steps", "3")["given"] == {"ig_steps": 3}
    with pytest.raises(UserError, match=r"^--abs is not an option of eap-ig \(its options: --ig-steps, --ig, --edges, "):
        refuse_unused({"abs_value": True}, FLAGS, "eap-ig", order=["ig_steps", "ig", "edges"])  # its own order


def test_help_shows_types_choices_defaults_and_methods(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    invoke("--help")
    text = capsys.readouterr().out
    lines = {ln.split()[1]: ln for ln in text.splitlines() if ln.startswith("│ --")}
    assert "<int>" in lines["--ig-steps"] and "(methods: acdc, eap-ig) [default: 5]" in lines["--ig-steps"]
    assert "<inputs|activations>" in lines["--ig"] and "<top|greedy>" in lines["--selection"]
    assert "Compare |Δmetric| with τ. (methods: acdc)" in lines["--abs"]
    assert "top or greedy [grow from the logits]. (methods: eap-ig)" in lines["--selection"]  # not rich markup
    assert "default" not in lines["--threshold"]


def test_flags_are_built_only_when_the_command_runs() -> None:
    calls = []

    def load() -> list[MethodFlag]:
        calls.append(1)
        return FLAGS

    app = app_with(load, {})
    command = typer.main.get_command(app)
    assert calls == []  # building the app (as `subcircuit --help` does) does not load the registry
    command.main(["--ig-steps", "2"], prog_name="t", standalone_mode=False)
    assert calls


def test_bool_flags_with_a_true_or_no_default_can_be_turned_off() -> None:
    flags = [MethodFlag("reuse", "--reuse", bool, True, "Reuse.", ("m",)),
             MethodFlag("maybe", "--maybe", bool | None, None, "Maybe.", ("m",))]
    (reuse, maybe) = flags_from_fields(flags)
    assert (reuse.opts, reuse.secondary_opts, reuse.default) == (["--reuse"], ["--no-reuse"], True)
    assert (maybe.opts, maybe.secondary_opts, maybe.default) == (["--maybe"], ["--no-maybe"], None)
    assert invoke("--method", "m", "--no-reuse", load=lambda: flags)["given"] == {"reuse": False}
    assert invoke("--method", "m", "--maybe", load=lambda: flags)["given"] == {"maybe": True}


@pytest.mark.parametrize(("kind", "error"), [
    ("int | None", TypeError), (list[int], TypeError), (Literal[1, 2], TypeError), (int | str, TypeError),
])
def test_unsupported_types_are_refused(kind: Any, error: type) -> None:
    with pytest.raises(error):
        flags_from_fields([MethodFlag("x", "--x", kind, None, "X.", ("m",))])


def test_generated_flags_must_not_clash_with_the_command_s_own() -> None:
    clash = [MethodFlag("method", "--method", str, "x", "Clash.", ("m",))]
    with pytest.raises(ValueError, match="clash"):
        invoke(load=lambda: clash)


def test_values_are_kept_in_ctx_meta() -> None:
    import typer.main

    app = typer.Typer(add_completion=False)
    got = {}

    @app.command(cls=method_flags_command(lambda: FLAGS))
    def run(ctx: typer.Context) -> None:
        got.update(ctx.meta[META_KEY])

    typer.main.get_command(app).main(["--edges", "3"], prog_name="t", standalone_mode=False)
    assert got["edges"] == 3 and got["ig_steps"] == 5  # every generated flag, given or not
