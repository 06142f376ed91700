"""A synthetic language whose entropy rate is known exactly: the floor under every model's loss.

Why: a scaling study on real text cannot tell a fitted irreducible loss E from the truth. Here
the truth is computed in closed form, and the language is rich enough (spelling, Zipfian word
frequencies, 16,384 x 8 collocations) that bigger models keep winning at bigger budgets.

The language. A lexicon of `words` distinct random words, each `min_length..max_length` letters
drawn from 63 letters (`ALPHABET[1:]`); word r (0-based) has Zipf rank r + 1. Each word has
`successors` distinct collocation successors drawn uniformly from the lexicon. The text is a
first-order Markov chain over words, each followed by one space; the next word's law given the
current word i is the mixture

    P(j | i) = (1 - w) z_j + w sum_k c_k [succ[i, k] = j],

with z the Zipf(s) law over ranks 1..words, c the Zipf(s) law over successor positions 1..K and
w = `collocation_weight`.

The entropy rate. Spaces mark word boundaries, so the text and the word sequence determine each
other, and the entropy per symbol is H(W' | W) / (E[len W] + 1) under the chain's stationary law
pi. From pi = pi P: pi = (1 - w) z + w pi S, i.e. pi = (1 - w) z (I - w S)^-1 with S the
successor matrix (row i puts c_k on succ[i, k]); iterating that map converges like w^t. Row i's
entropy is the entropy of (1 - w) z corrected at its K successor positions, so all of it is a
few vectorized passes over a [words, K] array.

Generation draws, per block of words, all mixture flags, Zipf draws and successor positions at
once; collocation positions depend on the previous word, so they are resolved in repeated
vectorized passes (one per step of the longest run of consecutive flags). Blocks have a fixed
size and draws a fixed order, so `generate(n)` is the first n symbols of one infinite stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property

import numpy as np

from .config import ALPHABET, SyntheticConfig

__all__ = ["SyntheticLanguage"]

#: Seed tags: the lexicon and each text stream draw from their own SeedSequence.
_LEXICON_TAG = 0x1E71C0
_STREAM_TAG = 0x57BEA3

#: Words per generation block; fixed so that the stream does not depend on the length asked.
_BLOCK_WORDS = 1 << 18

#: Padding in the spelled-out lexicon table; not a symbol id (symbols are 0..63).
_PAD = 255

#: Stop iterating the stationary law when an update changes no entry by more than this.
_STATIONARY_TOL = 1e-15


def _rng(seed: int, tag: int, stream: int = 0) -> np.random.Generator:
    """A generator whose output is the same on every platform and numpy release that has PCG64."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, tag, stream])))


def _zipf(n: int, s: float) -> np.ndarray:
    """The Zipf(s) law over ranks 1..n, as float64 probabilities."""
    weights = np.arange(1, n + 1, dtype=np.float64) ** -s
    return weights / weights.sum()


def _neg_xlogx(p: np.ndarray) -> np.ndarray:
    """-p ln p with 0 ln 0 = 0."""
    safe = np.where(p > 0, p, 1.0)
    return -p * np.log(safe)


