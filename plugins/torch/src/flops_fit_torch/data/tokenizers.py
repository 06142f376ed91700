"""Text <-> token ids: the synthetic alphabet, UTF-8 bytes, or a byte-level BPE trained locally.

Every tokenizer here is lossless (`decode(encode(text)) == text`) and knows how many UTF-8 bytes
each of its tokens stands for (`token_bytes`), which is what turns a loss in nats per token into
bits per byte, the only unit in which runs with different tokenizers compare. BPE is trained on
the study's own training text with the `tokenizers` library, never downloaded, so a study needs
no network; the trained tokenizer is saved as `tokenizer.json` and reused from then on. The
`tokenizers` library is imported only when BPE is used, so importing this module stays cheap.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from flops_fit_core import InputError, write_atomic

from .config import ALPHABET

__all__ = ["BpeTokenizer", "ByteTokenizer", "SymbolTokenizer", "Tokenizer"]


@runtime_checkable
class Tokenizer(Protocol):
    """What the data pipeline needs from a tokenizer."""

    name: str
    vocab_size: int

    def encode(self, text: str) -> np.ndarray:
        """Token ids of `text` (an unsigned integer array)."""
        ...

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        """Token ids of the texts, concatenated; each text is tokenized on its own."""
        ...

    def decode(self, ids: Iterable[int]) -> str:
        """Text of token ids."""
        ...

    def token_bytes(self) -> np.ndarray:
        """UTF-8 bytes each token id stands for, as an int64 array of length `vocab_size`."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able fingerprint: equal dicts tokenize every text identically."""
        ...


class SymbolTokenizer:
    """The synthetic language's 64 symbols, one id per ASCII character of `ALPHABET`."""

    name = "symbols"
    vocab_size = len(ALPHABET)

    def __init__(self) -> None:
        self._ids = np.full(256, -1, dtype=np.int16)
        self._ids[np.frombuffer(ALPHABET.encode("ascii"), dtype=np.uint8)] = np.arange(
            len(ALPHABET)
        )
        self._chars = np.frombuffer(ALPHABET.encode("ascii"), dtype=np.uint8)

    def encode(self, text: str) -> np.ndarray:
        raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        ids = self._ids[raw]
        if (ids < 0).any():
            bad = next(char for char in text if char not in ALPHABET)
            raise InputError(f"character {bad!r} is not in the synthetic alphabet")
        return ids.astype(np.uint8)

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        return self.encode("".join(texts))

    def decode(self, ids: Iterable[int]) -> str:
        return self._chars[np.asarray(ids, dtype=np.int64)].tobytes().decode("ascii")

    def to_bytes(self, ids: np.ndarray) -> np.ndarray:
        """Symbol ids -> their ASCII bytes, without a detour through `str`."""
        return self._chars[ids]

    def token_bytes(self) -> np.ndarray:
        return np.ones(self.vocab_size, dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "vocab_size": self.vocab_size, "alphabet": ALPHABET}


class ByteTokenizer:
    """UTF-8 bytes: 256 ids, no training, works on any text."""

    name = "byte"
    vocab_size = 256

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        return self.encode("".join(texts))

    def decode(self, ids: Iterable[int]) -> str:
        return np.asarray(ids, dtype=np.uint8).tobytes().decode("utf-8", errors="replace")

    def token_bytes(self) -> np.ndarray:
        return np.ones(self.vocab_size, dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "vocab_size": self.vocab_size}


class BpeTokenizer:
    """A byte-level BPE (GPT-2 style pre-tokenization, no prefix space, no special tokens).

    `vocab_size` is the configured size, which every id is below; on a small training text BPE
    may learn fewer merges, and then some ids are simply never used. Keeping the configured size
    means a model's shape never depends on what the tokenizer happened to learn.
    """

    name = "bpe"

    def __init__(self, tokenizer: Any, vocab_size: int):
        learned = tokenizer.get_vocab_size()
        if learned > vocab_size:
            raise InputError(f"BPE tokenizer has {learned} tokens, more than {vocab_size}")
        self._tokenizer = tokenizer
        self.vocab_size = vocab_size
        self._json = tokenizer.to_str()

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> BpeTokenizer:
        """Learn merges on `texts` until there are `vocab_size` tokens or no pair is left."""
        from tokenizers import Tokenizer as HfTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        tokenizer = HfTokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tokenizer.train_from_iterator(texts, trainer=trainer)
        return cls(tokenizer, vocab_size)

    @classmethod
    def load(cls, path: Path, vocab_size: int) -> BpeTokenizer:
        """Read a `tokenizer.json` written by `save`."""
        from tokenizers import Tokenizer as HfTokenizer

        try:
            return cls(HfTokenizer.from_file(str(path)), vocab_size)
        except Exception as exc:  # the library raises its own exception types
            raise InputError(f"cannot read BPE tokenizer {path}: {exc}") from None

    @classmethod
    def cached(
        cls, path: Path, vocab_size: int, texts: Callable[[], Iterable[str]]
    ) -> BpeTokenizer:
        """Load `path` if a tokenizer was saved there, else train on `texts()` and save it."""
        if path.is_file():
            return cls.load(path, vocab_size)
        tokenizer = cls.train(texts(), vocab_size)
        tokenizer.save(path)
        return tokenizer

    def save(self, path: Path) -> None:
        """Write `tokenizer.json` atomically: a reader sees the old file, the new one, or none."""
        write_atomic(path, self._json.encode("utf-8"))

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self._tokenizer.encode(text).ids, dtype=np.uint32)

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        encode = getattr(self._tokenizer, "encode_batch_fast", self._tokenizer.encode_batch)
        ids = [np.asarray(e.ids, dtype=np.uint32) for e in encode(texts)]
        return np.concatenate(ids) if ids else np.empty(0, dtype=np.uint32)

    def decode(self, ids: Iterable[int]) -> str:
        return self._tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)

    def token_bytes(self) -> np.ndarray:
        """Byte-level tokens are strings over a 256-character alphabet, one character a byte."""
        lengths = np.zeros(self.vocab_size, dtype=np.int64)
        for token, index in self._tokenizer.get_vocab().items():
            lengths[index] = len(token)
        return lengths

    def to_dict(self) -> dict[str, Any]:
        digest = hashlib.sha256(self._json.encode("utf-8")).hexdigest()
        return {"name": self.name, "vocab_size": self.vocab_size, "sha256": digest}
