"""One run, trained in a process of its own: `python -m flops_fit_api.child DATA_DIR RUN_ID`.

The server starts one per run, in its own process group, so a crash, an out-of-memory kill or
a cancel that will not stop takes only this run down. The child builds the server's trainer
from `server.json`, trains the run's spec with its checkpoints under the data directory (so a
restarted server resumes it), reports progress into the run's row, and records how it ended.
A cancel reaches the trainer through its cancel flag: the child watches the row's
`cancel_requested` and takes SIGTERM as a cancel too.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from flops_fit_core import TrainerContext, TrainingCancelled, get_host

from .db import IllegalMove, RunStore

__all__ = ["SERVER_FILE", "STOPPED", "checkpoint_dir", "main", "run_dir"]

#: The server's settings the children read: `{"trainer": {"name": ..., options...}}`.
SERVER_FILE = "server.json"
#: The exit status of a child stopped by the server's shutdown (SIGTERM, no cancel asked).
STOPPED = 3
#: Seconds between looks at the row's cancel flag, and the shortest gap between two progress
#: writes (a trainer may report every step).
WATCH_S = 0.2


def run_dir(data_dir: Path, run_id: str) -> Path:
    return Path(data_dir) / "runs" / run_id


def checkpoint_dir(data_dir: Path, run_id: str) -> Path:
    return Path(data_dir) / "checkpoints" / run_id


def main(argv: list[str]) -> int:
    data_dir, run_id = Path(argv[0]), argv[1]
    settings = json.loads((data_dir / SERVER_FILE).read_text())
    store = RunStore(data_dir)
    cancel = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: cancel.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server's Ctrl-C is the server's
    server = os.getppid()

    def watch() -> None:
        while not cancel.wait(WATCH_S):
            # A server that died (SIGKILL, a crash) leaves this run to the next server, which
            # requeues it: stop at once, so no run is ever trained by two processes.
            if os.getppid() != server or store.cancel_requested(run_id):
                cancel.set()

    threading.Thread(target=watch, daemon=True).start()
    last = 0.0

    def progress(fraction: float, message: str | None = None) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= WATCH_S or fraction >= 1.0:
            last = now
            store.set_progress(run_id, fraction, message)

    trainer = get_host().build("trainer", settings["trainer"])
    spec = store.spec(run_id)
    context = TrainerContext(
        run_dir=run_dir(data_dir, run_id),
        checkpoint_dir=checkpoint_dir(data_dir, run_id),
        progress=progress,
        cancel_event=cancel,
    )
    context.run_dir.mkdir(parents=True, exist_ok=True)
    try:
        result = trainer.train(spec, context)
    except TrainingCancelled:
        if store.cancel_requested(run_id):
            _end(store, run_id, "cancelled", cause="cancelled", error="cancelled")
            return 0
        return STOPPED  # the server is shutting down: the row stays running, to be requeued
    except Exception as exc:  # the trainer's failure is the run's, recorded with its reason
        error = " ".join(f"{type(exc).__name__}: {exc}".split())
        try:
            store.fail(run_id, error, int(settings.get("train_retries", 0)))
        except IllegalMove:  # cancelled meanwhile
            _end(store, run_id, "cancelled", cause="cancelled", error="cancelled")
        return 0
    _end(store, run_id, "succeeded", result=result, progress=1.0)
    return 0


def _end(store: RunStore, run_id: str, state: str, **fields) -> None:
    for expect in ("running", "cancelling"):
        try:
            store.move(run_id, state, expect=expect, **fields)
            return
        except IllegalMove:
            continue


if __name__ == "__main__":  # pragma: no cover - run by the server
    sys.exit(main(sys.argv[1:]))
