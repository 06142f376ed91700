"""Batches are a pure function of (seed, step); eval windows are fixed and in order."""

from __future__ import annotations

import numpy as np
import pytest

from flops_fit_core import InputError
from flops_fit_torch.data import Batches, eval_windows

TOKENS = np.random.default_rng(0).integers(0, 64, size=10_001).astype(np.uint8)


def test_windows_and_shapes():
    batches = Batches(TOKENS, seq_len=100, batch_size=8, seed=0)
    assert batches.windows == 100  # (10_001 - 1) // 100
    inputs, targets = batches.batch(0)
    assert inputs.shape == targets.shape == (8, 100)
    assert inputs.dtype == targets.dtype == np.int64


def test_targets_are_inputs_shifted_by_one():
    batches = Batches(TOKENS, seq_len=50, batch_size=4, seed=3)
    inputs, targets = batches.batch(5)
    np.testing.assert_array_equal(inputs[:, 1:], targets[:, :-1])
    for row, target, window in zip(inputs, targets, batches.window_ids(5), strict=True):
        start = window * 50
        np.testing.assert_array_equal(row, TOKENS[start : start + 50])
        np.testing.assert_array_equal(target, TOKENS[start + 1 : start + 51])


def test_batch_is_a_pure_function_of_seed_and_step():
    fresh = Batches(TOKENS, seq_len=64, batch_size=16, seed=11)
    walked = Batches(TOKENS, seq_len=64, batch_size=16, seed=11)
    for step in range(7):
        walked.batch(step)
    walked.batch(1000)  # a far epoch in between must not disturb anything
    for a, b in zip(fresh.batch(7), walked.batch(7), strict=True):
        np.testing.assert_array_equal(a, b)
    other = Batches(TOKENS, seq_len=64, batch_size=16, seed=12)
    assert not np.array_equal(other.batch(7)[0], fresh.batch(7)[0])


def test_no_window_repeats_within_an_epoch():
    batches = Batches(TOKENS, seq_len=100, batch_size=7, seed=1)  # 100 windows, 7 per batch
    drawn = np.concatenate([batches.window_ids(step) for step in range(30)])  # 210 samples
    for epoch in range(2):
        chunk = drawn[epoch * 100 : (epoch + 1) * 100]
        assert sorted(chunk.tolist()) == list(range(100))
    assert not np.array_equal(drawn[:100], drawn[100:200])  # each epoch has its own order


def test_epoch_permutation_is_the_documented_one():
    batches = Batches(TOKENS, seq_len=100, batch_size=10, seed=5)
    perm = np.random.Generator(np.random.PCG64(np.random.SeedSequence([5, 2]))).permutation(100)
    np.testing.assert_array_equal(batches.window_ids(21), perm[10:20])  # samples 210..219


def test_epochs():
    batches = Batches(TOKENS, seq_len=100, batch_size=10, seed=0)
    assert batches.epochs(0) == 0
    assert batches.epochs(10) == pytest.approx(1.0)
    assert batches.epochs(25) == pytest.approx(2.5)


def test_corpus_smaller_than_one_batch_is_valid():
    tokens = np.arange(31, dtype=np.uint16)
    batches = Batches(tokens, seq_len=10, batch_size=8, seed=0)  # 3 windows
    assert batches.windows == 3
    ids = batches.window_ids(0)
    for epoch in range(2):
        assert sorted(ids[epoch * 3 : epoch * 3 + 3].tolist()) == [0, 1, 2]
    assert batches.epochs(1) == pytest.approx(8 / 3)
    inputs, targets = batches.batch(4)
    assert inputs.shape == (8, 10) and (targets - inputs == 1).all()


def test_corpus_shorter_than_a_sequence_is_an_input_error():
    with pytest.raises(InputError, match="shorter than one sequence"):
        Batches(np.arange(10), seq_len=10, batch_size=1, seed=0)
    Batches(np.arange(11), seq_len=10, batch_size=1, seed=0)
    with pytest.raises(ValueError, match="step"):
        Batches(np.arange(11), seq_len=10, batch_size=1, seed=0).batch(-1)


def test_eval_windows_are_consecutive_and_deterministic():
    windows = eval_windows(TOKENS, seq_len=100)
    assert windows.shape == (100, 101) and windows.dtype == np.int64
    np.testing.assert_array_equal(windows[0], TOKENS[:101])
    np.testing.assert_array_equal(windows[1, 0], windows[0, -1])  # boundary token shared
    np.testing.assert_array_equal(windows[:, :-1].ravel(), TOKENS[:10_000])
    np.testing.assert_array_equal(windows, eval_windows(TOKENS, seq_len=100))
    limited = eval_windows(TOKENS, seq_len=100, max_tokens=1000)
    np.testing.assert_array_equal(limited, windows[:9])
    with pytest.raises(InputError):
        eval_windows(TOKENS, seq_len=100, max_tokens=100)


def test_batches_work_on_memmaps(tmp_path):
    path = tmp_path / "t.bin"
    TOKENS.tofile(path)
    mapped = np.memmap(path, dtype=np.uint8, mode="r")
    a = Batches(mapped, seq_len=64, batch_size=4, seed=0).batch(3)
    b = Batches(TOKENS, seq_len=64, batch_size=4, seed=0).batch(3)
    np.testing.assert_array_equal(a[0], b[0])
    assert type(a[0]) is np.ndarray
