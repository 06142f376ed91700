"""What an executor needs to train on other machines; the `ray` and `slurm` executors use it.

A worker on another node shares neither the driver's memory nor, necessarily, its installed
versions. The driver and its workers meet in a folder every node reaches: the run directory
on a shared filesystem, or the executor's `checkpoint_dir`.

- `CancelFlag`: the sweep's cancel event as a file in that folder. A run in flight sees it
  at its next step, checkpoints and stops (its child processes with it) before the executor
  has to kill its worker.
- `train_on_worker`: the body of one remote experiment. It calls the core's `run_one`, so a
  trainer's exception is a `failed` result and never a retry, and returns a `WorkerReply`:
  the result (None for a cancelled run) and the worker's versions.
- `check_versions`: the driver's check, on the first reply, that its workers run the
  flops-fit and the trainer it runs.
- `shared_folder`: where a configured folder (`checkpoint_dir`, ...) is: a relative path is
  inside the run directory, and may not leave it.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .bases import Executor, Trainer, run_one
from .errors import ClusterError, ConfigError, TrainingCancelled
from .executors import THREADS_ENV
from .schemas import ExperimentSpec, RunResult

__all__ = [
    "CancelFlag",
    "WorkerReply",
    "check_versions",
    "in_flight_for",
    "shared_folder",
    "train_on_worker",
    "worker_versions",
]


class CancelFlag:
    """A cancel event every node sees: set is a file at `path`, created by `set()`.

    `is_set()` looks at the file at most every `interval_s` (a trainer asks once per step)
    and stays set once seen. It pickles as its path, so a worker starts unset and looks.
    """

    def __init__(self, path: Path | str, interval_s: float = 0.2):
        self.path = Path(path)
        self.interval_s = interval_s
        self._seen = False
        self._looked = float("-inf")

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "interval_s": self.interval_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["interval_s"])

    def __repr__(self) -> str:
        return f"CancelFlag({str(self.path)!r})"

    def set(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()
        self._seen = True

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
        self._seen = False
        self._looked = float("-inf")

    def is_set(self) -> bool:
        if not self._seen:
            now = time.monotonic()
            if now - self._looked >= self.interval_s:
                self._looked = now
                self._seen = self.path.exists()
        return self._seen

    def wait(self, timeout: float | None = None) -> bool:
        """Like `threading.Event.wait`: True once set, False when `timeout` passes first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(self.interval_s)
        return True


@dataclass(frozen=True)
class WorkerReply:
    """What a worker sends back for one experiment."""

    #: The run's result (`failed` if the trainer raised); None if it was cancelled, which is
    #: neither: it checkpointed, and the next run of the study resumes it.
    result: RunResult | None
    #: `worker_versions` as the worker saw them.
    versions: dict[str, str] = field(default_factory=dict)
    host: str = ""


def _distribution_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:  # pragma: no cover - a source tree run without installing
        return "unknown"


def worker_versions(trainer: Trainer) -> dict[str, str]:
    """The versions a result depends on, as this process has them installed."""
    return {
        "flops-fit-core": _distribution_version("flops-fit-core"),
        f"trainer {trainer.name}": type(trainer).version,
    }


def train_on_worker(
    trainer: Trainer,
    spec: ExperimentSpec,
    *,
    run_dir: Path,
    checkpoint_root: Path | None = None,
    cancel: Any = None,
    threads: int | None = None,
) -> WorkerReply:
    """Train one spec on this worker; `threads` is the trainer's thread budget here."""
    if threads is not None:
        os.environ[THREADS_ENV] = str(max(1, int(threads)))
    context = Executor.context_for(spec, run_dir, cancel, checkpoint_root=checkpoint_root)
    try:
        result: RunResult | None = run_one(trainer, spec, context)
    except TrainingCancelled:
        result = None
    return WorkerReply(result, worker_versions(trainer), socket.gethostname())


def check_versions(trainer: Trainer, reply: WorkerReply) -> None:
    """Raise `ClusterError` (one line) if the worker runs another flops-fit or trainer."""
    mine = worker_versions(trainer)
    differ = [
        f"{what} {reply.versions.get(what, 'missing')} (this driver: {have})"
        for what, have in mine.items()
        if reply.versions.get(what) != have
    ]
    if differ:
        raise ClusterError(
            f"the workers on {reply.host or 'the cluster'} run {'; '.join(differ)}: install "
            "the same flops-fit and trainer versions on every node as on the driver"
        )


def in_flight_for(slots: float) -> int:
    """The default cap on experiments submitted at once: what the cluster runs at once, plus
    2 queued behind them so a worker that frees up starts the next run without a wait."""
    return max(1, int(slots)) + 2


def shared_folder(run_dir: Path, path: Path | str | None, what: str) -> Path | None:
    """`path` as an absolute folder: an absolute one as given (the user's choice), a relative
    one inside `run_dir` (a `ConfigError` if it leads out of it, by `..` or a link)."""
    if path is None:
        return None
    path = Path(path).expanduser()
    if path.is_absolute():
        return path.resolve()
    root = Path(run_dir).resolve()
    full = (root / path).resolve()
    if not full.is_relative_to(root):
        raise ConfigError(
            f"{what}: {str(path)!r} leads out of the run directory {root}; give an absolute "
            "path to put it elsewhere"
        )
    return full
