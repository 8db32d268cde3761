"""The plain progress line of a run whose stderr is not a terminal, driven by a fake clock (no
sleeping, nothing depends on how fast the machine is)."""

from __future__ import annotations

import io
import re

import pytest

from subcircuit.cli import _progress, run_cli
from subcircuit.cli._progress import ProgressLine, fmt_duration


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def make(**kw) -> tuple[ProgressLine, FakeClock, io.StringIO]:
    clock, stream = FakeClock(), io.StringIO()
    return ProgressLine("discover", clock=clock, stream=stream, **kw), clock, stream


def step(line: ProgressLine, clock: FakeClock, t: float, done: int, total: int, what: str) -> None:
    clock.t = t
    line(done, total, what)


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (45.9, "45s"), (60, "1m00s"), (252, "4m12s"),
                                                (3599, "59m59s"), (3725, "1h02m"), (-3, "0s")])
def test_fmt_duration(seconds: float, text: str) -> None:
    assert fmt_duration(seconds) == text


def test_a_line_every_interval_with_counts_receiver_elapsed_and_eta() -> None:
    line, clock, stream = make()
    step(line, clock, 2, 1, 70_651, "a0.h0<q>")  # the pass starts here (the model loaded before)
    step(line, clock, 29.9, 100, 70_651, "a0.h0<k>")
    assert stream.getvalue() == ""  # nothing before the first 30 s
    step(line, clock, 252, 12_345, 70_651, "a9.h3<q>")
    # rate (12345 - 1) / (252 - 2) per second; (70651 - 12345) / rate = 1180.9 s
    assert stream.getvalue() == ("discover: edges tried 12,345/70,651 (17%) · receiver a9.h3<q> · elapsed 4m12s · "
                                 "ETA 19m40s\n")
    step(line, clock, 281, 13_000, 70_651, "a9.h3<k>")
    assert stream.getvalue().count("\n") == 1  # 29 s after the last line: not yet
    step(line, clock, 282, 13_100, 70_651, "a9.h3<v>")
    assert stream.getvalue().splitlines()[1].startswith("discover: edges tried 13,100/70,651 (18%) · receiver a9.h3<v> "
                                                        "· elapsed 4m42s · ETA ")


def test_other_progress_reads_as_its_own_unit() -> None:
    line, clock, stream = make(interval=10)
    step(line, clock, 0, 0, 5, "eap-ig steps")
    step(line, clock, 30, 3, 5, "eap-ig steps")
    assert stream.getvalue() == "discover: eap-ig steps 3/5 (60%) · elapsed 30s · ETA 20s\n"


def test_a_new_pass_restarts_the_rate() -> None:
    """The next τ of a target-size search or the next run of a sweep counts from 0 again: the ETA
    is measured on the new pass only ('?' until it has moved)."""
    line, clock, stream = make(interval=0)
    step(line, clock, 0, 0, 100, "sp steps")
    step(line, clock, 100, 100, 100, "sp steps")  # first pass done: ETA 0
    step(line, clock, 101, 1, 100, "sp steps")  # second pass: no rate yet
    step(line, clock, 111, 11, 100, "sp steps")  # 1 step/s on this pass (the first ran at 1 step/s too)
    step(line, clock, 112, 11, 50, "sp steps")  # total changed: a new pass
    etas = [ln.rsplit("ETA ", 1)[1] for ln in stream.getvalue().splitlines()]
    assert etas == ["?", "0s", "?", "1m29s", "?"]


def test_unknown_total_and_empty_label() -> None:
    line, clock, stream = make(interval=0)
    step(line, clock, 5, 7, 0, "")
    assert stream.getvalue() == "discover: 7 · elapsed 5s · ETA ?\n"


def test_receiver_test_is_injectable() -> None:
    line, clock, stream = make(interval=0, is_receiver=lambda what: what == "r1")
    step(line, clock, 1, 1, 4, "r1")
    step(line, clock, 2, 2, 4, "a0.h0<q>")
    assert stream.getvalue().splitlines() == ["discover: edges tried 1/4 (25%) · receiver r1 · elapsed 1s · ETA ?",
                                              "discover: a0.h0<q> 2/4 (50%) · elapsed 2s · ETA 2s"]


def test_discover_not_on_a_terminal_prints_progress_lines_to_stderr(tmp_path, capsys, monkeypatch) -> None:
    """End to end through the command line (pytest's stderr is not a terminal): with the interval
    at 0 every call prints a line; the results on stdout are as without them."""
    monkeypatch.setattr(_progress, "INTERVAL_S", 0.0)
    argv = ["discover", "-m", "tracr-reverse", "-t", "tracr-reverse", "--ablation", "zero", "-o"]
    assert run_cli([*argv, str(tmp_path / "a")]) == 0
    captured = capsys.readouterr()
    progress = captured.err.splitlines()
    assert progress and all(ln.startswith("discover: edges tried ") for ln in progress)
    assert progress[-1].startswith("discover: edges tried 77/77 (100%) · receiver ")
    assert progress[-1].endswith(" · ETA 0s")
    monkeypatch.setattr(_progress, "INTERVAL_S", 1e9)
    assert run_cli([*argv, str(tmp_path / "b")]) == 0
    quiet = capsys.readouterr()
    def same(text: str, folder: str) -> str:
        return re.sub(r"time [0-9.]+ s", "time T s", text.replace(str(tmp_path / folder), "DIR"))

    assert quiet.err == "" and same(quiet.out, "b") == same(captured.out, "a")


def test_sweep_not_on_a_terminal_prints_progress_lines(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(_progress, "INTERVAL_S", 0.0)
    rc = run_cli(["sweep", "-m", "tracr-proportion", "-t", "tracr-proportion", "-o", str(tmp_path / "s"),
                  "--ablation", "zero", "--thresholds", "0,0.01", "--n-examples", "8"])
    err = capsys.readouterr().err.splitlines()
    assert rc == 0 and err and all(ln.startswith("sweep: edges tried ") for ln in err)
    assert sum(ln.startswith("sweep: edges tried 23/23 (100%)") for ln in err) == 2  # one pass per run
