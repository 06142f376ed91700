"""The server's runs in SQLite, so a restart loses nothing; every state change happens here.

One row per run, keyed by the spec's id. The server process and each run's child process open
their own connections (WAL mode: readers never wait for the writer). A state change is one
`UPDATE ... WHERE state = <the state it was read in>` inside a transaction, checked against
`protocol.TRANSITIONS`, so two processes racing to move a run cannot both win and a terminal
run never changes.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flops_fit_core import ExperimentSpec, RunResult

from .protocol import RESUBMITTABLE, TERMINAL, RunView, can_move

__all__ = ["DB_FILE", "IllegalMove", "RunStore", "SpecConflict"]

DB_FILE = "runs.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1,
    infra_failures INTEGER NOT NULL DEFAULT 0,
    train_failures INTEGER NOT NULL DEFAULT 0,
    cause TEXT,
    error TEXT,
    progress REAL NOT NULL DEFAULT 0,
    message TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    result TEXT,
    pid INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    version INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_state ON runs (state, created_at);
"""


class SpecConflict(Exception):
    """A run with this id exists with another spec."""


class IllegalMove(Exception):
    """A state change `protocol.TRANSITIONS` does not allow (or a lost race for one)."""


def canonical(spec: ExperimentSpec) -> str:
    """The spec as stored and compared: its JSON with sorted keys."""
    return json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


