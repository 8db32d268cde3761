"""The `subcircuit` command line: thin wiring of the library (parse, call, print).

Every command is a small function that parses its options, calls one library function and prints
the result with rich. The commands live in one module per group:

- `info`      `models`, `tasks`: what is available (`task_files`: `tasks generate`, `tasks check`)
- `demo`      `demo`: the bundled models at work (offline)
- `discover`  `discover`: one run, written to a folder
- `show`      `show`: (re)render a run's report
- `evaluate`  `evaluate`, `compare`, `sweep`: how good runs are, and many runs at once
- `exchange`  `export`, `import`: circuits to and from EAP-IG / MIB files, DOT and CSV
- `benchmark` `benchmark ground-truth`, `benchmark paper`: methods scored against known circuits

and share `_output` (consoles, progress bar, spinner), `_progress` (the rich bar on a terminal, a
plain progress line every ~30 s otherwise), `_options` (options spelled the same everywhere) and
`_method_flags` (flags generated from a method registry's options dataclasses: `discover` and
`sweep` take the registered methods' options this way). This module holds
the typer `app`, the global options and the error handling, all in one place, `run_cli`:

- `UserError` (bad input)            -> one line `error: <message>` on stderr, exit code 2
- click/typer usage errors           -> one line `error: <message> ...` on stderr, exit code 2
- anything else (a bug, a crash)     -> one line `error: <Type>: <message> (run with --debug ...)`,
                                        exit code 1
- `--debug` (anywhere on the line)   -> the traceback is printed as well

Adding a command: write a function in the module of its group with options from the `_options`
aliases (so names and help texts stay the same across commands), import the library lazily inside
the function (keeps `subcircuit --help` fast: importing this package must not import torch),
print with `out()`, raise `UserError` for bad input, and register it below with `app.command()`
(the order of registration is the order of `subcircuit --help`).
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

import typer

from subcircuit.cli import benchmark, demo, discover, evaluate, exchange, info, show, task_files
from subcircuit.cli._method_flags import method_flags_command
from subcircuit.cli._output import err, fmt_params, is_tty, out, progress, status
from subcircuit.cli.demo import print_demo, print_demo_summary, print_discovery
from subcircuit.errors import UserError

__all__ = ["app", "main", "run_cli", "err", "fmt_params", "is_tty", "out", "progress", "status", "print_demo",
           "print_demo_summary", "print_discovery"]

app = typer.Typer(
    name="subcircuit",
    help="Find circuits in transformer language models (ACDC and faster relatives).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# ------------------------------------------------------------------------------ global options


@dataclass
class CliState:
    """Global options, shared by `run_cli` (error handling) and the commands (via ctx.obj)."""

    debug: bool = False
    verbose: int = 0


_HANDLER_MARK = "_subcircuit_cli_handler"


def teardown_logging() -> None:
    """Remove the handler `setup_logging` added (so in-process runs leave no state behind)."""
    root = logging.getLogger("subcircuit")
    for h in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(h)
    root.setLevel(logging.NOTSET)


def setup_logging(verbose: int) -> None:
    """Log `subcircuit.*` to stderr: warnings by default, -v info, -vv debug (also transformers')."""
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    teardown_logging()
    root = logging.getLogger("subcircuit")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(level)
    # transformers / huggingface_hub read these when first imported (commands import them lazily)
    if verbose < 2:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if not is_tty():
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TQDM_DISABLE", "1")


@app.callback()
def _global_options(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logging (-v info, -vv debug).")] = 0,
) -> None:
    """Find circuits in transformer language models (ACDC and faster relatives)."""
    state = ctx.ensure_object(CliState)
    state.debug = state.debug or debug
    state.verbose = verbose
    setup_logging(verbose)


# ------------------------------------------------------------------------------ commands
# In this order in `subcircuit --help`.

app.command()(info.models)
app.add_typer(task_files.app, name="tasks")
app.command()(demo.demo)
app.command(cls=method_flags_command(discover.method_flags))(discover.discover)
app.command()(show.show)
app.command()(evaluate.evaluate)
app.command()(evaluate.compare)
app.command(cls=method_flags_command(evaluate.sweep_flags))(evaluate.sweep)
app.command()(exchange.export)
app.command("import")(exchange.import_)
app.add_typer(benchmark.app, name="benchmark")

# ------------------------------------------------------------------------------ entry points


def _one_line(text: str) -> str:
    """The first non-empty line of `text` (messages are printed on exactly one line)."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[0] if lines else ""


def _fail(message: str) -> None:
    print(f"error: {_one_line(message)}", file=sys.stderr, flush=True)


def _pop_debug(args: list[str]) -> tuple[list[str], bool]:
    """Accept `--debug` anywhere on the line (not only before the command), so that re-running a
    failed command with `--debug` appended works. Arguments after `--` are left alone."""
    end = args.index("--") if "--" in args else len(args)
    head = [a for a in args[:end] if a != "--debug"]
    return head + args[end:], len(head) < end


def run_cli(argv: Sequence[str] | None = None) -> int:
    """Run the command line on `argv` (default: sys.argv[1:]) and return the exit code.

    All error handling of the command line lives here (see the module docstring)."""
    args, debug = _pop_debug(list(sys.argv[1:] if argv is None else argv))
    state = CliState(debug=debug or os.environ.get("SUBCIRCUIT_DEBUG", "") not in ("", "0"))
    command = typer.main.get_command(app)
    try:
        rc = command.main(
            args=args,
            prog_name="subcircuit",
            standalone_mode=False,
            obj=state,
        )
    except typer.Abort:
        _fail("aborted")
        return 130
    except typer.TyperException as e:  # click's usage errors: unknown command/option, bad value
        if state.debug:
            traceback.print_exc()
        code = int(getattr(e, "exit_code", 2))
        message = _one_line(e.format_message() if hasattr(e, "format_message") else str(e))
        if message:  # empty for "no arguments": the help was printed already
            _fail(f"{message} (see 'subcircuit --help')" if code == 2 else message)
        return code
    except UserError as e:
        if state.debug:
            traceback.print_exc()
        _fail(str(e))
        return 2
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, exit code 1
        if state.debug:
            traceback.print_exc()
        _fail(f"{type(e).__name__}: {_one_line(str(e))} (run with --debug for the traceback)")
        return 1
    finally:
        teardown_logging()
    if rc == 130:  # typer turns Ctrl-C (KeyboardInterrupt) into a silent exit code 130
        _fail("interrupted")
    return rc if isinstance(rc, int) else 0


def main() -> None:
    """Console-script entry point (`subcircuit`)."""
    sys.exit(run_cli())
