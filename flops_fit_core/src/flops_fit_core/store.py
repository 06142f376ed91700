"""The results store: `results.jsonl`, append-only, one `RunResult` a line.

Each append takes a file lock, writes one line, flushes and fsyncs: a `kill -9` at any moment
loses at most the experiment in flight. Nothing ever rewrites the file. A write cut short by a
crash leaves a torn record (truncated JSON); the next append starts a fresh line after it, so a
torn record may sit anywhere: loading skips and reports torn records and keeps the rest, while
any other malformed line is an error naming it. The last `ok` record of an id wins; failed
records are kept for the record and retried only when asked.

Each record carries the digest of the trainer options it was made under
(`TrainerInfo.options_digest`). Asked for the records of one digest, the store lets only those
(and records older than digests, whose options are unknown) satisfy an id; records made under
other options count only when the caller keeps them (`keep_other`), and otherwise leave the
id to be trained again.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from filelock import FileLock
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from .errors import InputError
from .schemas import RunResult

__all__ = ["LoadedResults", "ResultsStore"]


class _TrainerEntry(BaseModel):
    model_config = ConfigDict(extra="ignore")
    options_digest: str | None = None


class _Entry(BaseModel):
    """What resuming needs of a record: its id, status and trainer options digest (parsed
    fast; the rest on demand)."""

    model_config = ConfigDict(extra="ignore")
    experiment_id: str
    status: Literal["ok", "failed"]
    trainer: _TrainerEntry | None = None

    @property
    def digest(self) -> str | None:
        return self.trainer.options_digest if self.trainer is not None else None


_INDEX = TypeAdapter(list[_Entry])
#: Spec ids in our own records are not re-hashed on load (see ExperimentSpec._check).
_TRUSTED = {"trusted_ids": True}


class LoadedResults:
    """A results file's records: the index (id, status) at once, full `RunResult`s on demand.

    Building a validated `RunResult` costs tens of microseconds; deciding what to resume over
    100,000 records must not, so only the records a caller asks for are built (and cached).
    """

    def __init__(self, path: Path | None = None, lines=(), entries=(), numbers=(), torn=()):
        self.path = path
        self._lines: list[bytes] = list(lines)
        self._entries: list[_Entry] = list(entries)
        self._numbers: list[int] = list(numbers)  # 1-based line number of each record
        self._built: dict[int, RunResult] = {}
        #: 1-based numbers of torn records that were skipped
        self.torn_lines: list[int] = list(torn)

    def __len__(self) -> int:
        return len(self._entries)

    def _record(self, i: int) -> RunResult:
        if i not in self._built:
            try:
                self._built[i] = RunResult.model_validate_json(self._lines[i], context=_TRUSTED)
            except ValidationError as exc:
                raise InputError(_bad_line(self.path, self._numbers[i], exc)) from None
        return self._built[i]

    @property
    def records(self) -> list[RunResult]:
        """Every record in file order."""
        return [self._record(i) for i in range(len(self._entries))]

    def _rank(self, entry: _Entry, digest: str | None, keep_other: bool) -> int:
        """How well a record satisfies its id (0: not at all; higher wins, later breaks ties)."""
        ok = entry.status == "ok"
        if digest is None or entry.digest is None or entry.digest == digest:
            return 4 if ok else 2
        if keep_other:
            return 3 if ok else 1
        return 0

    def _latest_index(self, digest: str | None = None, keep_other: bool = False) -> dict[str, int]:
        best: dict[str, int] = {}
        ranks: dict[str, int] = {}
        for i, entry in enumerate(self._entries):
            rank = self._rank(entry, digest, keep_other)
            if rank and rank >= ranks.get(entry.experiment_id, 0):
                best[entry.experiment_id] = i
                ranks[entry.experiment_id] = rank
        return best

    def statuses(self, digest: str | None = None, keep_other: bool = False) -> dict[str, str]:
        """Per id `ok` if a record succeeded, else `failed` (no record is built).

        With `digest`, only records of those trainer options (or of unknown options) count,
        and records of other options too with `keep_other`; an id with none is absent.
        """
        found = self._latest_index(digest, keep_other)
        return {k: self._entries[i].status for k, i in found.items()}

    def latest(self, digest: str | None = None, keep_other: bool = False) -> dict[str, RunResult]:
        """Per id the last `ok` record, or the last failed one if it never succeeded (of the
        trainer options `digest`, as in `statuses`)."""
        found = self._latest_index(digest, keep_other)
        return {k: self._record(i) for k, i in found.items()}

    def ok(
        self, ids: set[str] | None = None, digest: str | None = None, keep_other: bool = False
    ) -> list[RunResult]:
        """The winning `ok` records (optionally only those of `ids`; of `digest`, as in
        `statuses`)."""
        return [
            self._record(i)
            for k, i in self._latest_index(digest, keep_other).items()
            if self._entries[i].status == "ok" and (ids is None or k in ids)
        ]

    def failed(self) -> list[RunResult]:
        return [r for r in self.latest().values() if r.status == "failed"]

    def other_options(self, digest: str, ids: set[str] | None = None) -> dict[str, RunResult]:
        """The ids (optionally of `ids`) that no record of trainer options `digest` (or of
        unknown options) satisfies, but one of other options does: per id the record that
        `keep_other` would use."""
        matching = self._latest_index(digest)
        kept = self._latest_index(digest, keep_other=True)
        return {
            k: self._record(i)
            for k, i in kept.items()
            if k not in matching and (ids is None or k in ids)
        }

    def unknown_options(self, ids: set[str] | None = None) -> int:
        """How many of the winning records were written before trainer options were recorded."""
        return sum(
            1
            for k, i in self._latest_index().items()
            if self._entries[i].digest is None and (ids is None or k in ids)
        )


def _bad_line(path: Path | None, number: int, exc: ValidationError) -> str:
    problem = exc.errors()[0]
    where = ".".join(str(p) for p in problem["loc"])
    detail = f"{where}: {problem['msg']}" if where else problem["msg"]
    return f"{path}:{number}: not a valid result record ({detail})"


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
        """Index every record; torn records are skipped and reported, any other bad line is an
        InputError naming it."""
        if not self.path.exists():
            return LoadedResults(self.path)
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read {self.path}: {exc.strerror}") from None
        numbered = [(i + 1, ln) for i, ln in enumerate(data.split(b"\n")) if ln.strip()]
        numbers = [n for n, _ in numbered]
        lines = [ln for _, ln in numbered]
        try:  # fast path: one validation call for the whole file
            entries = _INDEX.validate_json(b"[" + b",".join(lines) + b"]")
            return LoadedResults(self.path, lines, entries, numbers)
        except ValidationError:
            pass
        kept_lines, kept_entries, kept_numbers, torn = [], [], [], []
        for number, line in numbered:
            try:
                entry = _Entry.model_validate_json(line)
            except ValidationError as exc:
                if _is_torn(exc.errors()[0], line):
                    torn.append(number)
                    continue
                raise InputError(_bad_line(self.path, number, exc)) from None
            kept_lines.append(line)
            kept_entries.append(entry)
            kept_numbers.append(number)
        return LoadedResults(self.path, kept_lines, kept_entries, kept_numbers, torn)


def _is_torn(problem: dict, line: bytes) -> bool:
    """A record cut short by a crash: JSON that starts like ours and ends mid-way."""
    return (
        problem["type"] == "json_invalid"
        and "EOF while parsing" in problem["msg"]
        and line.startswith(b'{"schema_version"')
    )
