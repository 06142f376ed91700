"""The callable each Slurm array task runs: its experiments, stopped cleanly on preemption.

Slurm warns a task it is about to be preempted or timed out with SIGUSR2; submitit then calls
`checkpoint()` on the main thread and requeues the task. The runs therefore train on a second
thread: `checkpoint()` tells them to stop, waits while they save their checkpoint and end, and
the requeued task resumes each from its checkpoint. Runs that had finished keep their replies
(they travel in the requeued task's pickle) and are not trained again. The sweep's own cancel
reaches them through the shared `CancelFlag`.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import cloudpickle
import submitit

from flops_fit_core import ExperimentSpec, Trainer, WorkerReply, train_on_worker

__all__ = ["TrainTask"]

#: Seconds `checkpoint()` waits for the runs to save and stop (Slurm's warning comes 90 s
#: before the kill).
CHECKPOINT_WAIT_S = 75.0


class _Either:
    """Set when the sweep is cancelled (the shared flag) or this task is preempted."""

    def __init__(self, flag: Any, preempted: threading.Event):
        self.flag, self.preempted = flag, preempted

    def is_set(self) -> bool:
        return self.preempted.is_set() or self.flag.is_set()


class TrainTask(submitit.helpers.Checkpointable):
    """Train `specs` (one, or several side by side) and return one `WorkerReply` each; a run
    stopped by a cancel or a preemption replies `None` as its result."""

    def __init__(
        self,
        trainer: Trainer,
        run_dir: Path,
        checkpoint_root: Path | None,
        flag: Any,
        threads: int,
    ):
        self.trainer = trainer
        self.run_dir = Path(run_dir)
        self.checkpoint_root = checkpoint_root
        self.flag = flag
        self.threads = threads
        #: Replies of the runs that finished, by spec id: kept across a requeue.
        self.finished: dict[str, WorkerReply] = {}
        self._preempted = threading.Event()
        self._worker: threading.Thread | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_preempted")
        state.pop("_worker")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._preempted = threading.Event()
        self._worker = None

    def __call__(self, specs: list[ExperimentSpec]) -> list[WorkerReply]:
        failure: list[BaseException] = []
        todo = [spec for spec in specs if spec.id not in self.finished]

        def work() -> None:
            try:
                self._train(todo)
            except BaseException as exc:  # surfaced on the main thread below
                failure.append(exc)

        self._worker = threading.Thread(target=work, name="flops-fit-train", daemon=True)
        self._worker.start()
        while self._worker.is_alive():
            self._worker.join(0.5)  # short joins: the main thread stays free for SIGUSR2
        if failure:
            raise failure[0]
        empty = WorkerReply(None)
        return [self.finished.get(spec.id, empty) for spec in specs]

    def _keep(self, spec: ExperimentSpec, reply: WorkerReply) -> None:
        if reply.result is not None:  # None: stopped at a checkpoint, to resume
            self.finished[spec.id] = reply

    def _train(self, specs: list[ExperimentSpec]) -> None:
        common = {
            "run_dir": self.run_dir,
            "checkpoint_root": self.checkpoint_root,
            "threads": self.threads,
        }
        if not specs:
            return
        if len(specs) == 1:
            cancel = _Either(self.flag, self._preempted)
            self._keep(specs[0], train_on_worker(self.trainer, specs[0], cancel=cancel, **common))
            return
        # Packed: each run in its own process (a thread budget is per process), told to stop
        # through an event the pool's processes share.
        context = multiprocessing.get_context("spawn")
        preempted = context.Event()
        relay = threading.Thread(target=_relay, args=(self._preempted, preempted), daemon=True)
        relay.start()
        with ProcessPoolExecutor(
            len(specs), mp_context=context, initializer=_start_packed, initargs=(preempted,)
        ) as pool:
            # by cloudpickle, as submitit sent the trainer here: it may be defined by value
            trainer = cloudpickle.dumps(self.trainer)
            futures = {
                pool.submit(_train_packed, trainer, spec, self.flag, common): spec for spec in specs
            }
            for future in as_completed(futures):
                self._keep(futures[future], future.result())

    def checkpoint(self, *args: Any, **kwargs: Any):
        """On SIGUSR2: the runs save and stop, then the task is requeued with the same specs."""
        self._preempted.set()
        if self._worker is not None:
            self._worker.join(CHECKPOINT_WAIT_S)
        return super().checkpoint(*args, **kwargs)


def _relay(source: threading.Event, target: Any) -> None:
    """Set `target` (the packed processes' event) once `source` (this task's) is."""
    source.wait()
    target.set()


#: In a packed run's process: the task's preemption event (set by `_start_packed`).
_packed_preempted: Any = None


def _start_packed(preempted: Any) -> None:
    """In a packed run's process: Slurm signals every process of the task, but only the
    task's main process handles a preemption (and tells this one through `preempted`)."""
    global _packed_preempted
    _packed_preempted = preempted
    for signum in (signal.SIGUSR2, signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)


def _train_packed(trainer: bytes, spec: ExperimentSpec, flag: Any, common: dict) -> WorkerReply:
    return train_on_worker(
        cloudpickle.loads(trainer), spec, cancel=_Either(flag, _packed_preempted), **common
    )
