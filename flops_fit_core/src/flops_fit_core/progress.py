"""Progress for people: rich bars on a terminal, plain lines otherwise, nothing with -q.

Everything goes to stderr so `--json` output on stdout stays machine-readable.
"""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .schemas import RunResult

__all__ = ["ConsoleReporter"]


class ConsoleReporter:
    """The CLI's `Reporter`."""

    def __init__(self, quiet: bool = False, verbose: bool = False, console: Console | None = None):
        self.quiet, self.verbose = quiet, verbose
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._task = None
        self._done = 0
        self._total = 0

    @property
    def fancy(self) -> bool:
        return self.console.is_terminal and not self.quiet

    def message(self, text: str) -> None:
        if self.quiet and not text.startswith("warning"):
            return
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def training_started(self, total: int, skipped: int) -> None:
        self._done, self._total = 0, total
        if skipped:
            self.message(f"{skipped} experiments already have results; {total} to train")
        if total and self.fancy:
            self._progress = Progress(
                TextColumn("training"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task("", total=total)

    def run_progress(self, spec_id: str, fraction: float, message: str | None) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(
                self._task, description=f"{spec_id} {fraction:4.0%} {message or ''}"
            )

    def run_finished(self, result: RunResult) -> None:
        self._done += 1
        if result.status == "ok":
            text = (
                f"[{self._done}/{self._total}] {result.experiment_id} "
                f"N={result.spec.params:.3g} D={result.tokens_trained:.3g} loss={result.loss:.4f} "
                f"({result.wall_time_s:.1f}s)"
            )
        else:
            text = f"[{self._done}/{self._total}] {result.experiment_id} FAILED: {result.error}"
        notes = [f"  warning: {w}" for w in result.warnings]
        loud = result.status != "ok" or bool(notes)
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task)
            if self.verbose or loud:
                for line in (text, *notes):
                    self._progress.console.print(line, markup=False, highlight=False)
        elif not self.quiet or loud:
            print("\n".join((text, *notes)), file=sys.stderr, flush=True)

    def training_finished(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        self._progress = None
        self._task = None
