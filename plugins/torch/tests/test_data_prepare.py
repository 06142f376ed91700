"""`prepare_data` on synthetic text: the streams, the tokenizers, the entropy per token."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from flops_fit_torch.data import DataConfig, SyntheticLanguage, prepare_data
from flops_fit_torch.data.prepare import _space_chunks

SYNTHETIC = {"words": 512, "tokens": 1 << 16}


def test_space_chunks_cut_before_spaces():
    text = "ab cde f ghij k" * 10
    pieces = list(_space_chunks(text, 7))
    assert "".join(pieces) == text
    assert all(piece.startswith(" ") for piece in pieces[1:])
    assert list(_space_chunks("nospaceshere", 4)) == ["nosp", "aces", "here"]


def config(tmp_path, **options) -> DataConfig:
    options.setdefault("eval_tokens", 4096)
    return DataConfig(cache_dir=str(tmp_path), synthetic=SYNTHETIC, **options)


def test_synthetic_symbols(tmp_path):
    data = prepare_data(config(tmp_path))
    language = SyntheticLanguage(config(tmp_path).synthetic)
    np.testing.assert_array_equal(data.train, language.generate(1 << 16, stream=0))
    np.testing.assert_array_equal(data.eval, language.generate(4096, stream=1))
    assert data.vocab_size == 64 and data.train.dtype == np.uint8
    assert data.bytes_per_token == 1.0
    assert data.entropy_rate == pytest.approx(language.entropy_rate())
    assert data.description["tokenizer"]["name"] == "symbols"
    assert data.description["source"]["kind"] == "synthetic"
    assert data.description["eval"] == "stream 1"
    assert data.tokenizer().decode(data.eval[:20]) == language.decode(data.eval[:20])


def test_synthetic_bytes_are_the_ascii_of_the_symbols(tmp_path):
    symbols = prepare_data(config(tmp_path))
    data = prepare_data(config(tmp_path, tokenizer="byte"))
    assert data.fingerprint != symbols.fingerprint
    assert data.vocab_size == 256 and data.bytes_per_token == 1.0
    assert data.train.tobytes().decode("ascii") == symbols.tokenizer().decode(symbols.train)
    assert data.entropy_rate == symbols.entropy_rate


def test_synthetic_bpe_entropy_is_per_token(tmp_path):
    data = prepare_data(config(tmp_path, tokenizer="bpe", bpe_vocab_size=1024))
    language = SyntheticLanguage(config(tmp_path).synthetic)
    assert data.vocab_size == 1024 and data.train.dtype == np.uint16
    assert len(data.eval) == 4096
    assert data.bytes_per_token > 2
    assert data.entropy_rate == pytest.approx(language.entropy_rate() * data.bytes_per_token)
    tokenizer = data.tokenizer()
    text = language.decode(language.generate(1 << 16))
    assert tokenizer.decode(data.train) == text
    assert len(data.train) < len(text)
    assert (data.directory / "tokenizer.json").is_file()
    whole = tokenizer.encode(text)  # pieces are cut so that they tokenize like the whole text
    np.testing.assert_array_equal(data.train, whole)


def test_prepare_is_idempotent(tmp_path):
    first = prepare_data(config(tmp_path))
    second = prepare_data(config(tmp_path))
    assert first.fingerprint == second.fingerprint
    np.testing.assert_array_equal(first.train, second.train)
    assert prepare_data(config(tmp_path, eval_tokens=2048)).fingerprint != first.fingerprint


def test_importing_the_package_stays_light():
    code = (
        "import sys, flops_fit_torch.data; "
        "print(sorted(m for m in ('torch', 'datasets', 'tokenizers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