class RunStore:
    """The runs of one data directory. Thread-safe; open one per process."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / DB_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self):
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- reading ----------------------------------------------------------------------------
    def _row(self, run_id: str) -> sqlite3.Row | None:
        with self._lock:
            return self._db.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()

    def get(self, run_id: str) -> RunView | None:
        row = self._row(run_id)
        return None if row is None else _view(row)

    def version_of(self, run_id: str) -> int | None:
        """A counter bumped by every change of the run (long-polls wait for it to move)."""
        row = self._row(run_id)
        return None if row is None else int(row["version"])

    def spec(self, run_id: str) -> ExperimentSpec:
        row = self._row(run_id)
        if row is None:
            raise KeyError(run_id)
        return ExperimentSpec.model_validate_json(row["spec"])

    def list(self, state: str | None = None) -> list[RunView]:
        query, args = "SELECT * FROM runs", ()
        if state is not None:
            query, args = query + " WHERE state = ?", (state,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY created_at, id", args).fetchall()
        return [_view(r) for r in rows]

    def count(self, *states: str) -> int:
        marks = ",".join("?" * len(states))
        with self._lock:
            row = self._db.execute(
                f"SELECT COUNT(*) FROM runs WHERE state IN ({marks})", states
            ).fetchone()
        return int(row[0])

    def cancel_requested(self, run_id: str) -> bool:
        row = self._row(run_id)
        return bool(row and row["cancel_requested"])

    # -- writing ----------------------------------------------------------------------------
    def create(self, spec: ExperimentSpec) -> tuple[RunView, bool]:
        """The run of `spec`, created `queued` if new: (run, created). Another spec already
        stored under the same id is a `SpecConflict`. A run that was cancelled, or failed by
        its machine (`protocol.RESUBMITTABLE`), is queued again: its rerun resumes it."""
        text, now = canonical(spec), time.time()
        with self._transaction() as db:
            row = db.execute(
                "SELECT spec, state, cause FROM runs WHERE id = ?", (spec.id,)
            ).fetchone()
            if row is not None:
                if row["spec"] != text:
                    raise SpecConflict(spec.id)
                created = False
                state, cause = row["state"], row["cause"]
                resubmitted = state == "cancelled" or (state == "failed" and cause in RESUBMITTABLE)
                if resubmitted and can_move(state, "queued"):
                    db.execute(
                        "UPDATE runs SET state = 'queued', attempt = attempt + 1, "
                        "cancel_requested = 0, infra_failures = 0, progress = 0, message = NULL, "
                        "result = NULL, finished_at = NULL, pid = NULL, updated_at = ?, "
                        "version = version + 1 WHERE id = ? AND state = ?",
                        (now, spec.id, state),
                    )
            else:
                db.execute(
                    "INSERT INTO runs (id, spec, state, created_at, updated_at) "
                    "VALUES (?, ?, 'queued', ?, ?)",
                    (spec.id, text, now, now),
                )
                created = True
        view = self.get(spec.id)
        assert view is not None
        return view, created

    def move(self, run_id: str, new: str, expect: str | None = None, **fields: Any) -> RunView:
        """Move a run to state `new` (from `expect` when given), setting `fields` with it.

        Refused (`IllegalMove`) when the transition is not allowed or the run changed state
        meanwhile: the caller lost a race and must look again.
        """
        now = time.time()
        with self._transaction() as db:
            row = db.execute("SELECT state FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise KeyError(run_id)
            current = row["state"]
            if (expect is not None and current != expect) or not can_move(current, new):
                raise IllegalMove(f"run {run_id}: {current} -> {new}")
            values = dict(fields)
            if "result" in values and isinstance(values["result"], RunResult):
                values["result"] = values["result"].model_dump_json()
            if new == "running":
                values.setdefault("started_at", now)
            if new in TERMINAL:
                values.setdefault("finished_at", now)
                values.setdefault("pid", None)
            sets = ", ".join(f"{k} = ?" for k in values)
            db.execute(
                f"UPDATE runs SET state = ?, updated_at = ?, version = version + 1"
                f"{', ' + sets if sets else ''} WHERE id = ? AND state = ?",
                (new, now, *values.values(), run_id, current),
            )
        view = self.get(run_id)
        assert view is not None
        return view

    def set_progress(self, run_id: str, fraction: float, message: str | None) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE runs SET progress = ?, message = ?, updated_at = ?, version = version + 1 "
                "WHERE id = ? AND state IN ('running', 'cancelling')",
                (float(fraction), message, time.time(), run_id),
            )

    def set_pid(self, run_id: str, pid: int | None) -> None:
        with self._transaction() as db:
            db.execute("UPDATE runs SET pid = ? WHERE id = ?", (pid, run_id))

    def pid(self, run_id: str) -> int | None:
        row = self._row(run_id)
        return None if row is None or row["pid"] is None else int(row["pid"])

    def request_cancel(self, run_id: str) -> RunView:
        """Ask a run to stop: a queued one is cancelled at once, a running one moves to
        `cancelling` (its worker stops it); a terminal one is left as it is."""
        with self._transaction() as db:
            db.execute("UPDATE runs SET cancel_requested = 1 WHERE id = ?", (run_id,))
        view = self.get(run_id)
        if view is None:
            raise KeyError(run_id)
        try:
            if view.state == "queued":
                return self.move(run_id, "cancelled", expect="queued", cause="cancelled")
            if view.state == "running":
                return self.move(run_id, "cancelling", expect="running")
        except IllegalMove:  # it moved meanwhile: report where it is now
            pass
        view = self.get(run_id)
        assert view is not None
        return view

    def claim_next(self) -> str | None:
        """The oldest queued run, moved to `running`; None when nothing is queued."""
        while True:
            with self._lock:
                row = self._db.execute(
                    "SELECT id FROM runs WHERE state = 'queued' ORDER BY created_at, id LIMIT 1"
                ).fetchone()
            if row is None:
                return None
            try:
                self.move(row["id"], "running", expect="queued", progress=0.0, message=None)
            except IllegalMove:
                continue  # cancelled meanwhile
            return row["id"]

    def requeue(self, run_id: str, cause: str, error: str, infra_retries: int) -> RunView:
        """A run whose worker (or the server) died: back to `queued` with `attempt + 1`, or
        `failed` with `cause` once its infrastructure retries are spent."""
        row = self._row(run_id)
        if row is None:
            raise KeyError(run_id)
        current, failures = row["state"], int(row["infra_failures"]) + 1
        if current == "cancelling":
            return self.move(run_id, "cancelled", expect=current, cause="cancelled", error=error)
        if failures > infra_retries:
            return self.move(
                run_id, "failed", expect=current, cause=cause, error=error, infra_failures=failures
            )
        return self.move(
            run_id,
            "queued",
            expect=current,
            cause=cause,
            error=error,
            infra_failures=failures,
            attempt=int(row["attempt"]) + 1,
            pid=None,
        )

    def fail(self, run_id: str, error: str, train_retries: int) -> RunView:
        """Its trainer raised: `failed` (cause `trainer_error`), or queued again while
        `train_retries` are left (counted apart from infrastructure retries: training is
        deterministic, so the default is none)."""
        row = self._row(run_id)
        if row is None:
            raise KeyError(run_id)
        current, failures = row["state"], int(row["train_failures"]) + 1
        if current == "running" and failures <= train_retries:
            return self.move(
                run_id,
                "queued",
                expect=current,
                cause="trainer_error",
                error=error,
                train_failures=failures,
                attempt=int(row["attempt"]) + 1,
                pid=None,
            )
        return self.move(
            run_id, "failed", expect=current, cause="trainer_error", error=error,
            train_failures=failures,
        )  # fmt: skip

    def recover(self, infra_retries: int) -> list[RunView]:
        """At start: runs a previous server left `running` or `cancelling` (it died) are
        requeued (cause `server_restart`) or failed past their retry budget."""
        out = []
        for state in ("running", "cancelling"):
            for view in self.list(state):
                out.append(
                    self.requeue(view.id, "server_restart", "the server restarted", infra_retries)
                )
        return out


def _view(row: sqlite3.Row) -> RunView:
    result = row["result"]
    return RunView(
        id=row["id"],
        state=row["state"],
        attempt=row["attempt"],
        cause=row["cause"],
        error=row["error"],
        progress=row["progress"],
        message=row["message"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        result=RunResult.model_validate_json(result) if result else None,
    )
