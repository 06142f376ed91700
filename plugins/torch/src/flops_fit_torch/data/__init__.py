"""The data pipeline of the `local` trainer: text -> tokens -> cached memmaps -> batches.

Three sources (a synthetic language with a known entropy rate, local files, a Hugging Face hub
dataset), three tokenizers (the synthetic symbols, UTF-8 bytes, a byte-level BPE trained
locally), one cache keyed by a content fingerprint, and batches that are a pure function of
(seed, step). Nothing here imports torch, and `datasets` / `tokenizers` are imported only when
text is actually loaded or BPE is used, so importing this package is cheap.
"""

from .batches import Batches, eval_windows
from .config import ALPHABET, DataConfig, SyntheticConfig
from .prepare import TokenData, prepare_data
from .synthetic import SyntheticLanguage
from .tokenizers import BpeTokenizer, ByteTokenizer, SymbolTokenizer, Tokenizer

__all__ = [
    "ALPHABET",
    "Batches",
    "BpeTokenizer",
    "ByteTokenizer",
    "DataConfig",
    "SymbolTokenizer",
    "SyntheticConfig",
    "SyntheticLanguage",
    "TokenData",
    "Tokenizer",
    "eval_windows",
    "prepare_data",
]
