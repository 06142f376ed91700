"""A run's training batches, built ahead of the step that needs them and copied asynchronously.

A GPU step takes milliseconds; building its batch on the host (fancy indexing into a memmap,
then a copy from pageable memory, which blocks the host until it is done) would sit between two
steps' kernel launches every step. So a background thread builds the next `depth` batches (numpy
and the pinning copy release the GIL), in page-locked memory where the device is CUDA, and the
loop copies each with `non_blocking=True`: the transfer is queued on the stream behind the
previous step's kernels and the host goes straight on to launching this step's.

The batches are `Batches.batch(step)`'s, step for step: a pure function of (seed, step), so a
prefetched run and a resumed one see exactly the batches an unprefetched run would.
"""

from __future__ import annotations

import queue
import threading
from types import TracebackType

import torch

from .data import Batches

__all__ = ["Prefetcher"]

#: Batches built ahead of the step that trains: one is enough to hide the host's work behind
#: a step; two absorbs a slow read from a cold memmap.
DEFAULT_DEPTH = 2


class Prefetcher:
    """Steps `start, start + 1, ..., stop - 1` of `batches`, on `device`, `depth` ahead.

    Use as a context manager; `get(step)` must be called for those steps in order (the loop
    trains them in order). Leaving the context stops the thread, also on an error or a cancel.
    An error while building a batch is raised by the `get` of that step.
    """

    def __init__(
        self,
        batches: Batches,
        device: torch.device,
        start: int,
        stop: int,
        depth: int = DEFAULT_DEPTH,
    ):
        self.batches, self.device = batches, device
        self.next_step, self.stop_step = start, stop
        self.pin = device.type == "cuda"
        self._ready: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._closing = threading.Event()
        self._thread = threading.Thread(
            target=self._produce, args=(start, stop), name="flops-fit-prefetch", daemon=True
        )

    def __enter__(self) -> Prefetcher:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop building batches and wait for the thread (it never blocks for long: a full
        queue is polled)."""
        self._closing.set()
        if self._thread.is_alive():
            self._thread.join()

    def _produce(self, start: int, stop: int) -> None:
        for step in range(start, stop):
            try:
                item = (step, self._host_batch(step))
            except BaseException as exc:  # handed to the loop, raised at its `get`
                item = (step, exc)
            while not self._closing.is_set():
                try:
                    self._ready.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if self._closing.is_set() or isinstance(item[1], BaseException):
                return

    def _host_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = (torch.from_numpy(a) for a in self.batches.batch(step))
        if self.pin:
            x, y = x.pin_memory(), y.pin_memory()
        return x, y

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch `step` (the next one in order) as (inputs, targets) on the device."""
        if step != self.next_step or step >= self.stop_step:
            raise RuntimeError(
                f"batch {step} asked for; the prefetcher serves step {self.next_step} next "
                f"(of {self.stop_step})"
            )
        built, payload = self._ready.get()
        if isinstance(payload, BaseException):
            raise payload
        assert built == step  # one producer, steps in order
        self.next_step = step + 1
        x, y = payload
        return (
            x.to(self.device, non_blocking=self.pin),
            y.to(self.device, non_blocking=self.pin),
        )
