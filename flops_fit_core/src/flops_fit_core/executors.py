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
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from .bases import Executor, Trainer, run_one
from .errors import ConfigError, TrainingCancelled
from .hookspecs import HOOK_API_VERSION, hookimpl
from .schemas import ExperimentSpec, PluginConfig, RunResult

__all__ = [
    "MAX_RUNS_PER_GPU",
    "THREADS_ENV",
    "WORKERS_ENV",
    "ProcessExecutor",
    "SerialExecutor",
    "visible_gpus",
]

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

#: Most runs `workers_per_gpu = "auto"` puts on one GPU, whatever the trainer asks: each is a
#: process with its own CUDA context (about 0.5 GB of GPU memory) and a CPU core to launch
#: its kernels.
MAX_RUNS_PER_GPU = 8

#: The sweep's cancel event as a worker process sees it (set by `_start_worker`).
_worker_cancel: Any = None


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as `CUDA_VISIBLE_DEVICES` names them: its entries when
    set, else `0 .. n-1` for the n GPUs `nvidia-smi -L` lists (none without it). Asks no
    CUDA runtime, so a CPU-only driver never imports torch to find out."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        names = [d.strip() for d in visible.split(",")]
        # CUDA stops at the first invalid entry ("-1" hides every GPU)
        out = []
        for name in names:
            if not name or name.startswith("-"):
                break
            out.append(name)
        return out
    try:
        listed = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return []
    count = sum(1 for line in listed.stdout.splitlines() if line.startswith("GPU "))
    return [str(i) for i in range(count)]


def _start_worker(workers: int, cancel: Any, gpu: str | None = None) -> None:
    """In each worker: the machine's share, its GPU (if the executor placed it on one), and
    the driver's cancel event. SIGINT is ignored (pebble's workers do): Ctrl-C reaches the
    runs through the event, never mid-step."""
    global _worker_cancel
    os.environ[WORKERS_ENV] = str(workers)
    if gpu is not None:  # before anything in this process initialises CUDA
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
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


@dataclass
class _Place:
    """Where runs train side by side: the CPU (capacity: the workers) or one GPU (capacity 1,
    each run taking its share), with its own pool of worker processes."""

    gpu: str | None
    capacity: Fraction
    workers: int
    load: Fraction = Fraction(0)
    pool: Any = None


