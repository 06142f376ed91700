"""The prefetched batches are `Batches.batch(step)`'s, step for step, from any start."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from flops_fit_torch.data import Batches
from flops_fit_torch.prefetch import Prefetcher

TOKENS = np.random.default_rng(0).integers(0, 50, size=5_000).astype(np.uint16)


@pytest.mark.parametrize("start", [0, 7])
@pytest.mark.parametrize("depth", [1, 3])
def test_prefetched_batches_equal_the_plain_ones_from_any_start(start, depth):
    """Same seed, same step, same tensors: from step 0 and from a resume at step 7, through
    several epochs of a small corpus (each batch int64 on the CPU, as the loop got before)."""
    steps = 40
    plain = Batches(TOKENS, seq_len=32, batch_size=8, seed=3)
    served = Batches(TOKENS, seq_len=32, batch_size=8, seed=3)
    with Prefetcher(served, torch.device("cpu"), start, steps, depth=depth) as prefetch:
        for step in range(start, steps):
            x, y = prefetch.get(step)
            want_x, want_y = plain.batch(step)
            assert x.dtype == y.dtype == torch.int64
            assert np.array_equal(x.numpy(), want_x) and np.array_equal(y.numpy(), want_y)
    assert plain.epochs(steps) > 2  # the walk crossed epochs


def test_steps_must_be_asked_for_in_order():
    with Prefetcher(Batches(TOKENS, 32, 4, 0), torch.device("cpu"), 0, 5) as prefetch:
        prefetch.get(0)
        with pytest.raises(RuntimeError, match="serves step 1 next"):
            prefetch.get(2)


def test_an_error_building_a_batch_is_raised_by_its_step():
    class Broken(Batches):
        def batch(self, step):
            if step == 2:
                raise OSError("memmap read failed")
            return super().batch(step)

    with Prefetcher(Broken(TOKENS, 32, 4, 0), torch.device("cpu"), 0, 5) as prefetch:
        prefetch.get(0)
        prefetch.get(1)
        with pytest.raises(OSError, match="memmap read failed"):
            prefetch.get(2)


def test_leaving_early_stops_the_thread():
    """A cancelled run leaves the loop with batches still queued: the thread must not linger."""
    before = threading.active_count()
    with Prefetcher(Batches(TOKENS, 32, 4, 0), torch.device("cpu"), 0, 1_000) as prefetch:
        prefetch.get(0)
    assert not prefetch._thread.is_alive()
    assert threading.active_count() == before
