"""The results store: `results.jsonl`, append-only, one `RunResult` a line.

Each append takes a file lock, writes one line, flushes and fsyncs: a `kill -9` at any moment
loses at most the experiment in flight. Nothing ever rewrites a complete record. A write cut
short (a crash, a full disk) leaves an incomplete last line, whatever its length: the writer
sets it aside to `results.jsonl.torn-<timestamp>` and truncates the file to its last complete
line, under the lock, before it appends again (`heal`); a reader skips it and says so. (Older
versions started a fresh line after a torn record, so a torn record may also sit mid-file:
loading skips and reports those too.) Any other malformed line is an error naming it. The last
`ok` record of an id wins; failed records are kept for the record and retried only when asked,
or on any rerun when the machine, not the experiment, failed (`RunResult.retried_on_rerun`).

The lock file (`results.jsonl.lock`) is also the study's writer lock: `writer()` holds it for a
whole `run` or `train` and records the holder's pid in it, so a second writer of the same
results file stops at once, naming the first; the kernel releases the lock of a process that
dies, so a stale lock is simply taken over.

Each record carries the digest of the trainer options it was made under
(`TrainerInfo.options_digest`). Asked for the records of one digest, the store lets only those
(and records older than digests, whose options are unknown) satisfy an id; records made under
other options count only when the caller keeps them (`keep_other`), and otherwise leave the
id to be trained again.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from filelock import FileLock, Timeout
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from .errors import InputError, StudyLocked
from .files import output_error, write_atomic
from .schemas import INFRA_CAUSES, RunResult

__all__ = ["LoadedResults", "ResultsStore"]

#: Suffix of the file a torn last line is set aside to: `results.jsonl.torn-<timestamp>`.
TORN_SUFFIX = ".torn-"


class _TrainerEntry(BaseModel):
    model_config = ConfigDict(extra="ignore")
    options_digest: str | None = None


class _Entry(BaseModel):
    """What resuming needs of a record: its id, status and trainer options digest (parsed
    fast; the rest on demand)."""

    model_config = ConfigDict(extra="ignore")
    experiment_id: str
    status: Literal["ok", "failed"]
    cause: str | None = None
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

    def retried_on_rerun(self, digest: str | None = None, keep_other: bool = False) -> set[str]:
        """The ids whose winning record failed for a fault of the machine (`INFRA_CAUSES`):
        a plain rerun trains them again."""
        return {
            k
            for k, i in self._latest_index(digest, keep_other).items()
            if self._entries[i].status == "failed" and self._entries[i].cause in INFRA_CAUSES
        }

    def skipped_note(self) -> str | None:
        """One line on the torn records loading skipped, or None: what `fit` tells the user."""
        if not self.torn_lines:
            return None
        n = len(self.torn_lines)
        lines = ", ".join(map(str, self.torn_lines[:3])) + (", ..." if n > 3 else "")
        records = "1 torn record" if n == 1 else f"{n} torn records"
        return (
            f"{self.path}: skipped {records} (line {lines}: a write cut short by a crash or "
            "a full disk); their experiments are left out unless another record has them"
        )

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
    message = problem["msg"].removeprefix("Value error, ")
    detail = f"{where}: {message}" if where else message
    return f"{path}:{number}: not a valid result record ({detail})"


class ResultsStore:
    """Append-only JSONL results at `path` (its lock file sits beside it)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.lock_path = Path(str(self.path) + ".lock")
        # One instance per lock file in this process, shared by threads: `writer()` and
        # `append` nest (flock locks of two descriptors of one file would exclude each other).
        self._lock = FileLock(str(self.lock_path), is_singleton=True, thread_local=False)

    @contextlib.contextmanager
    def writer(self) -> Iterator[ResultsStore]:
        """Hold the results file for one writer (a whole `run` or `train`): a second process
        asking for it gets `StudyLocked` at once, naming this one."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock.acquire(blocking=False)
        except Timeout:
            raise StudyLocked(
                f"{self.path.parent} is in use by another flops-fit ({self._holder()}); "
                "wait for it to finish or stop it, then run again"
            ) from None
        except OSError as exc:
            raise output_error(exc, self.lock_path) from None
        try:
            self._record_holder()
            yield self
        finally:
            self._lock.release()

    def _record_holder(self) -> None:
        """Write who holds the lock into the lock file (flock ignores its content)."""
        if self._lock.lock_counter != 1:
            return
        flags = os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(self.lock_path, flags)
        except OSError:
            return
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        except OSError:
            pass
        finally:
            os.close(fd)

    def _holder(self) -> str:
        try:
            with open(self.lock_path, "rb") as fh:
                text = fh.read(200).decode(errors="replace").strip()
        except OSError:
            text = ""
        return text or "a process that has not said which"

    def append(self, result: RunResult) -> None:
        """Append one record durably: locked, flushed, fsynced, after a torn last line left by
        an earlier crash is set aside (`heal`)."""
        line = result.model_dump_json().encode() + b"\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._lock:
                self._heal_locked()
                with open(self.path, "ab") as fh:
                    fh.write(line)
                    fh.flush()
                    os.fsync(fh.fileno())
        except OSError as exc:
            raise output_error(exc, self.path) from None

    def heal(self) -> Path | None:
        """Set an incomplete last line aside and truncate the file to its last complete line
        (under the lock); returns where the torn bytes went, or None when there were none.

        A last line without its newline is a torn append whatever its length, unless it is a
        complete valid record whose newline alone was lost: then only the newline is added.
        """
        try:
            with self._lock:
                return self._heal_locked()
        except OSError as exc:
            raise output_error(exc, self.path) from None

    def _heal_locked(self) -> Path | None:
        if not self.path.exists():
            return None
        with open(self.path, "r+b") as fh:
            size = fh.seek(0, os.SEEK_END)
            tail = _tail_after_last_newline(fh, size)
            if not tail:
                return None
            try:
                RunResult.model_validate_json(tail, context=_TRUSTED)
            except ValueError:
                pass
            else:
                fh.write(b"\n")
                fh.flush()
                os.fsync(fh.fileno())
                return None
            stamp = time.strftime("%Y%m%dT%H%M%S") + f"-{time.time_ns() % 10**9:09d}"
            aside = self.path.with_name(f"{self.path.name}{TORN_SUFFIX}{stamp}")
            write_atomic(aside, tail)
            fh.truncate(size - len(tail))
            fh.flush()
            os.fsync(fh.fileno())
            return aside

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
        # A last line without its newline is an append cut short, whatever it holds.
        last_open = bool(numbered) and not data.endswith(b"\n")
        numbers = [n for n, _ in numbered]
        lines = [ln for _, ln in numbered]
        try:  # fast path: one validation call for the whole file
            entries = _INDEX.validate_json(b"[" + b",".join(lines) + b"]")
            if not last_open or _complete(lines[-1]):
                return LoadedResults(self.path, lines, entries, numbers)
        except ValidationError:
            pass
        kept_lines, kept_entries, kept_numbers, torn = [], [], [], []
        for k, (number, line) in enumerate(numbered):
            if last_open and k == len(numbered) - 1 and not _complete(line):
                torn.append(number)
                continue
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


def _complete(line: bytes) -> bool:
    """Whether a line is a whole valid record (a last line that lost only its newline)."""
    try:
        RunResult.model_validate_json(line, context=_TRUSTED)
    except ValueError:
        return False
    return True


def _tail_after_last_newline(fh, size: int, chunk: int = 1 << 16) -> bytes:
    """The bytes after the file's last newline (empty when it ends in one)."""
    if size == 0:
        return b""
    fh.seek(size - 1)
    if fh.read(1) == b"\n":  # every append's case: one byte read, not a block
        return b""
    end = size
    parts: list[bytes] = []
    while end > 0:
        start = max(0, end - chunk)
        fh.seek(start)
        block = fh.read(end - start)
        cut = block.rfind(b"\n")
        if cut >= 0:
            parts.append(block[cut + 1 :])
            break
        parts.append(block)
        end = start
    fh.seek(0, os.SEEK_END)
    return b"".join(reversed(parts))


def _is_torn(problem: dict, line: bytes) -> bool:
    """A record cut short by a crash: JSON that starts like ours and ends mid-way."""
    return (
        problem["type"] == "json_invalid"
        and "EOF while parsing" in problem["msg"]
        and line.startswith(b'{"schema_version"')
    )