class ProcessExecutor(Executor):
    """Trains specs in parallel worker processes: CPU studies, or runs placed on GPUs.

    Workers are started with `spawn` by default: safe with threads, torch and CUDA. A worker
    that dies (killed, out of memory) is replaced and its spec tried again, from its
    checkpoint, up to `infra_retries` times, then recorded as failed with cause
    `worker_died` (a rerun tries it again); the rest of the sweep goes on. The cancel event
    reaches every worker: the runs in flight checkpoint and stop.

    With GPUs (`gpus`, by default every visible one when the trainer trains on a GPU) each
    GPU gets its own workers, which see only it (`CUDA_VISIBLE_DEVICES`), and runs are packed:
    a run takes 1/`workers_per_gpu` of a GPU (by default 1/`Trainer.runs_per_gpu(spec)`: small
    models share a GPU, large ones have it alone) and starts on the least loaded GPU it fits.
    """

    name = "process"

    class Config(PluginConfig):
        workers: int | None = Field(
            default=None,
            ge=1,
            le=4096,
            description="runs in flight at once (default: the CPU count); with GPUs, a cap on "
            "all GPUs' runs together",
        )
        gpus: int | None = Field(
            default=None,
            ge=0,
            le=1024,
            description="GPUs to place runs on (default: every visible GPU when the trainer "
            "trains on one, else 0: CPU workers)",
        )
        workers_per_gpu: int | Literal["auto"] = Field(
            default="auto",
            description="runs sharing one GPU at once; auto: by the run's size, from the "
            f"trainer (at most {MAX_RUNS_PER_GPU})",
        )
        start_method: Literal["spawn", "forkserver", "fork"] = "spawn"
        infra_retries: int = Field(
            default=2,
            ge=0,
            le=100,
            description="times a spec whose worker died is tried again before it is failed",
        )

        @field_validator("workers_per_gpu", mode="before")
        @classmethod
        def _auto_or_a_count(cls, value: Any) -> int | str:
            """ "auto" or a whole number from 1 to 64 (a `--set` value may come as text)."""
            if value == "auto":
                return value
            text = value.strip() if isinstance(value, str) else None
            count = int(text) if text is not None and text.isdigit() else value
            if type(count) is not int or not 1 <= count <= 64:
                raise ValueError(f'must be "auto" or a whole number from 1 to 64, got {value!r}')
            return count

    def _places(self, trainer: Trainer, specs: list[ExperimentSpec]) -> list[_Place]:
        """The CPU as one place, or each GPU the sweep uses, with the workers it needs."""
        cpus = os.cpu_count() or 1
        cap = self.config.workers
        gpus = self.config.gpus
        names = visible_gpus() if gpus != 0 else []
        if gpus is None:
            gpus = len(names) if trainer.uses_gpu() else 0
        if gpus == 0:
            workers = min(cap or cpus, len(specs))
            return [_Place(None, Fraction(workers), workers)]
        if names and len(names) < gpus:
            raise ConfigError(
                f"executor 'process': gpus = {gpus}, but this machine shows {len(names)} "
                f"({', '.join(names)}); set executor.gpus={len(names)} or fewer"
            )
        # No GPU visible at all: placed as if there were `gpus` (each place's workers told
        # CUDA_VISIBLE_DEVICES=i); a CPU trainer then runs them side by side.
        names = names or [str(i) for i in range(gpus)]
        most = max(self._runs_per_gpu(trainer, spec) for spec in specs)
        per_gpu = min(most, max(1, (cap or max(cpus, gpus)) // gpus), len(specs))
        return [_Place(name, Fraction(1), per_gpu) for name in names[:gpus]]

    def _runs_per_gpu(self, trainer: Trainer, spec: ExperimentSpec) -> int:
        wanted = self.config.workers_per_gpu
        if wanted == "auto":
            wanted = min(MAX_RUNS_PER_GPU, max(1, int(trainer.runs_per_gpu(spec))))
        return wanted

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

        specs = list(specs)
        if not specs:
            return
        queue = deque((spec, 0) for spec in specs)
        cancel = cancel if cancel is not None else threading.Event()
        places = self._places(trainer, specs)
        on_gpus = places[0].gpu is not None
        in_flight_cap = (self.config.workers or os.cpu_count() or 1) if on_gpus else None
        workers = sum(place.workers for place in places)
        context = multiprocessing.get_context(self.config.start_method)
        stop = context.Event()  # the driver's `cancel`, as every worker sees it

        def new_pool(place: _Place):
            return ProcessPool(
                max_workers=place.workers,
                initializer=_start_worker,
                initargs=(workers, stop, place.gpu),
                context=context,
            )

        # each run's share of its place, asked of the trainer once (not at every look)
        shares = {
            spec.id: Fraction(1, self._runs_per_gpu(trainer, spec)) if on_gpus else Fraction(1)
            for spec in specs
        }

        def share(spec: ExperimentSpec) -> Fraction:
            return shares[spec.id]

        def place_for(spec: ExperimentSpec) -> _Place | None:
            """The least loaded place the spec fits in now (the first, on a tie)."""
            if in_flight_cap is not None and len(pending) >= in_flight_cap:
                return None
            fits = [p for p in places if p.load + share(spec) <= p.capacity]
            return min(fits, key=lambda p: p.load) if fits else None

        for place in places:
            place.pool = new_pool(place)
        pending: dict[Future, tuple[ExperimentSpec, int, _Place]] = {}
        finished = False
        try:
            while queue or pending:
                if cancel.is_set():
                    stop.set()
                    queue.clear()
                # keep the queue short, so a cancel stops quickly; runs start in plan order
                while queue and (place := place_for(queue[0][0])) is not None:
                    spec, attempt = queue.popleft()
                    job = place.pool.schedule(_train_in_worker, (trainer, spec, Path(run_dir)))
                    place.load += share(spec)
                    pending[job] = spec, attempt, place
                done, _ = wait(pending, return_when=FIRST_COMPLETED, timeout=0.2)
                for future in done:
                    spec, attempt, place = pending.pop(future)
                    place.load -= share(spec)
                    try:
                        result = future.result()
                    except TrainingCancelled:
                        continue
                    except (ProcessExpired, BrokenProcessPool) as exc:
                        if isinstance(exc, BrokenProcessPool) and not place.pool.active:
                            place.pool.stop()
                            place.pool.join()
                            place.pool = new_pool(place)
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
            pools = [place.pool for place in places]
            if finished:
                for pool in pools:
                    pool.close()
            elif not isinstance(sys.exc_info()[1], KeyboardInterrupt):
                # An error here (a full disk at an append): the runs in flight checkpoint
                # and stop before their workers go. A second Ctrl-C skips the wait.
                wait(pending, timeout=STOP_GRACE_S)
                for pool in pools:
                    pool.stop()
            else:
                for pool in pools:
                    pool.stop()
            for pool in pools:
                pool.join()


#: The hook API the built-in executors' registration was written for.
hook_api_version = HOOK_API_VERSION


@hookimpl
def flops_fit_register_executors():
    return [SerialExecutor, ProcessExecutor]
