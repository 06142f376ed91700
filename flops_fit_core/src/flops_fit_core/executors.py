"""Built-in executors: `serial` (in this process) and `process` (a pool of worker processes).

Both deliver each result to `on_result` in the calling process as soon as it exists, so the
results store appends it at once and a crash loses at most the runs in flight. A spec whose
training raises becomes a `failed` result (`run_one`); the sweep goes on.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Literal

from pydantic import Field

from .bases import Executor, Trainer, run_one
from .errors import TrainingCancelled
from .hookspecs import hookimpl
from .schemas import ExperimentSpec, PluginConfig, RunResult

__all__ = ["WORKERS_ENV", "ProcessExecutor", "SerialExecutor"]

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


def _set_workers(workers: int) -> None:
    os.environ[WORKERS_ENV] = str(workers)


def _train_in_worker(trainer: Trainer, spec: ExperimentSpec, run_dir: Path) -> RunResult:
    context = Executor.context_for(spec, run_dir, threading.Event())
    return run_one(trainer, spec, context)


class ProcessExecutor(Executor):
    """Trains specs in parallel worker processes (CPU studies, or one worker per GPU).

    Workers are started with `spawn` by default: safe with threads, torch and CUDA. A worker
    that dies (killed, out of memory) turns its spec into a failed result; the rest go on.
    """

    name = "process"

    class Config(PluginConfig):
        workers: int | None = Field(default=None, ge=1, description="default: CPU count")
        start_method: Literal["spawn", "forkserver", "fork"] = "spawn"

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
        specs = list(specs)
        if not specs:
            return
        cancel = cancel if cancel is not None else threading.Event()
        workers = min(self.config.workers or os.cpu_count() or 1, len(specs))
        context = multiprocessing.get_context(self.config.start_method)
        pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_set_workers, initargs=(workers,)
        )
        pending: dict[Future, ExperimentSpec] = {}
        queue = iter(specs)
        try:

            def submit_next() -> None:
                if cancel.is_set():
                    return
                spec = next(queue, None)
                if spec is not None:
                    pending[pool.submit(_train_in_worker, trainer, spec, Path(run_dir))] = spec

            for _ in range(workers):  # keep the queue short so a cancel stops quickly
                submit_next()
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED, timeout=0.5)
                for future in done:
                    spec = pending.pop(future)
                    try:
                        result = future.result()
                    except TrainingCancelled:
                        continue
                    except Exception as exc:  # the worker process itself died
                        result = RunResult.failure(
                            spec, trainer.info, f"worker failed: {type(exc).__name__}: {exc}"
                        )
                    on_result(result)
                    submit_next()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


@hookimpl
def flops_fit_register_executors():
    return [SerialExecutor, ProcessExecutor]
