"""Run the real `flops-fit` entry point in-process and capture what a user would see."""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass
from pathlib import Path

from flops_fit_core.cli import main

#: `--set` that draws no figures and no report: they are most of a mock study's seconds, and
#: a test that reads neither (results, fits, messages) passes it to stay fast.
NO_FIGURES = ("--set", "plot.names=[]")


def mock_study_args(out, *options: str) -> list[str]:
    """`-q run --preset mock --out OUT`, no figures (`NO_FIGURES`), then `options`: the
    arguments of a mock study for tests that read its results, fits and messages only."""
    return ["-q", "run", "--preset", "mock", "--out", str(out), *NO_FIGURES, *map(str, options)]


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


def flops_fit(capsys, *args: str) -> Outcome:
    capsys.readouterr()
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err)


def assert_one_line_error(outcome: Outcome, *needles: str, code: int = 2) -> None:
    """A user's mistake: exactly one `Error:` line on stderr holding `needles`, no traceback."""
    assert outcome.code == code, (outcome.code, outcome.err)
    lines = [ln for ln in outcome.err.splitlines() if ln.strip()]
    assert len(lines) == 1, outcome.err
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in outcome.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def sigint_as_from_a_terminal() -> None:
    """`preexec_fn` for a child the test stops with SIGINT: it takes Ctrl-C as a terminal's
    foreground job does, even when the test run itself was started with SIGINT ignored (a
    background job of a non-interactive shell), which the child would otherwise inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def snapshot(directory: Path) -> dict[Path, bytes]:
    """Every file under `directory` with its bytes: compare two to prove nothing changed."""
    return {p: p.read_bytes() for p in Path(directory).rglob("*") if p.is_file()}
