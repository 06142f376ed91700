"""`DataConfig` rejects what nothing would consume, in one `ConfigError` line."""

from __future__ import annotations

import pytest

from flops_fit_core import ConfigError
from flops_fit_core.schemas import parse_model
from flops_fit_torch.data import DataConfig, SyntheticConfig


def parse(**data):
    return parse_model(DataConfig, data, "trainer 'local' data")


def test_defaults_are_synthetic_symbols():
    config = parse()
    assert config.source == "synthetic"
    assert config.tokenizer_kind == "symbols"
    assert config.synthetic == SyntheticConfig()
    assert parse(source="files", files=["a.txt"]).tokenizer_kind == "byte"
    assert parse(source="hub", name="x/y").tokenizer_kind == "byte"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"source": "hub"}, "needs 'name'"),
        ({"source": "files"}, "needs 'files'"),
        ({"source": "files", "files": ["a.txt"], "tokenizer": "symbols"}, "only applies"),
        ({"name": "x/y"}, "'name' does not apply to source = 'synthetic'"),
        ({"source": "hub", "name": "x/y", "files": ["a.txt"]}, "'files' does not apply"),
        ({"source": "files", "files": ["a.txt"], "eval_split": "test"}, "'eval_split'"),
        ({"source": "hub", "name": "x", "synthetic": {"words": 64}}, "'synthetic' does not"),
        ({"bpe_vocab_size": 1000}, "only applies to tokenizer = 'bpe'"),
        ({"tokenizer": "bpe", "bpe_vocab_size": 100}, "bpe_vocab_size"),
        ({"eval_tokens": 10}, "eval_tokens"),
        ({"synthetic": {"min_length": 5, "max_length": 3}}, "below"),
        ({"synthetic": {"words": 5000, "min_length": 2, "max_length": 2}}, "too many"),
        ({"synthetic": {"collocation_weight": 1.0}}, "collocation_weight"),
        ({"synthetic": {"wrods": 10}}, "wrods"),
        ({"sorce": "hub"}, "unknown key 'sorce'"),
    ],
)
def test_invalid_configs_are_one_line_config_errors(data, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse(**data)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"tokenizer": "bpe", "bpe_vocab_size": 8192, "synthetic": {"words": 1024}},
        {"source": "files", "files": ["a/*.jsonl"], "text_field": "story", "max_documents": 9},
        {"source": "hub", "name": "x/y", "config_name": "c", "eval_split": "validation"},
    ],
)
def test_a_full_dump_parses_again(data):
    """A resolved config records every option, defaults included; it must round-trip."""
    config = parse(**data)
    assert parse(**config.model_dump(mode="json", exclude_none=True)) == config
    assert parse(**config.model_dump(mode="json")) == config


def test_options_at_their_default_are_not_stray():
    assert parse(text_field="text", split="train", bpe_vocab_size=4096).source == "synthetic"
    parse(source="hub", name="x", synthetic={})


def test_config_is_frozen():
    config = parse()
    with pytest.raises(ValueError):
        config.source = "hub"  # type: ignore[misc]
