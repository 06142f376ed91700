"""Starts each queued run in a child process, one per worker slot, and watches them end.

The server's one background thread. It claims the oldest queued run when a slot is free,
starts `python -m flops_fit_api.child` for it in a new process group (with the slot's
`CUDA_VISIBLE_DEVICES` when the machine has GPUs), and, when a child exits without having
recorded an end, requeues its run (cause `worker_crashed`) while infrastructure retries are
left. A run asked to cancel gets `grace_s` to stop through its trainer's cancel flag, then
SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .db import IllegalMove, RunStore

__all__ = ["Supervisor", "kill_orphans"]

#: Seconds between the supervisor's looks at the queue and its children.
TICK_S = 0.1


def kill_orphans(store: RunStore, data_dir: Path, timeout: float = 10.0) -> list[int]:
    """Kill the children a dead server left training (the runs it had `running`), before
    their runs are requeued: a run is never trained by two processes at once. A pid is only
    killed when it still is one of this data directory's children (`/proc/PID/cmdline`)."""
    killed = []
    for state in ("running", "cancelling"):
        for view in store.list(state):
            pid = store.pid(view.id)
            if pid is None or not _is_our_child(pid, data_dir, view.id):
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
                killed.append(pid)
    deadline = time.monotonic() + timeout
    for pid in killed:
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    return killed


def _is_our_child(pid: int, data_dir: Path, run_id: str) -> bool:
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return (
        b"flops_fit_api.child" in words
        and run_id.encode() in words
        and any(Path(w.decode(errors="replace")) == Path(data_dir) for w in words)
    )


@dataclass
class _Child:
    run_id: str
    slot: int
    process: subprocess.Popen
    cancel_since: float | None = None
    terminated: bool = False


class Supervisor:
    """Runs the data directory's queue with `workers` children at most."""

    def __init__(
        self,
        store: RunStore,
        data_dir: Path,
        workers: int,
        infra_retries: int = 2,
        grace_s: float = 30.0,
        devices: list[str] | None = None,
    ):
        self.store, self.data_dir, self.workers = store, Path(data_dir), workers
        self.infra_retries, self.grace_s = infra_retries, grace_s
        self.devices = devices  # one per slot, or None: leave CUDA_VISIBLE_DEVICES alone
        self._children: dict[str, _Child] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="flops-fit-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking runs; ask each child to stop (SIGTERM: its trainer checkpoints), then
        kill what is left. Their runs stay `running` and are requeued at the next start."""
        self._stop.set()
        self._thread.join(timeout)
        for child in list(self._children.values()):
            _signal_group(child.process, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in list(self._children.values()):
            try:
                child.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(child.process, signal.SIGKILL)
                child.process.wait()
        self._children.clear()

    # -- the loop ---------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.wait(TICK_S):
            try:
                self._reap()
                self._cancel()
                self._fill()
            except Exception as exc:  # pragma: no cover - never let the queue stop silently
                print(f"flops-fit serve: supervisor: {type(exc).__name__}: {exc}", file=sys.stderr)

    def _fill(self) -> None:
        while len(self._children) < self.workers and not self._stop.is_set():
            run_id = self.store.claim_next()
            if run_id is None:
                return
            slot = min(set(range(self.workers)) - {c.slot for c in self._children.values()})
            env = dict(os.environ)
            if self.devices is not None:
                env["CUDA_VISIBLE_DEVICES"] = self.devices[slot]
            process = subprocess.Popen(
                [sys.executable, "-m", "flops_fit_api.child", str(self.data_dir), run_id],
                env=env,
                start_new_session=True,  # its own process group: signalled and killed whole
                stdin=subprocess.DEVNULL,
            )
            self.store.set_pid(run_id, process.pid)
            self._children[run_id] = _Child(run_id, slot, process)

    def _reap(self) -> None:
        for run_id, child in list(self._children.items()):
            code = child.process.poll()
            if code is None:
                continue
            del self._children[run_id]
            _signal_group(child.process, signal.SIGKILL)  # anything it left behind
            view = self.store.get(run_id)
            if view is None or view.terminal:
                continue
            if child.cancel_since is not None:
                self._end_cancelled(run_id)
                continue
            how = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
            with contextlib.suppress(IllegalMove):
                self.store.requeue(
                    run_id, "worker_crashed", f"its worker {how}", self.infra_retries
                )

    def _cancel(self) -> None:
        now = time.monotonic()
        for run_id, child in self._children.items():
            view = self.store.get(run_id)
            if view is None or view.state != "cancelling":
                continue
            if child.cancel_since is None:
                child.cancel_since = now  # the child's watcher sets its trainer's cancel flag
            elif not child.terminated and now - child.cancel_since > self.grace_s:
                _signal_group(child.process, signal.SIGTERM)
                child.terminated = True
            elif now - child.cancel_since > 2 * self.grace_s:
                _signal_group(child.process, signal.SIGKILL)

    def _end_cancelled(self, run_id: str) -> None:
        """A child stopped for a cancel without recording it (killed past its grace)."""
        with contextlib.suppress(IllegalMove):
            self.store.move(run_id, "cancelled", expect="cancelling", cause="cancelled")


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)
