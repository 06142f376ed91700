"""Where and how a run computes, and when it stops: device, precision, threads, cancellation.

Each choice is resolved once per run from the config (`auto` by default) and recorded in the
result, so a loss measured in bf16 on a GPU is never mistaken for one measured in fp32 on a CPU.
On a CPU with native bf16, `auto` keeps bf16 only if a short check trains like fp32 does. The
training loop asks `stop_if_cancelled` between steps, and `restored_process` leaves the process
as the run found it.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from flops_fit_core import THREADS_ENV, WORKERS_ENV, ExperimentSpec, ModelShape, TrainingCancelled

from .data import Batches
from .schedule import Schedule
from .step import build_model, make_optimizer, train_step

if TYPE_CHECKING:
    from flops_fit_core import TrainerContext

    from .config import LocalConfig
    from .data import TokenData

__all__ = ["cpu_has_native_bf16", "free_cores", "resolve_device", "resolve_threads"]

#: Steps of the short bf16-vs-fp32 check on a CPU with native bf16, and its tolerance (nats).
BF16_CHECK_STEPS = 20
BF16_CHECK_TOLERANCE = 0.01

_bf16_verdicts: dict[str, bool] = {}


def resolve_device(requested: str) -> torch.device:
    """`auto` is cuda > mps > cpu; anything else must name a device torch can use."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {requested!r} asked for, but CUDA is not available here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"device {requested!r} asked for, but MPS is not available here")
    return device


def describe_device(device: torch.device) -> str:
    """What a result records as its device: `cpu`, `cuda:0 (NVIDIA H100 80GB HBM3)`, ..."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return device.type


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX), not by emulation.

    On a CPU without it (AVX2 only) bf16 autocast was measured 19x slower than fp32 here.
    """
    cpu = getattr(torch._C, "_cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def free_cores() -> int:
    """Cores this process may use: the executor's thread budget for it (`THREADS_ENV`), else
    the free cores shared out among the trainer processes running beside it."""
    budget = os.environ.get(THREADS_ENV, "")
    if budget.isdigit() and int(budget) > 0:
        return int(budget)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        cores = os.cpu_count() or 1
    try:
        workers = max(1, int(os.environ.get(WORKERS_ENV, "1")))
    except ValueError:
        workers = 1
    return max(1, cores // workers)


def resolve_threads(requested: int | None) -> int:
    """Intra-op threads: the given number, else this process's share of the free cores."""
    return requested if requested is not None else free_cores()


@dataclass(frozen=True)
class Runtime:
    """The resolved device, precision and threads of one run."""

    device: torch.device
    precision: str  # "fp32" | "bf16"
    threads: int
    compiled: bool

    def describe(self) -> dict[str, object]:
        return {
            "device": describe_device(self.device),
            "precision": self.precision,
            "threads": self.threads,
            "compile": self.compiled,
        }

    def autocast(self):
        """bf16 autocast where the run computes in bf16, else a no-op context."""
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def synchronize(self) -> None:
        """Wait for the device's queued work (a no-op off CUDA): time steps, not the queue."""
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def resolve_runtime(config: LocalConfig, data: TokenData) -> Runtime:
    """Device, precision, threads and compilation for this run (see `LocalConfig`)."""
    device = resolve_device(config.device)
    threads = resolve_threads(config.threads)
    precision = config.precision
    if precision == "auto":
        if device.type == "cuda":
            native = torch.cuda.is_bf16_supported(including_emulation=False)
            precision = "bf16" if native else "fp32"
        elif device.type == "cpu" and cpu_has_native_bf16():
            precision = "bf16" if _bf16_agrees(config, data, threads) else "fp32"
        else:
            precision = "fp32"
    elif precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise RuntimeError(f"precision 'bf16' asked for, but {device} does not support it")
    compiled = config.compile if config.compile is not None else device.type == "cuda"
    return Runtime(device=device, precision=precision, threads=threads, compiled=compiled)


def _bf16_agrees(config: LocalConfig, data: TokenData, threads: int) -> bool:
    """Train one fixed small model briefly in fp32 and in bf16: bf16 if they agree in 0.01 nats.

    The check uses a reference shape, not each run's, so every run of a study on this machine
    and data gets the same verdict: a sweep never mixes precisions. It trains the way runs do
    (`train_step`: warmup and cosine, the configured clipping), on the study's own data, and
    is made once per process.
    """
    fields = config.training_fields()  # what the check trains with: model, AdamW, warmup
    key = json.dumps(
        [data.fingerprint, fields["model"], fields["optimizer"], fields["schedule"]],
        sort_keys=True,
    )
    if key in _bf16_verdicts:
        return _bf16_verdicts[key]
    shape = ModelShape(
        d_model=64,
        n_layers=2,
        n_heads=4,
        d_ff=256,
        vocab_size=max(64, data.vocab_size),
        seq_len=64,
    )
    umup = config.model.parametrization == "umup"
    reference = ExperimentSpec(
        budget=1.0,
        params=shape.params_total,
        tokens=BF16_CHECK_STEPS * 16 * shape.seq_len,
        shape=shape,
        learning_rate=0.5 if umup else 3e-3,
        batch_size=16,
    )
    torch.set_num_threads(threads)
    cpu = torch.device("cpu")
    schedule = Schedule("cosine", BF16_CHECK_STEPS, config.schedule.warmup)
    clip = config.optimizer.grad_clip
    losses = {}
    for precision in ("fp32", "bf16"):
        model = build_model(reference, config)
        optimizer = make_optimizer(model, reference, config, cpu)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        runtime = Runtime(cpu, precision, threads, False)
        batches = Batches(data.train, shape.seq_len, reference.batch_size, 0)
        recent = []
        for step in range(BF16_CHECK_STEPS):
            x, y = (torch.from_numpy(a) for a in batches.batch(step))
            loss, _ = train_step(model, optimizer, scheduler, x, y, runtime, len(x), clip)
            recent.append(float(loss))
        losses[precision] = sum(recent[-5:]) / 5
    verdict = abs(losses["bf16"] - losses["fp32"]) <= BF16_CHECK_TOLERANCE
    _bf16_verdicts[key] = verdict
    return verdict


def stop_if_cancelled(
    context: TrainerContext, step: int, steps: int, checkpoint: Callable[[], None]
) -> None:
    """Between steps: if the sweep was cancelled (Ctrl-C, the API's cancel), `checkpoint()`
    and raise `TrainingCancelled`. The checkpoint then holds whole steps: the resume is exact."""
    if context.cancelled():
        checkpoint()
        raise TrainingCancelled(f"cancelled at step {step} of {steps}")


@contextlib.contextmanager
def restored_process() -> Iterator[None]:
    """Leave the process as a run found it, also after a failure (running out of memory):
    torch's thread count restored, compiled graphs and cached GPU memory released."""
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch._dynamo.reset()
        gc.collect()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()
