"""`prepare_data`: a `DataConfig` in, cached train and held-out token arrays out.

The first call for a configuration tokenizes (and, for BPE, first trains the tokenizer) and
writes the cache; every later call, from any process, only memory-maps it. Every run of a study
therefore trains on the same tokens and is evaluated on the same held-out tokens, which is what
makes their losses comparable.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flops_fit_core import InputError

from .cache import (
    CACHE_FORMAT,
    TokenWriter,
    build_cache,
    default_cache_dir,
    fingerprint,
    open_cache,
    token_dtype,
)
from .config import DataConfig
from .sources import load_documents, source_identity, text_batches
from .synthetic import SyntheticLanguage
from .tokenizers import BpeTokenizer, ByteTokenizer, SymbolTokenizer, Tokenizer

__all__ = ["TokenData", "prepare_data"]

log = logging.getLogger(__name__)

#: Synthetic text reaches BPE training in pieces of about this many symbols, cut before spaces,
_TRAIN_PIECE = 1 << 16
#: and BPE encoding in smaller pieces, which `encode_batch` spreads over the library's threads.
_ENCODE_PIECE = 1 << 10


@dataclass(frozen=True, eq=False)
class TokenData:
    """A study's tokens: what the trainer samples from and evaluates on, and what it records."""

    train: np.ndarray
    """1-D read-only memmap of training token ids."""
    eval: np.ndarray
    """1-D read-only memmap: the fixed held-out set shared by every run of a study."""
    vocab_size: int
    bytes_per_token: float
    """UTF-8 bytes per token on the held-out set: loss / ln 2 / this = bits per byte."""
    entropy_rate: float | None
    """Synthetic text only: the entropy rate in nats per token, the floor under any loss.

    Exact for the symbol and byte tokenizers (one token is one symbol); for BPE it is the exact
    rate per symbol times the held-out set's symbols per token.
    """
    fingerprint: str
    description: dict[str, Any]
    """Source, tokenizer and sizes, as JSON-able data: what a result records about its data."""
    directory: Path
    """The cache directory holding the token files, `meta.json` and any `tokenizer.json`."""

    def tokenizer(self) -> Tokenizer:
        """The tokenizer these tokens were made with, e.g. to decode samples."""
        name = self.description["tokenizer"]["name"]
        if name == "symbols":
            return SymbolTokenizer()
        if name == "byte":
            return ByteTokenizer()
        return BpeTokenizer.load(self.directory / "tokenizer.json", self.vocab_size)


def cache_root(config: DataConfig) -> Path:
    """The cache directory a config uses: its `cache_dir`, else the environment's default."""
    if config.cache_dir is not None:
        return Path(config.cache_dir).expanduser().resolve()
    return default_cache_dir()


def prepare_data(config: DataConfig) -> TokenData:
    """The tokens of `config`, from the cache, building it on first use (idempotent).

    Raises `InputError` for unusable input: a missing or unsupported file, a missing text
    field, an empty data set, or a corpus too small to hold out `eval_tokens` tokens.
    """
    root = cache_root(config)
    identity = source_identity(config)
    kind = config.tokenizer_kind
    key = {
        "format": CACHE_FORMAT,
        "source": identity,
        "tokenizer": {"name": kind, "vocab_size": config.bpe_vocab_size if kind == "bpe" else None},
        "eval_tokens": config.eval_tokens,
    }
    digest = fingerprint(key)
    cached = open_cache(root / digest, digest)
    if cached is None:
        log.info("building token cache %s", root / digest)
        cached = build_cache(root, digest, lambda tmp: _build(config, identity, root, tmp))
    meta = cached.meta
    return TokenData(
        train=cached.train,
        eval=cached.eval,
        vocab_size=int(meta["vocab_size"]),
        bytes_per_token=float(meta["bytes_per_token"]),
        entropy_rate=meta["entropy_rate"],
        fingerprint=digest,
        description=meta["description"],
        directory=cached.directory,
    )


def _bpe(config: DataConfig, identity: dict[str, Any], root: Path, texts: Any) -> BpeTokenizer:
    """The BPE tokenizer for this source: from `root/bpe/<key>/`, or trained and saved there."""
    key = fingerprint({"format": CACHE_FORMAT, "source": identity, "vocab": config.bpe_vocab_size})
    return BpeTokenizer.cached(root / "bpe" / key / "tokenizer.json", config.bpe_vocab_size, texts)


def _build(config: DataConfig, identity: dict[str, Any], root: Path, tmp: Path) -> dict[str, Any]:
    """Write train.bin and eval.bin into `tmp`; return the meta."""
    if config.source == "synthetic":
        tokenizer, extra = _build_synthetic(config, identity, root, tmp)
    else:
        tokenizer, extra = _build_documents(config, identity, root, tmp)
    if isinstance(tokenizer, BpeTokenizer):
        tokenizer.save(tmp / "tokenizer.json")
    held_out = np.fromfile(tmp / "eval.bin", dtype=extra.pop("dtype"))
    train_tokens = (tmp / "train.bin").stat().st_size // held_out.dtype.itemsize
    bytes_per_token = float(tokenizer.token_bytes()[held_out].sum()) / len(held_out)
    rate = extra.pop("entropy_rate_per_symbol", None)
    description = {
        "source": identity,
        "tokenizer": tokenizer.to_dict(),
        "train_tokens": int(train_tokens),
        "eval_tokens": len(held_out),
        **extra,
    }
    return {
        "dtype": held_out.dtype.name,
        "train_tokens": int(train_tokens),
        "eval_tokens": len(held_out),
        "vocab_size": tokenizer.vocab_size,
        "bytes_per_token": bytes_per_token,
        # one symbol is one byte, so nats per token = nats per symbol * symbols per token
        "entropy_rate": None if rate is None else rate * bytes_per_token,
        "description": description,
    }


