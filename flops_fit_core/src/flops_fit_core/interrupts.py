"""Ctrl-C as a cancellation: the first one asks every run in flight to checkpoint and stop, the
second stops everything at once.

A bare `KeyboardInterrupt` lands wherever Python happens to be (inside an optimizer step, in a
pool's shutdown) and reaches no worker process. So while a sweep trains, SIGINT only sets the
sweep's cancel event: every trainer sees it at its next `check_cancelled()` (worker processes
through the executor, which relays it), checkpoints and raises `TrainingCancelled`; nothing is
recorded for those runs, and the next invocation resumes them. A second SIGINT raises
`KeyboardInterrupt` at once (executors then kill their workers).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["cancel_on_interrupt"]


@contextlib.contextmanager
def cancel_on_interrupt(
    cancel: threading.Event, on_first: Callable[[], None] | None = None
) -> Iterator[threading.Event]:
    """Within the block, the first SIGINT sets `cancel` (and calls `on_first`, to say so); the
    second raises `KeyboardInterrupt`.

    Only the main thread can handle signals: elsewhere, and where SIGINT is ignored (a job
    started in the background), this changes nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield cancel
        return
    previous: Any = signal.getsignal(signal.SIGINT)
    if previous in (signal.SIG_IGN, None):
        yield cancel
        return

    def handler(signum, frame):
        if cancel.is_set():
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        cancel.set()
        if on_first is not None:
            on_first()

    signal.signal(signal.SIGINT, handler)
    try:
        yield cancel
    finally:
        signal.signal(signal.SIGINT, previous)
