"""Built-in executors: `serial` (in this process) and `process` (a pool of worker processes).

Both deliver each result to `on_result` in the calling process as soon as it exists, so the
results store appends it at once and a crash loses at most the runs in flight. A spec whose
training raises becomes a `failed` result (`run_one`); the sweep goes on. Both pass the sweep's
cancel event to every trainer (`process` relays it to its workers): a cancelled run
checkpoints, raises `TrainingCancelled` and is neither a result nor a failure.

`process` runs on pebble's `ProcessPool`, which, unlike the standard library's, survives the
death of a worker: it names the task whose worker died and starts a new worker.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from .bases import Executor, Trainer, run_one
from .errors import TrainingCancelled
from .hookspecs import HOOK_API_VERSION, hookimpl
from .schemas import ExperimentSpec, PluginConfig, RunResult

__all__ = ["THREADS_ENV", "WORKERS_ENV", "ProcessExecutor", "SerialExecutor"]

ProgressFn = Callable[[str, float, str | None], None]


class SerialExecutor(Executor):
    """Trains one spec after another in this process: simplest, and right for a GPU."""

    name = "serial"

    class Config(PluginConfig):
        pass

    def map(
        self,
        trainer: Trainer,
        specs: Iterable[ExperimentSpec],
        on_result: Callable[[RunResult], None],
        *,
        run_dir: Path,
        cancel: threading.Event | None = None,
        on_progress: ProgressFn | None = None,
    ) -> None:
        cancel = cancel if cancel is not None else threading.Event()
        for spec in specs:
            if cancel.is_set():
                return
            progress = None
            if on_progress is not None:

                def progress(fraction, message=None, _id=spec.id):
                    on_progress(_id, fraction, message)

            context = self.context_for(spec, run_dir, cancel, progress)
            try:
                result = run_one(trainer, spec, context)
            except TrainingCancelled:
                return
            on_result(result)


#: Tells a worker how many trainer processes share the machine, so a trainer that sizes its
#: thread pool to the free cores (the torch trainer does) takes its share, not all of them.
WORKERS_ENV = "FLOPS_FIT_WORKERS"

#: Tells a worker how many threads its trainer may use, where an executor gave the experiment
#: a number of CPUs on a machine it shares with others (a Ray task, a packed Slurm task).
#: It takes precedence over `WORKERS_ENV`.
THREADS_ENV = "FLOPS_FIT_THREADS"

#: How long, once a sweep stops for an error, the runs in flight get to checkpoint and stop
#: before their workers are killed.
STOP_GRACE_S = 60.0

#: The sweep's cancel event as a worker process sees it (set by `_start_worker`).
_worker_cancel: Any = None


def _start_worker(workers: int, cancel: Any) -> None:
    """In each worker: the machine's share, and the driver's cancel event. SIGINT is ignored
    (pebble's workers do): Ctrl-C reaches the runs through the event, never mid-step."""
    global _worker_cancel
    os.environ[WORKERS_ENV] = str(workers)
    _worker_cancel = cancel


def _train_in_worker(trainer: Trainer, spec: ExperimentSpec, run_dir: Path) -> RunResult:
    context = Executor.context_for(spec, run_dir, _worker_cancel)
    return run_one(trainer, spec, context)


def _death(exc: BaseException) -> str:
    """How a worker died, in words: `killed by SIGKILL`, `exit code 3`, `the pool broke`."""
    code = getattr(exc, "exitcode", None)
    if isinstance(code, int) and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    if isinstance(code, int):
        return f"exit code {code}"
    return f"{type(exc).__name__}: {exc}"


class ProcessExecutor(Executor):
    """Trains specs in parallel worker processes (CPU studies, or one worker per GPU).

    Workers are started with `spawn` by default: safe with threads, torch and CUDA. A worker
    that dies (killed, out of memory) is replaced and its spec tried again, from its
    checkpoint, up to `infra_retries` times, then recorded as failed with cause
    `worker_died` (a rerun tries it again); the rest of the sweep goes on. The cancel event
    reaches every worker: the runs in flight checkpoint and stop.
    """

    name = "process"

    class Config(PluginConfig):
        workers: int | None = Field(default=None, ge=1, le=4096, description="default: CPU count")
        start_method: Literal["spawn", "forkserver", "fork"] = "spawn"
        infra_retries: int = Field(
            default=2,
            ge=0,
            le=100,
            description="times a spec whose worker died is tried again before it is failed",
        )

    def map(
        self,
        trainer: Trainer,
        specs: Iterable[ExperimentSpec],
        on_result: Callable[[RunResult], None],
        *,
        run_dir: Path,
        cancel: threading.Event | None = None,
        on_progress: ProgressFn | None = None,
    ) -> None:
        from pebble import ProcessExpired, ProcessPool  # lazily: ~0.15 s a CLI start would pay

        queue = deque((spec, 0) for spec in specs)
        if not queue:
            return
        cancel = cancel if cancel is not None else threading.Event()
        workers = min(self.config.workers or os.cpu_count() or 1, len(queue))
        context = multiprocessing.get_context(self.config.start_method)
        stop = context.Event()  # the driver's `cancel`, as every worker sees it

        def new_pool():
            return ProcessPool(
                max_workers=workers,
                initializer=_start_worker,
                initargs=(workers, stop),
                context=context,
            )

        pool = new_pool()
        pending: dict[Future, tuple[ExperimentSpec, int]] = {}
        finished = False
        try:
            while queue or pending:
                if cancel.is_set():
                    stop.set()
                    queue.clear()
                # keep the queue short, so a cancel stops quickly
                while queue and len(pending) < workers:
                    spec, attempt = queue.popleft()
                    job = pool.schedule(_train_in_worker, (trainer, spec, Path(run_dir)))
                    pending[job] = spec, attempt
                done, _ = wait(pending, return_when=FIRST_COMPLETED, timeout=0.2)
                for future in done:
                    spec, attempt = pending.pop(future)
                    try:
                        result = future.result()
                    except TrainingCancelled:
                        continue
                    except (ProcessExpired, BrokenProcessPool) as exc:
                        if isinstance(exc, BrokenProcessPool) and not pool.active:
                            pool.stop()
                            pool.join()
                            pool = new_pool()
                        how = _death(exc)
                        if attempt < self.config.infra_retries and not cancel.is_set():
                            queue.appendleft((spec, attempt + 1))
                            if on_progress is not None:
                                on_progress(
                                    spec.id,
                                    0.0,
                                    f"worker died ({how}); trying again from its checkpoint "
                                    f"({attempt + 1} of {self.config.infra_retries})",
                                )
                            continue
                        if cancel.is_set():
                            continue  # not trained, not failed: the next run trains it
                        tries = attempt + 1
                        result = RunResult.failure(
                            spec,
                            trainer.info,
                            f"the worker process died ({how}) on each of {tries} "
                            f"{'try' if tries == 1 else 'tries'}; a rerun tries again",
                            cause="worker_died",
                        )
                    on_result(result)
            finished = True
        finally:
            stop.set()
            if finished:
                pool.close()
            elif not isinstance(sys.exc_info()[1], KeyboardInterrupt):
                # An error here (a full disk at an append): the runs in flight checkpoint
                # and stop before their workers go. A second Ctrl-C skips the wait.
                wait(pending, timeout=STOP_GRACE_S)
                pool.stop()
            else:
                pool.stop()
            pool.join()


#: The hook API the built-in executors' registration was written for.
hook_api_version = HOOK_API_VERSION


@hookimpl
def flops_fit_register_executors():
    return [SerialExecutor, ProcessExecutor]
