"""The data options of the `local` trainer: where text comes from and how it becomes tokens.

Both models are strict and frozen like every `PluginConfig`, and they go further: an option that
the chosen source or tokenizer would ignore (a hub `name` with `source = "files"`, a
`bpe_vocab_size` with the byte tokenizer) is an error, not a silent no-op. Validators raise
`ValueError`, which `flops_fit_core.schemas.parse_model` turns into a one-line `ConfigError`.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from flops_fit_core import PluginConfig

__all__ = ["ALPHABET", "DataConfig", "SyntheticConfig"]

#: The synthetic language's 64 symbols: id 0 is the word separator (a space), ids 1..63 are
#: the letters words are spelled with. Every symbol is one ASCII byte, so one symbol is one byte.
ALPHABET = " abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-"

#: Longest synthetic word: a word is keyed as an integer in base 64, which must fit in int64.
MAX_WORD_LENGTH = 10


class SyntheticConfig(PluginConfig):
    """A Markov chain over a random lexicon, spelled out in 64 symbols (see `synthetic`).

    The defaults give an entropy rate of about 0.73 nats per symbol: low enough that a small
    model has a long way down, and structured on three levels (spelling, word frequencies,
    collocations among 16,384 x 8 word pairs) so that bigger models keep finding more to learn.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    words: int = Field(16_384, ge=2, le=1 << 22, description="size of the lexicon")
    min_length: int = Field(2, ge=1, le=MAX_WORD_LENGTH, description="shortest word (letters)")
    max_length: int = Field(8, ge=1, le=MAX_WORD_LENGTH, description="longest word (letters)")
    zipf: float = Field(
        1.1, gt=0, le=10, description="Zipf exponent of word frequencies and of successor weights"
    )
    successors: int = Field(8, ge=1, le=256, description="collocation successors of each word")
    collocation_weight: float = Field(
        0.5, ge=0, lt=1, description="probability that the next word is a collocation successor"
    )
    tokens: int = Field(1 << 24, ge=1, description="training corpus length in symbols")
    seed: int = Field(0, ge=0, description="seeds the lexicon, the collocations and the text")

    @model_validator(mode="after")
    def _check(self) -> SyntheticConfig:
        if self.max_length < self.min_length:
            raise ValueError(
                f"synthetic.max_length ({self.max_length}) is below "
                f"synthetic.min_length ({self.min_length})"
            )
        letters = len(ALPHABET) - 1
        possible = sum(letters**n for n in range(self.min_length, self.max_length + 1))
        if self.words > possible // 2:
            raise ValueError(
                f"synthetic.words = {self.words} is too many for words of "
                f"{self.min_length}..{self.max_length} letters (at most {possible // 2})"
            )
        if self.successors > self.words:
            raise ValueError(
                f"synthetic.successors ({self.successors}) exceeds synthetic.words ({self.words})"
            )
        return self


#: The options each source reads. Any other source option must keep its default: a value that
#: nothing would read is a mistake. (Defaults, not "was it given": a resolved config records
#: every option, and it must parse again.)
_SOURCE_ONLY = {
    "synthetic": {"synthetic"},
    "files": {"files", "text_field", "split", "max_documents"},
    "hub": {"name", "config_name", "text_field", "split", "eval_split", "max_documents"},
}
_SOURCE_FIELDS = set().union(*_SOURCE_ONLY.values())


def _is_default(model: PluginConfig, name: str) -> bool:
    """Whether option `name` of `model` has its default value."""
    field = type(model).model_fields[name]
    return getattr(model, name) == field.get_default(call_default_factory=True)


class DataConfig(PluginConfig):
    """Where the text comes from, how it is tokenized, and how much is held out for evaluation.

    `source = "synthetic"` (the default) needs no network and no files and has a known entropy
    rate, the floor any model's loss can reach. `"files"` reads local text, JSON Lines or Parquet
    files; `"hub"` reads a Hugging Face dataset by name. Both go through `datasets.load_dataset`.
    The held-out set is `eval_split` when given, otherwise the last `eval_tokens` tokens of the
    tokenized corpus, which training never sees.
    """

    source: Literal["synthetic", "files", "hub"] = "synthetic"
    name: str | None = Field(None, min_length=1, description="hub dataset, e.g. 'roneneldan/...'")
    config_name: str | None = Field(None, min_length=1, description="hub dataset configuration")
    files: tuple[str, ...] | None = Field(
        None, min_length=1, description="local .txt/.text, .json/.jsonl or .parquet paths or globs"
    )
    text_field: str = Field("text", min_length=1, description="column holding the documents")
    split: str = Field("train", min_length=1, description="split the training text comes from")
    eval_split: str | None = Field(
        None, min_length=1, description="hub split to evaluate on; None = carve off the corpus end"
    )
    max_documents: int | None = Field(None, ge=1, description="use only the first N documents")
    tokenizer: Literal["auto", "symbols", "byte", "bpe"] = Field(
        "auto", description="auto = 'symbols' for synthetic text, 'byte' otherwise"
    )
    bpe_vocab_size: int = Field(4096, ge=260, le=1 << 20, description="vocabulary of BPE")
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)
    eval_tokens: int = Field(65_536, ge=1024, description="length of the held-out set in tokens")
    cache_dir: str | None = Field(
        None,
        min_length=1,
        description="None = $FLOPS_FIT_CACHE, else $XDG_CACHE_HOME/flops-fit, else ~/.cache/...",
    )

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        changed = {
            name for name in _SOURCE_FIELDS | {"bpe_vocab_size"} if not _is_default(self, name)
        }
        stray = sorted((_SOURCE_FIELDS - _SOURCE_ONLY[self.source]) & changed)
        if stray:
            raise ValueError(f"{stray[0]!r} does not apply to source = {self.source!r}")
        if self.source == "hub" and self.name is None:
            raise ValueError("source = 'hub' needs 'name' (e.g. 'roneneldan/TinyStories')")
        if self.source == "files" and self.files is None:
            raise ValueError("source = 'files' needs 'files' (paths or globs)")
        if self.source == "files" and not re.fullmatch(r"train(\[[^\]]*\])?", self.split):
            raise ValueError(
                f"split = {self.split!r} does not exist for source = 'files': local files are "
                "one split, 'train' (a slice such as 'train[:90%]' works too)"
            )
        if self.tokenizer == "symbols" and self.source != "synthetic":
            raise ValueError("tokenizer = 'symbols' only applies to source = 'synthetic'")
        if "bpe_vocab_size" in changed and self.tokenizer != "bpe":
            raise ValueError("'bpe_vocab_size' only applies to tokenizer = 'bpe'")
        return self

    @property
    def tokenizer_kind(self) -> Literal["symbols", "byte", "bpe"]:
        """The tokenizer actually used: `auto` resolved against the source."""
        if self.tokenizer == "auto":
            return "symbols" if self.source == "synthetic" else "byte"
        return self.tokenizer

    @property
    def vocab_size(self) -> int:
        """The tokenizer's vocabulary, known without building it (BPE: the configured size,
        which every id it learns stays below)."""
        kind = self.tokenizer_kind
        if kind == "symbols":
            return len(ALPHABET)
        return 256 if kind == "byte" else self.bpe_vocab_size
