"""The results store: `results.jsonl`, append-only, one `RunResult` a line.

Each append takes a file lock, writes one line, flushes and fsyncs: a `kill -9` at any moment
loses at most the experiment in flight. Nothing ever rewrites the file. A write cut short by a
crash leaves a torn record (truncated JSON); the next append starts a fresh line after it, so a
torn record may sit anywhere: loading skips and reports torn records and keeps the rest, while
any other malformed line is an error naming it. The last `ok` record of an id wins; failed
records are kept for the record and retried only when asked.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock
from pydantic import TypeAdapter, ValidationError

from .errors import InputError
from .schemas import RunResult

__all__ = ["LoadedResults", "ResultsStore"]

_MANY = TypeAdapter(list[RunResult])


@dataclass
class LoadedResults:
    """Every record in file order, plus the verdict per experiment id."""

    records: list[RunResult] = field(default_factory=list)
    torn_lines: list[int] = field(default_factory=list)  # 1-based numbers of skipped torn records

    def latest(self) -> dict[str, RunResult]:
        """Per id the last `ok` record, or the last failed one if it never succeeded."""
        best: dict[str, RunResult] = {}
        for record in self.records:
            held = best.get(record.experiment_id)
            if record.status == "ok" or held is None or held.status != "ok":
                best[record.experiment_id] = record
        return best

    def ok(self) -> list[RunResult]:
        return [r for r in self.latest().values() if r.status == "ok"]

    def failed(self) -> list[RunResult]:
        return [r for r in self.latest().values() if r.status == "failed"]


class ResultsStore:
    """Append-only JSONL results at `path` (its lock file sits beside it)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._lock = FileLock(str(self.path) + ".lock")

    def append(self, result: RunResult) -> None:
        """Append one record durably: locked, flushed, fsynced."""
        line = result.model_dump_json().encode() + b"\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.path, "a+b") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() > 0:  # a torn line from a crash must not swallow this record
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    fh.write(b"\n")
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def extend(self, results: Iterable[RunResult]) -> None:
        for result in results:
            self.append(result)

    def load(self) -> LoadedResults:
        """Read every record; torn records are skipped and reported, any other bad line is an
        InputError naming it."""
        if not self.path.exists():
            return LoadedResults()
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read {self.path}: {exc.strerror}") from None
        lines = data.split(b"\n")
        numbered = [(i + 1, ln) for i, ln in enumerate(lines) if ln.strip()]
        if not numbered:
            return LoadedResults()
        try:  # fast path: one validation call for the whole file
            return LoadedResults(
                _MANY.validate_json(b"[" + b",".join(ln for _, ln in numbered) + b"]")
            )
        except ValidationError:
            pass
        records: list[RunResult] = []
        torn: list[int] = []
        for number, line in numbered:
            try:
                records.append(RunResult.model_validate_json(line))
            except ValidationError as exc:
                problem = exc.errors()[0]
                if _is_torn(problem, line):
                    torn.append(number)
                    continue
                where = ".".join(str(p) for p in problem["loc"])
                raise InputError(
                    f"{self.path}:{number}: not a valid result record"
                    + (f" ({where}: {problem['msg']})" if where else f" ({problem['msg']})")
                ) from None
        return LoadedResults(records, torn)


def _is_torn(problem: dict, line: bytes) -> bool:
    """A record cut short by a crash: JSON that starts like ours and ends mid-way."""
    return (
        problem["type"] == "json_invalid"
        and "EOF while parsing" in problem["msg"]
        and line.startswith(b'{"schema_version"')
    )
