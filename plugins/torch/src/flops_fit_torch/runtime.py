"""Where and how a run computes: device, numeric precision, CPU threads.

Each choice is resolved once per run from the config (`auto` by default) and recorded in the
result, so a loss measured in bf16 on a GPU is never mistaken for one measured in fp32 on a CPU.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch

from flops_fit_core.executors import WORKERS_ENV  # set by the process executor

__all__ = [
    "Runtime",
    "autocast",
    "cpu_has_native_bf16",
    "describe_device",
    "free_cores",
    "resolve_device",
    "resolve_threads",
]


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
    """Cores this process may use, shared out among the trainer processes running beside it."""
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


def autocast(runtime: Runtime):
    """bf16 autocast where the run computes in bf16, else a no-op context."""
    if runtime.precision == "bf16":
        return torch.autocast(device_type=runtime.device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