def _sample(cdf: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draws: our own, so the stream never depends on numpy's `choice` algorithm."""
    return np.minimum(np.searchsorted(cdf, u * cdf[-1], side="right"), len(cdf) - 1)


class SyntheticLanguage:
    """The language of a `SyntheticConfig`: its lexicon, its chain, its entropy, its text."""

    def __init__(self, config: SyntheticConfig | None = None):
        self.config = config or SyntheticConfig()
        cfg = self.config
        rng = _rng(cfg.seed, _LEXICON_TAG)
        self.lengths, self.spelling = self._draw_lexicon(rng)
        self.successors = self._draw_successors(rng)
        self.unigram = _zipf(cfg.words, cfg.zipf)
        self.successor_weights = _zipf(cfg.successors, cfg.zipf)

    # -- construction -------------------------------------------------------------------------

    def _draw_lexicon(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """`words` distinct random words: lengths [words] and letters [words, max_length].

        Candidates are drawn in batches and kept in order of first appearance, so the lexicon is
        a deterministic function of the seed. Letters are symbol ids 1..63; unused slots are 0.
        """
        cfg = self.config
        span = cfg.max_length - cfg.min_length + 1
        lengths: list[np.ndarray] = []
        letters: list[np.ndarray] = []
        seen = np.empty(0, dtype=np.int64)
        count = 0
        while count < cfg.words:
            batch = 2 * (cfg.words - count) + 64
            cand_len = cfg.min_length + rng.integers(0, span, size=batch)
            cand = rng.integers(1, len(ALPHABET), size=(batch, cfg.max_length))
            cand[np.arange(cfg.max_length)[None, :] >= cand_len[:, None]] = 0
            keys = (cand * (64 ** np.arange(cfg.max_length, dtype=np.int64))).sum(axis=1)
            _, first = np.unique(keys, return_index=True)
            first.sort()
            fresh = first[~np.isin(keys[first], seen)][: cfg.words - count]
            seen = np.concatenate([seen, keys[fresh]])
            lengths.append(cand_len[fresh])
            letters.append(cand[fresh])
            count += len(fresh)
        return np.concatenate(lengths), np.concatenate(letters).astype(np.uint8)

    def _draw_successors(self, rng: np.random.Generator) -> np.ndarray:
        """[words, successors] int64: distinct collocation successors per word, uniform."""
        cfg = self.config
        succ = rng.integers(0, cfg.words, size=(cfg.words, cfg.successors))
        while True:
            ordered = np.sort(succ, axis=1)
            bad = np.flatnonzero((ordered[:, 1:] == ordered[:, :-1]).any(axis=1))
            if len(bad) == 0:
                return succ
            succ[bad] = rng.integers(0, cfg.words, size=(len(bad), cfg.successors))

    # -- the chain ----------------------------------------------------------------------------

    def next_word_probability(self, previous: np.ndarray, following: np.ndarray) -> np.ndarray:
        """P(following | previous), elementwise over two equal-shape arrays of word ids."""
        w = self.config.collocation_weight
        previous = np.asarray(previous)
        following = np.asarray(following)
        hits = self.successors[previous] == following[..., None]
        return (1 - w) * self.unigram[following] + w * (hits * self.successor_weights).sum(-1)

    @cached_property
    def stationary(self) -> np.ndarray:
        """The stationary law pi of the word chain, to 1e-15 per entry."""
        w = self.config.collocation_weight
        base = (1 - w) * self.unigram
        flat_succ = self.successors.ravel()
        pi = self.unigram.copy()
        for _ in range(100_000):
            flow = pi[:, None] * self.successor_weights[None, :]
            new = base + w * np.bincount(flat_succ, flow.ravel(), minlength=self.config.words)
            done = np.abs(new - pi).max() <= _STATIONARY_TOL
            pi = new
            if done:
                break
        return pi / pi.sum()

    @cached_property
    def row_entropy(self) -> np.ndarray:
        """H(W' | W = i) for every word i, in nats, in closed form."""
        w = self.config.collocation_weight
        base = (1 - w) * self.unigram
        plain = _neg_xlogx(base).sum()
        at_succ = base[self.successors]
        mixed = at_succ + w * self.successor_weights[None, :]
        return plain - _neg_xlogx(at_succ).sum(axis=1) + _neg_xlogx(mixed).sum(axis=1)

    def word_entropy(self) -> float:
        """H(W' | W) under the stationary law, in nats per word."""
        return float(self.stationary @ self.row_entropy)

    def symbols_per_word(self) -> float:
        """E[len W] + 1 under the stationary law: each word is followed by one space."""
        return float(self.stationary @ self.lengths) + 1.0

    def entropy_rate(self) -> float:
        """The exact entropy rate of the text, in nats per symbol."""
        return self.word_entropy() / self.symbols_per_word()

    # -- text ---------------------------------------------------------------------------------

    @cached_property
    def _cdfs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (
            np.cumsum(self.stationary),
            np.cumsum(self.unigram),
            np.cumsum(self.successor_weights),
        )

    @cached_property
    def _table(self) -> np.ndarray:
        """[words, max_length + 1] uint8: each word's symbols, then a space, then padding."""
        cfg = self.config
        table = np.full((cfg.words, cfg.max_length + 1), _PAD, dtype=np.uint8)
        cols = np.arange(cfg.max_length + 1)[None, :]
        table[cols < self.lengths[:, None]] = self.spelling[cols[:, :-1] < self.lengths[:, None]]
        table[cols == self.lengths[:, None]] = 0
        return table

    def _block(self, rng: np.random.Generator, previous: int) -> np.ndarray:
        """The next `_BLOCK_WORDS` word ids of a stream whose last word was `previous`."""
        w = self.config.collocation_weight
        _, unigram_cdf, successor_cdf = self._cdfs
        u = rng.random((3, _BLOCK_WORDS))
        flagged = u[0] < w
        words = np.empty(_BLOCK_WORDS + 1, dtype=np.int64)
        words[0] = previous
        words[1:] = _sample(unigram_cdf, u[1])
        slot = _sample(successor_cdf, u[2])
        resolved = np.ones(_BLOCK_WORDS + 1, dtype=bool)
        pending = np.flatnonzero(flagged) + 1
        resolved[pending] = False
        while len(pending):
            ready = pending[resolved[pending - 1]]
            words[ready] = self.successors[words[ready - 1], slot[ready - 1]]
            resolved[ready] = True
            pending = pending[~resolved[pending]]
        return words[1:]

    def _blocks(self, stream: int) -> Iterator[np.ndarray]:
        """Text stream `stream` as word-id blocks: one word drawn from pi, then fixed blocks."""
        rng = _rng(self.config.seed, _STREAM_TAG, stream)
        stationary_cdf, _, _ = self._cdfs
        block = _sample(stationary_cdf, rng.random(1))
        while True:
            yield block
            block = self._block(rng, int(block[-1]))

    def words(self, n_words: int, stream: int = 0) -> np.ndarray:
        """The first `n_words` word ids of text stream `stream`: `generate` spells these."""
        parts, have = [], 0
        blocks = self._blocks(stream)
        while have < n_words:
            parts.append(next(blocks))
            have += len(parts[-1])
        return np.concatenate(parts)[:n_words] if parts else np.empty(0, dtype=np.int64)

    def spell(self, words: np.ndarray) -> np.ndarray:
        """Word ids -> uint8 symbol ids, each word followed by a space."""
        spelled = self._table[words].ravel()
        return spelled[spelled != _PAD]

    def generate(self, n_symbols: int, stream: int = 0) -> np.ndarray:
        """The first `n_symbols` symbol ids (uint8, 0..63) of text stream `stream`.

        Stream 0 is the training text and stream 1 the held-out text; any other stream is an
        independent sample of the same language. Words are generated one fixed-size block at a
        time, so a shorter request is always a prefix of a longer one.
        """
        parts, have = [], 0
        blocks = self._blocks(stream)
        while have < n_symbols:
            parts.append(self.spell(next(blocks)))
            have += len(parts[-1])
        return np.concatenate(parts)[:n_symbols] if parts else np.empty(0, dtype=np.uint8)

    def decode(self, ids: np.ndarray) -> str:
        """Symbol ids -> text."""
        return _ALPHABET_BYTES[np.asarray(ids, dtype=np.uint8)].tobytes().decode("ascii")


_ALPHABET_BYTES = np.frombuffer(ALPHABET.encode("ascii"), dtype=np.uint8)
