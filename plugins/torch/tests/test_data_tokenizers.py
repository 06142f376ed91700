"""Tokenizers are lossless, count bytes right, and BPE is trained once and then reloaded."""

from __future__ import annotations

import numpy as np
import pytest

from flops_fit_core import InputError
from flops_fit_torch.data import (
    ALPHABET,
    BpeTokenizer,
    ByteTokenizer,
    SymbolTokenizer,
    Tokenizer,
)

TEXT = (
    "Once upon a time, a little fox found a shiny stone.\n"
    "The fox showed the stone to a bird. The bird said: «how pretty!»\n"
    "Naïve café owners — 日本語 too — keep bytes honest.\n"
) * 40


def test_symbol_tokenizer_round_trip():
    tokenizer = SymbolTokenizer()
    ids = tokenizer.encode(ALPHABET + " ab-9Z")
    assert ids.dtype == np.uint8 and ids.max() == len(ALPHABET) - 1
    assert tokenizer.decode(ids) == ALPHABET + " ab-9Z"
    assert tokenizer.vocab_size == 64
    with pytest.raises(InputError, match="not in the synthetic alphabet"):
        tokenizer.encode("a.b")


def test_symbol_to_bytes_is_ascii():
    tokenizer = SymbolTokenizer()
    ids = tokenizer.encode("xY 7-")
    assert tokenizer.to_bytes(ids).tobytes() == b"xY 7-"


def test_byte_tokenizer_round_trip_and_byte_counts():
    tokenizer = ByteTokenizer()
    ids = tokenizer.encode(TEXT)
    assert tokenizer.vocab_size == 256
    assert tokenizer.decode(ids) == TEXT
    assert len(ids) == len(TEXT.encode("utf-8"))
    assert tokenizer.token_bytes()[ids].sum() == len(ids)
    assert np.array_equal(tokenizer.encode_batch(["ab", "c"]), tokenizer.encode("abc"))


def test_all_tokenizers_satisfy_the_protocol(tmp_path):
    bpe = BpeTokenizer.train([TEXT], 300)
    for tokenizer in (SymbolTokenizer(), ByteTokenizer(), bpe):
        assert isinstance(tokenizer, Tokenizer)
        assert tokenizer.to_dict()["name"] == tokenizer.name


def test_bpe_trains_round_trips_and_respects_vocab_size():
    bpe = BpeTokenizer.train(TEXT.splitlines(keepends=True), 300)
    ids = bpe.encode(TEXT)
    assert bpe.vocab_size == 300
    assert ids.max() < 300
    assert len(ids) < len(TEXT.encode("utf-8"))  # merges were learned
    assert bpe.decode(ids) == TEXT
    assert bpe.token_bytes()[ids].sum() == len(TEXT.encode("utf-8"))
    unseen = "zebra quartz — ünseen ✓"
    assert bpe.decode(bpe.encode(unseen)) == unseen  # byte-level: nothing is out of vocabulary


def test_bpe_on_small_text_learns_fewer_merges_but_keeps_the_configured_size():
    bpe = BpeTokenizer.train(["tiny text"], 4096)
    assert bpe.vocab_size == 4096
    assert bpe.encode("tiny text").max() < 4096


def test_bpe_is_saved_then_reloaded_without_retraining(tmp_path, monkeypatch):
    path = tmp_path / "bpe" / "tokenizer.json"
    calls = []
    first = BpeTokenizer.cached(path, 300, lambda: calls.append(1) or [TEXT])
    assert calls == [1] and path.is_file()
    mtime = path.stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("retrained a cached tokenizer")

    monkeypatch.setattr(BpeTokenizer, "train", no_training)
    second = BpeTokenizer.cached(path, 300, lambda: calls.append(2) or [TEXT])
    assert calls == [1]
    assert path.stat().st_mtime_ns == mtime
    assert second.to_dict() == first.to_dict()
    assert np.array_equal(second.encode(TEXT), first.encode(TEXT))


def test_unreadable_bpe_file_is_an_input_error(tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text("{not json")
    with pytest.raises(InputError, match="cannot read BPE tokenizer"):
        BpeTokenizer.load(path, 300)
