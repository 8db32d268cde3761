"""The command line: listings, exit codes, one-line errors, --debug."""

from __future__ import annotations

import subprocess
import sys

import pytest

from subcircuit import cli
from subcircuit.errors import UserError


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli.run_cli(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def test_models_lists_smollm2(capsys) -> None:
    rc, out, err = run(capsys, "models")
    assert rc == 0, err
    assert "smollm2-135m" in out
    assert "134.5M" in out


def test_tasks_runs_and_lists_every_registered_task(capsys) -> None:
    rc, out, err = run(capsys, "tasks")
    assert rc == 0, err
    assert out.strip()
    try:
        from subcircuit.tasks import list_tasks
    except ImportError:  # the task registry is not there yet: the placeholder line is printed
        assert "no built-in tasks yet" in out
        return
    for info in list_tasks():
        assert info.name in out


def test_help(capsys) -> None:
    rc, out, _ = run(capsys, "--help")
    assert rc == 0
    for command in ("models", "tasks", "demo"):
        assert command in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [(["frobnicate"], "frobnicate"), (["models", "--bogus"], "--bogus"), (["demo", "--prompts", "x"], "--prompts")],
)
def test_usage_errors_exit_2_with_one_line(capsys, argv: list[str], needle: str) -> None:
    rc, _, err = run(capsys, *argv)
    assert rc == 2
    assert len(lines(err)) == 1 and lines(err)[0].startswith("error: ")
    assert needle in err


def test_user_error_inside_a_command_exits_2_with_exactly_one_line(capsys, monkeypatch) -> None:
    import subcircuit.runs.demo

    def bad(**_: object) -> None:
        raise UserError("unknown thing 'zzz'; valid: a, b")

    monkeypatch.setattr(subcircuit.runs.demo, "run_demo", bad)
    rc, out, err = run(capsys, "demo")
    assert rc == 2
    assert err == "error: unknown thing 'zzz'; valid: a, b\n"
    assert out == ""


def test_other_exceptions_exit_1_with_one_line_and_debug_shows_traceback(capsys, monkeypatch) -> None:
    import subcircuit.runs.demo

    def crash(**_: object) -> None:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(subcircuit.runs.demo, "run_demo", crash)
    rc, _, err = run(capsys, "demo")
    assert rc == 1
    assert lines(err) == ["error: RuntimeError: boom (run with --debug for the traceback)"]

    rc, _, err = run(capsys, "--debug", "demo")
    assert rc == 1
    assert "Traceback (most recent call last)" in err
    assert 'raise RuntimeError("boom' in err
    assert lines(err)[-1].startswith("error: RuntimeError: boom")

    rc, _, err = run(capsys, "demo", "--debug")  # appended after the command works too
    assert rc == 1 and "Traceback (most recent call last)" in err


def test_console_script_real_user_error_and_exit_codes() -> None:
    """Through a real process: a bad --device is a UserError raised by the library (exit 2, one
    line naming the value); an unknown command exits 2."""
    cmd = [sys.executable, "-m", "subcircuit"]
    p = subprocess.run([*cmd, "demo", "--device", "nonsense"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 2, p.stderr
    assert lines(p.stderr) == [lines(p.stderr)[0]] and "'nonsense'" in p.stderr
    p = subprocess.run([*cmd, "nosuchcommand"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 2 and len(lines(p.stderr)) == 1
    p = subprocess.run([*cmd, "models"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0 and "smollm2-135m" in p.stdout


def test_verbose_logging_goes_to_stderr(capsys, monkeypatch) -> None:
    import logging

    import subcircuit.runs.demo

    def logs(**_: object) -> None:
        logging.getLogger("subcircuit.runs.demo").info("hello from the library")
        raise UserError("stop here")

    monkeypatch.setattr(subcircuit.runs.demo, "run_demo", logs)
    rc, _, err = run(capsys, "demo")
    assert rc == 2 and "hello from the library" not in err
    rc, _, err = run(capsys, "-v", "demo")
    assert rc == 2 and "hello from the library" in err


def test_fmt_params() -> None:
    assert cli.fmt_params(134_515_008) == "134.5M"
    assert cli.fmt_params(0) == "?"
    assert cli.fmt_params(950) == "950"


def test_import_is_cheap() -> None:
    """`import subcircuit` and `import subcircuit.cli` (every command module included) must not import
    torch or transformers, nor must `subcircuit --help` or the --help of a command with hand-written
    options: commands import the library lazily. (`discover --help` and `sweep --help` list the
    flags generated from the method registry, so they import it, and torch, when they are shown.)"""
    code = ("import sys, pkgutil, importlib, subcircuit, subcircuit.cli\n"
            "for m in pkgutil.iter_modules(subcircuit.cli.__path__): importlib.import_module('subcircuit.cli.' + m.name)\n"
            "assert all(subcircuit.cli.run_cli([*c, '--help']) == 0 for c in ([], ['models'], ['show'], ['evaluate']))\n"
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert p.stdout.split()[-2:] == ["False", "False"], p.stderr
    assert p.returncode == 0, p.stderr


def test_commands_are_registered_in_help_order(capsys) -> None:
    import typer

    names = list(typer.main.get_command(cli.app).commands)
    # typer lists command groups (`tasks`: the listing, `tasks generate`, `tasks check`) after the commands
    assert names == ["models", "demo", "discover", "show", "evaluate", "compare", "sweep", "export", "import", "tasks", "benchmark"]
