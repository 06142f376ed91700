"""The synthetic language: its entropy rate is exact, its text deterministic and well formed."""

from __future__ import annotations

import numpy as np
import pytest

from flops_fit_torch.data import ALPHABET, SyntheticConfig, SyntheticLanguage

SMALL = SyntheticConfig(words=512, tokens=1 << 16)


@pytest.fixture(scope="module")
def small() -> SyntheticLanguage:
    return SyntheticLanguage(SMALL)


def dense_chain(language: SyntheticLanguage) -> np.ndarray:
    """P[i, j] written out term by term, independently of the vectorized code."""
    cfg = language.config
    ranks = np.arange(1, cfg.words + 1, dtype=float)
    zipf = ranks**-cfg.zipf / (ranks**-cfg.zipf).sum()
    slots = np.arange(1, cfg.successors + 1, dtype=float)
    weights = slots**-cfg.zipf / (slots**-cfg.zipf).sum()
    chain = np.tile((1 - cfg.collocation_weight) * zipf, (cfg.words, 1))
    for i in range(cfg.words):
        for k in range(cfg.successors):
            chain[i, language.successors[i, k]] += cfg.collocation_weight * weights[k]
    return chain


@pytest.mark.parametrize("weight", [0.0, 0.3, 0.7])
def test_entropy_rate_matches_brute_force_on_a_tiny_language(weight):
    cfg = SyntheticConfig(words=20, successors=3, collocation_weight=weight, zipf=1.3, seed=4)
    language = SyntheticLanguage(cfg)
    chain = dense_chain(language)
    np.testing.assert_allclose(chain.sum(axis=1), 1.0, rtol=1e-12)

    values, vectors = np.linalg.eig(chain.T)
    pi = np.real(vectors[:, np.argmin(np.abs(values - 1))])
    pi /= pi.sum()
    rows = -(chain * np.log(chain)).sum(axis=1)
    expected = (pi @ rows) / (pi @ (language.lengths + 1))

    np.testing.assert_allclose(language.stationary, pi, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(language.row_entropy, rows, rtol=1e-12)
    assert language.entropy_rate() == pytest.approx(expected, rel=1e-10)
    i, j = np.meshgrid(np.arange(20), np.arange(20), indexing="ij")
    np.testing.assert_allclose(language.next_word_probability(i, j), chain, rtol=1e-12)


def test_true_model_log_loss_on_generated_text_equals_the_entropy_rate():
    language = SyntheticLanguage(SyntheticConfig(words=2048, tokens=1 << 16, seed=3))
    words = language.words(400_000, stream=5)
    log_loss = -np.log(language.next_word_probability(words[:-1], words[1:])).sum()
    symbols = (language.lengths[words[1:]] + 1).sum()
    assert log_loss / symbols == pytest.approx(language.entropy_rate(), rel=0.01)


def test_default_entropy_rate_is_in_range():
    language = SyntheticLanguage()
    rate = language.entropy_rate()
    print(f"default synthetic entropy rate: {rate:.4f} nats/symbol")
    assert 0.6 <= rate <= 0.9
    assert language.stationary.sum() == pytest.approx(1.0, abs=1e-12)


def test_generation_is_deterministic_and_seeded(small):
    again = SyntheticLanguage(SMALL)
    text = small.generate(50_000)
    assert text.dtype == np.uint8 and len(text) == 50_000
    assert np.array_equal(text, again.generate(50_000))
    assert not np.array_equal(text, small.generate(50_000, stream=1))
    other = SyntheticLanguage(SMALL.model_copy(update={"seed": 1}))
    assert not np.array_equal(text, other.generate(50_000))


def test_shorter_text_is_a_prefix_of_longer_text(small):
    long = small.generate(700_000)  # spans several generation blocks
    assert np.array_equal(small.generate(1234), long[:1234])
    assert len(small.generate(0)) == 0


def test_text_is_lexicon_words_separated_by_single_spaces(small):
    ids = small.generate(20_000)
    assert ids.max() < len(ALPHABET)
    text = small.decode(ids)
    assert set(text) <= set(ALPHABET)
    lexicon = {small.decode(small.spelling[i, : small.lengths[i]]) for i in range(512)}
    assert len(lexicon) == 512
    words = text.split(" ")[:-1]  # the last word may be cut off
    assert "" not in words
    assert set(words) <= lexicon
    assert all(2 <= len(w) <= 8 for w in lexicon)


def test_words_and_generate_agree(small):
    words = small.words(1000, stream=2)
    spelled = small.spell(words)
    assert np.array_equal(spelled, small.generate(len(spelled), stream=2))


def test_word_frequencies_follow_the_stationary_law(small):
    words = small.words(300_000)
    empirical = np.bincount(words, minlength=512) / len(words)
    assert 0.5 * np.abs(empirical - small.stationary).sum() < 0.02
    top = np.argsort(small.stationary)[-5:]
    np.testing.assert_allclose(empirical[top], small.stationary[top], rtol=0.05)


def test_successors_are_distinct_and_weighted():
    language = SyntheticLanguage(SyntheticConfig(words=64, successors=8, seed=2))
    assert all(len(set(row)) == 8 for row in language.successors.tolist())
    assert language.successor_weights[0] > language.successor_weights[-1]
    assert language.successor_weights.sum() == pytest.approx(1.0)