def _space_chunks(text: str, size: int) -> Iterator[str]:
    """`text` in pieces of about `size` characters, each cut just before a space.

    Byte-level BPE pre-tokenizes " word" as one piece, so cutting before a space tokenizes the
    pieces exactly as the whole text would be; it also bounds the memory of one encode call.
    """
    start = 0
    while start < len(text):
        end = start + size
        if end < len(text):
            space = text.rfind(" ", start + 1, end)
            end = space if space > start else end
        yield text[start:end]
        start = end


def _build_synthetic(
    config: DataConfig, identity: dict[str, Any], root: Path, tmp: Path
) -> tuple[Tokenizer, dict[str, Any]]:
    """Training text is stream 0 of the language, held-out text stream 1."""
    language = SyntheticLanguage(config.synthetic)
    symbols = SymbolTokenizer()
    kind = config.tokenizer_kind
    train = language.generate(config.synthetic.tokens, stream=0)
    extra = {"entropy_rate_per_symbol": language.entropy_rate(), "eval": "stream 1"}
    tokenizer: Tokenizer
    if kind == "bpe":
        text = language.decode(train)
        tokenizer = _bpe(config, identity, root, lambda: _space_chunks(text, _TRAIN_PIECE))
        train_ids = tokenizer.encode_batch(list(_space_chunks(text, _ENCODE_PIECE)))
        # a token never spans more than one word and its space, so this is always enough text
        longest = config.synthetic.max_length + 1
        eval_text = language.decode(language.generate(config.eval_tokens * longest, stream=1))
        eval_ids = tokenizer.encode_batch(list(_space_chunks(eval_text, _ENCODE_PIECE)))
        eval_ids = eval_ids[: config.eval_tokens]
    else:
        tokenizer = symbols if kind == "symbols" else ByteTokenizer()
        held_out = language.generate(config.eval_tokens, stream=1)
        convert = (lambda ids: ids) if kind == "symbols" else symbols.to_bytes
        train_ids, eval_ids = convert(train), convert(held_out)
    for name, ids in (("train", train_ids), ("eval", eval_ids)):
        with TokenWriter(tmp / f"{name}.bin", tokenizer.vocab_size) as writer:
            writer.write(ids)
    extra["dtype"] = token_dtype(tokenizer.vocab_size)
    return tokenizer, extra


def _build_documents(
    config: DataConfig, identity: dict[str, Any], root: Path, tmp: Path
) -> tuple[Tokenizer, dict[str, Any]]:
    """Tokenize the documents of `split`; hold out `eval_split` or the corpus's last tokens."""
    documents = load_documents(config, config.split, cache_dir=root / "datasets")
    field = config.text_field
    tokenizer: Tokenizer
    if config.tokenizer_kind == "bpe":

        def texts() -> Iterator[str]:
            for batch in text_batches(documents, field):
                yield from batch

        tokenizer = _bpe(config, identity, root, texts)
    else:
        tokenizer = ByteTokenizer()
    with TokenWriter(tmp / "train.bin", tokenizer.vocab_size) as writer:
        for batch in text_batches(documents, field):
            writer.write(tokenizer.encode_batch(batch))
    total, dtype = writer.count, writer.dtype
    extra: dict[str, Any] = {"documents": len(documents), "dtype": dtype}

    if config.eval_split is not None:
        held_out_docs = load_documents(config, config.eval_split, limit=False)
        with TokenWriter(tmp / "eval.bin", tokenizer.vocab_size) as writer:
            for batch in text_batches(held_out_docs, field):
                ids = tokenizer.encode_batch(batch)[: config.eval_tokens - writer.count]
                writer.write(ids)
                if writer.count >= config.eval_tokens:
                    break
        extra["eval"] = f"split {config.eval_split!r}"
        return tokenizer, extra

    if total <= config.eval_tokens:
        raise InputError(
            f"corpus has {total} tokens, too few to hold out eval_tokens = {config.eval_tokens} "
            "and train on the rest (lower eval_tokens or add data)"
        )
    keep = total - config.eval_tokens
    tail = np.fromfile(tmp / "train.bin", dtype=dtype, offset=keep * dtype.itemsize)
    with TokenWriter(tmp / "eval.bin", tokenizer.vocab_size) as writer:
        writer.write(tail)
    with (tmp / "train.bin").open("r+b") as handle:
        handle.truncate(keep * dtype.itemsize)
        os.fsync(handle.fileno())
    extra["eval"] = f"last {config.eval_tokens} tokens of split {config.split!r}"
    return tokenizer, extra
