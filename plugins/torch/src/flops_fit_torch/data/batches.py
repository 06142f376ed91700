"""Training batches as a pure function of (seed, step), and the fixed evaluation windows.

Why pure: a run resumed from a checkpoint at step s must see exactly the batches an
uninterrupted run would have seen from s on, with no sampler state to save. So the corpus is cut
into `windows` non-overlapping windows of seq_len + 1 tokens (inputs and targets shifted by one;
neighbouring windows share their boundary token), and sample j = step * batch_size + b takes
window perm_e[j % windows] of epoch e = j // windows, where perm_e is a permutation seeded by
(seed, e) alone. Within an epoch no window repeats; a corpus smaller than one batch is still
valid, it is simply seen more than once per step.
"""

from __future__ import annotations

import numpy as np

from flops_fit_core import InputError

__all__ = ["Batches", "eval_windows"]

#: How many epochs' permutations `Batches` keeps; a batch rarely spans more than two.
_PERMUTATIONS_KEPT = 4


def _windows(tokens: np.ndarray, starts: np.ndarray, seq_len: int) -> np.ndarray:
    """[len(starts), seq_len + 1] int64: the windows of `tokens` beginning at `starts`."""
    index = starts[:, None] + np.arange(seq_len + 1, dtype=np.int64)[None, :]
    return np.asarray(tokens[index], dtype=np.int64)


def _check(tokens: np.ndarray, seq_len: int) -> None:
    if np.ndim(tokens) != 1:
        raise ValueError(f"tokens must be 1-D, got shape {np.shape(tokens)}")
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    if len(tokens) < seq_len + 1:
        raise InputError(
            f"corpus of {len(tokens)} tokens is shorter than one sequence of "
            f"seq_len + 1 = {seq_len + 1} tokens"
        )


class Batches:
    """Random training batches of int64 (inputs, targets), each [batch_size, seq_len].

    `batch(step)` depends on nothing but (tokens, seq_len, batch_size, seed, step): not on which
    steps were drawn before, nor on the process. Epoch permutations are cached for speed only.
    """

    def __init__(self, tokens: np.ndarray, seq_len: int, batch_size: int, seed: int):
        _check(tokens, seq_len)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.tokens = tokens
        self.seq_len = int(seq_len)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.windows = (len(tokens) - 1) // self.seq_len
        self._permutations: dict[int, np.ndarray] = {}

    def permutation(self, epoch: int) -> np.ndarray:
        """The order in which epoch `epoch` visits the windows."""
        perm = self._permutations.get(epoch)
        if perm is None:
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, epoch])))
            perm = rng.permutation(self.windows)
            if len(self._permutations) >= _PERMUTATIONS_KEPT:
                self._permutations.pop(next(iter(self._permutations)))
            self._permutations[epoch] = perm
        return perm

    def window_ids(self, step: int) -> np.ndarray:
        """The window index of each sample of batch `step`."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        samples = step * self.batch_size + np.arange(self.batch_size, dtype=np.int64)
        epochs, positions = np.divmod(samples, self.windows)
        ids = np.empty(self.batch_size, dtype=np.int64)
        for epoch in np.unique(epochs):
            mask = epochs == epoch
            ids[mask] = self.permutation(int(epoch))[positions[mask]]
        return ids

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(inputs, targets) of step `step`; targets are the inputs shifted by one token."""
        windows = _windows(self.tokens, self.window_ids(step) * self.seq_len, self.seq_len)
        return windows[:, :-1], windows[:, 1:]

    def epochs(self, steps: int) -> float:
        """Passes over the corpus that `steps` steps make: sequences drawn / windows."""
        return steps * self.batch_size / self.windows


def eval_windows(tokens: np.ndarray, seq_len: int, max_tokens: int | None = None) -> np.ndarray:
    """[n, seq_len + 1] int64: the evaluation set cut into consecutive windows, in order.

    Deterministic and shared by every run of a study, so eval losses compare. Only the first
    `max_tokens` tokens are used when given; a tail shorter than a window is dropped.
    """
    if max_tokens is not None:
        tokens = tokens[:max_tokens]
    _check(tokens, seq_len)
    count = (len(tokens) - 1) // seq_len
    return _windows(tokens, np.arange(count, dtype=np.int64) * seq_len, seq_len)
