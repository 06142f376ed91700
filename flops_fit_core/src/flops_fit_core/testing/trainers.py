"""Tiny trainers for executor contracts, and a cancel event that fires mid-run.

`EchoTrainer` is instant, deterministic, picklable and fails on demand; `ChildProcessTrainer`
runs each spec as an external command, as a trainer wrapping a launcher does, and must stop
its child when the sweep is cancelled. They live in an importable module (not a test file) so
worker processes can unpickle them.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field

from ..bases import Trainer, TrainerContext
from ..errors import TrainingError
from ..schemas import ExperimentSpec, ModelShape, PluginConfig, RunResult

__all__ = [
    "CHILDREN_DIR",
    "ECHO_DIR",
    "VERSION_ENV",
    "CancelAfter",
    "ChildProcessTrainer",
    "EchoTrainer",
    "OtherVersionTrainer",
    "cancel_when_started",
    "tiny_specs",
]


class CancelAfter:
    """A cancel event that sets itself at its `checks`-th look (`is_set()`): cancels a run at
    a chosen point of its own checks, with no timing involved."""

    def __init__(self, checks: int):
        self.checks, self.looks = checks, 0
        self._event = threading.Event()

    def is_set(self) -> bool:
        self.looks += 1
        if self.looks >= self.checks:
            self._event.set()
        return self._event.is_set()

    def set(self) -> None:
        self._event.set()


#: With `record = true`, `EchoTrainer` writes `<run_dir>/echo/<spec id>.json` for each run:
#: its process, the `CUDA_VISIBLE_DEVICES` it saw, and when it started and ended.
ECHO_DIR = "echo"


class EchoTrainer(Trainer):
    """loss = 2 + 1/ln(N): a spec with `extras={"fail": True}` raises TrainingError.

    `runs_per_gpu` is what it tells executors that pack runs on GPUs; `record` leaves a note
    of where and when each run trained (`ECHO_DIR`), for tests of placement.
    """

    name = "echo"
    deterministic = True

    class Config(PluginConfig):
        delay_s: float = 0.0
        runs_per_gpu: int = Field(1, ge=1)
        record: bool = False

    def runs_per_gpu(self, spec: ExperimentSpec) -> int:
        return self.config.runs_per_gpu

    def train(self, spec: ExperimentSpec, context: TrainerContext) -> RunResult:
        context.check_cancelled()
        started = time.time()
        if spec.extras.get("fail"):
            raise TrainingError(f"asked to fail for {spec.id}")
        if self.config.delay_s:
            time.sleep(self.config.delay_s)
        if self.config.record:
            folder = Path(context.run_dir) / ECHO_DIR
            folder.mkdir(parents=True, exist_ok=True)
            note = {
                "pid": os.getpid(),
                "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "started": started,
                "ended": time.time(),
            }
            (folder / f"{spec.id}.json").write_text(json.dumps(note))
        context.progress(1.0, "done")
        return RunResult.success(
            spec,
            self.info,
            loss=2 + 1 / math.log(spec.params),
            tokens_trained=spec.tokens,
            device=f"pid-{os.getpid()}",
        )


#: Where `OtherVersionTrainer` reads the version its workers claim.
VERSION_ENV = "FLOPS_FIT_TEST_VERSION"


class OtherVersionTrainer(EchoTrainer):
    """An echo trainer whose version, once unpickled in a worker, is that worker's
    `FLOPS_FIT_TEST_VERSION` (if set): a cluster whose nodes run another trainer version, for
    the check a cluster executor makes on its first result."""

    name = "other-version"

    def __reduce__(self):
        return (_other_version, (self.config.model_dump(),))


def _other_version(config: dict) -> OtherVersionTrainer:
    trainer = OtherVersionTrainer(config)
    if VERSION_ENV in os.environ:
        type(trainer).version = os.environ[VERSION_ENV]
    return trainer


#: `ChildProcessTrainer` writes `<run_dir>/children/<spec id>.pid` for each child it starts.
CHILDREN_DIR = "children"


class ChildProcessTrainer(Trainer):
    """Trains a spec by running a child process for `seconds` (checking for a cancel every
    20 ms); on `TrainingCancelled` it kills and reaps its child before re-raising."""

    name = "child-process"
    deterministic = True

    class Config(PluginConfig):
        seconds: float = 30.0

    def train(self, spec: ExperimentSpec, context: TrainerContext) -> RunResult:
        context.check_cancelled()
        child = subprocess.Popen(
            [sys.executable, "-c", f"import time; time.sleep({self.config.seconds})"]
        )
        try:
            folder = Path(context.run_dir) / CHILDREN_DIR
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{spec.id}.pid").write_text(str(child.pid))
            while child.poll() is None:
                context.check_cancelled()
                time.sleep(0.02)
        except BaseException:
            child.kill()
            child.wait()
            raise
        return RunResult.success(
            spec, self.info, loss=2 + 1 / math.log(spec.params), tokens_trained=spec.tokens
        )


def tiny_specs(
    count: int = 4, fail: tuple[int, ...] = (), budgets: Sequence[float] = ()
) -> list[ExperimentSpec]:
    """`count` small distinct specs; those at the indexes in `fail` ask EchoTrainer to fail.
    Their budget is 1e12 FLOPs, or `budgets[i]` (one per spec) where given."""
    specs = []
    for i in range(count):
        shape = ModelShape(
            d_model=64 * (i + 1),
            n_layers=2,
            n_heads=4,
            d_ff=256 * (i + 1),
            vocab_size=256,
            seq_len=64,
        )
        specs.append(
            ExperimentSpec(
                budget=budgets[i] if budgets else 1e12,
                params=shape.params_total,
                tokens=1_000_000,
                shape=shape,
                learning_rate=1e-3,
                batch_size=8,
                extras={"fail": True} if i in fail else {},
            )
        )
    return specs


def cancel_when_started(
    cancel: threading.Event,
    folder: Path,
    count: int = 1,
    pattern: str = "*",
    timeout: float = 120.0,
) -> threading.Thread:
    """Start a daemon thread that sets `cancel` once `folder` holds `count` files matching
    `pattern` (runs that have started, e.g. `ChildProcessTrainer`'s `*.pid` in
    `CHILDREN_DIR`), or after `timeout` seconds: a cancel that lands while runs are in flight."""

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while len(list(Path(folder).glob(pattern))) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        cancel.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher
