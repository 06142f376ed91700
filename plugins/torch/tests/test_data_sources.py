"""Local files and hub datasets go through `datasets.load_dataset` and land in the cache."""

from __future__ import annotations

import json
import os
import time

import datasets
import numpy as np
import pytest

from flops_fit_core import InputError
from flops_fit_torch.data import BpeTokenizer, DataConfig, prepare_data
from flops_fit_torch.data.sources import resolve_files

LINES = [f"line {i:05d}: the quick brown fox jumps over the lazy dog." for i in range(2000)]
TEXT = "\n".join(LINES) + "\n"  # ~110 kB


@pytest.fixture
def spy(monkeypatch):
    """Record every `load_dataset` call while still running the real one."""
    calls = []
    real = datasets.load_dataset

    def load_dataset(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def files_config(tmp_path, *files, **options):
    return DataConfig(
        source="files",
        files=tuple(str(f) for f in files),
        cache_dir=str(tmp_path / "cache"),
        eval_tokens=options.pop("eval_tokens", 4096),
        **options,
    )


def test_text_file_train_and_eval_are_the_file_split_in_two(tmp_path, spy):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    data = prepare_data(files_config(tmp_path, path))
    assert spy[0][0] == ("text",) and spy[0][1]["data_files"] == [str(path.resolve())]
    assert spy[0][1]["split"] == "train"
    assert data.vocab_size == 256 and data.train.dtype == np.uint8
    assert len(data.eval) == 4096
    whole = np.concatenate([data.train, data.eval]).tobytes()
    assert whole == TEXT.encode()  # disjoint, in order, nothing lost
    assert data.bytes_per_token == 1.0
    assert data.entropy_rate is None
    assert data.description["tokenizer"]["name"] == "byte"
    assert data.description["source"]["files"][0]["path"] == str(path.resolve())
    assert data.description["train_tokens"] == len(data.train)


def test_second_prepare_is_a_cache_hit(tmp_path, spy):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    config = files_config(tmp_path, path)
    first = prepare_data(config)
    calls = len(spy)
    start = time.perf_counter()
    second = prepare_data(config)
    assert time.perf_counter() - start < 0.5
    assert len(spy) == calls  # nothing was loaded again
    assert second.fingerprint == first.fingerprint
    assert np.array_equal(second.train, first.train)
    assert np.array_equal(second.eval, first.eval)
    assert isinstance(second.train, np.memmap)


def test_editing_a_file_changes_the_fingerprint(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    first = prepare_data(files_config(tmp_path, path))
    path.write_text(TEXT + "one more line\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    second = prepare_data(files_config(tmp_path, path))
    assert second.fingerprint != first.fingerprint
    assert len(second.train) == len(first.train) + len("one more line\n")


def test_jsonl_with_a_custom_text_field(tmp_path, spy):
    path = tmp_path / "stories.jsonl"
    path.write_text(
        "".join(json.dumps({"id": i, "story": line}) + "\n" for i, line in enumerate(LINES))
    )
    data = prepare_data(files_config(tmp_path, path, text_field="story", max_documents=1500))
    assert spy[0][0] == ("json",)
    assert data.description["documents"] == 1500
    whole = np.concatenate([data.train, data.eval]).tobytes().decode()
    assert whole == "\n".join(LINES[:1500]) + "\n"


def test_parquet_and_globs(tmp_path, spy):
    for part in range(2):
        rows = LINES[part * 1000 : (part + 1) * 1000]
        datasets.Dataset.from_dict({"text": rows}).to_parquet(str(tmp_path / f"part{part}.parquet"))
    data = prepare_data(files_config(tmp_path, tmp_path / "part*.parquet"))
    assert spy[0][0] == ("parquet",)
    assert len(spy[0][1]["data_files"]) == 2
    assert np.concatenate([data.train, data.eval]).tobytes() == TEXT.encode()


def test_bpe_on_files(tmp_path, monkeypatch):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    data = prepare_data(files_config(tmp_path, path, tokenizer="bpe", bpe_vocab_size=300))
    assert data.vocab_size == 300 and data.train.dtype == np.uint16
    assert data.bytes_per_token > 1.5
    tokenizer = data.tokenizer()
    assert tokenizer.decode(np.concatenate([data.train, data.eval])) == TEXT

    # another eval size is a new token cache, but the tokenizer is not trained again
    def no_training(*args, **kwargs):
        raise AssertionError("the cached BPE tokenizer was trained again")

    monkeypatch.setattr(BpeTokenizer, "train", no_training)
    other = prepare_data(
        files_config(tmp_path, path, tokenizer="bpe", bpe_vocab_size=300, eval_tokens=2048)
    )
    assert other.fingerprint != data.fingerprint
    assert other.description["tokenizer"] == data.description["tokenizer"]


def test_missing_file_names_it(tmp_path):
    with pytest.raises(InputError, match=r"data file not found: '.*nope\.txt'"):
        prepare_data(files_config(tmp_path, tmp_path / "nope.txt"))
    with pytest.raises(InputError, match="no data file matches"):
        prepare_data(files_config(tmp_path, tmp_path / "*.jsonl"))


def test_wrong_extension_and_mixed_kinds(tmp_path):
    (tmp_path / "a.csv").write_text("text\nhello\n")
    (tmp_path / "b.txt").write_text("hello\n")
    (tmp_path / "c.jsonl").write_text('{"text": "hello"}\n')
    with pytest.raises(InputError, match=r"'.*a\.csv' has an unsupported extension \(use "):
        prepare_data(files_config(tmp_path, tmp_path / "a.csv"))
    with pytest.raises(InputError, match="mix kinds"):
        prepare_data(files_config(tmp_path, tmp_path / "b.txt", tmp_path / "c.jsonl"))


def test_compressed_files_keep_their_kind(tmp_path):
    (tmp_path / "a.jsonl.gz").write_bytes(b"")
    assert resolve_files((str(tmp_path / "a.jsonl.gz"),))[0] == "json"


def test_missing_text_field_lists_the_fields(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"story": "a", "id": 1}\n')
    with pytest.raises(InputError, match=r"no text field 'text' \(fields: story, id\)") as info:
        prepare_data(files_config(tmp_path, path))
    assert "\n" not in str(info.value)


def test_non_text_field_and_empty_and_too_small(tmp_path):
    numbers = tmp_path / "numbers.jsonl"
    numbers.write_text('{"text": 1}\n')
    with pytest.raises(InputError, match="not text"):
        prepare_data(files_config(tmp_path, numbers))
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(InputError, match="every file is empty"):
        prepare_data(files_config(tmp_path, empty))
    small = tmp_path / "small.txt"
    small.write_text("just a few words\n")
    with pytest.raises(InputError, match="too few to hold out eval_tokens"):
        prepare_data(files_config(tmp_path, small))
    assert not any(p.name.startswith(".tmp-") for p in (tmp_path / "cache").iterdir())


def test_hub_calls_load_dataset_with_the_name(tmp_path, monkeypatch):
    calls = []
    splits = {"train": LINES[:500], "validation": LINES[500:1000]}

    def fake_load_dataset(*args, **kwargs):
        calls.append((args, kwargs))
        return datasets.Dataset.from_dict({"text": splits[kwargs["split"]], "n": [0] * 500})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    config = DataConfig(
        source="hub",
        name="roneneldan/TinyStories",
        config_name="default",
        eval_split="validation",
        eval_tokens=1024,
        cache_dir=str(tmp_path / "cache"),
    )
    data = prepare_data(config)
    assert calls == [
        (("roneneldan/TinyStories", "default"), {"split": "train"}),
        (("roneneldan/TinyStories", "default"), {"split": "validation"}),
    ]
    assert data.train.tobytes().decode() == "\n".join(LINES[:500]) + "\n"
    assert data.eval.tobytes().decode() == ("\n".join(LINES[500:1000]) + "\n")[:1024]
    assert data.description["source"]["name"] == "roneneldan/TinyStories"
    assert data.description["eval"] == "split 'validation'"


def test_hub_load_failure_is_one_line(tmp_path, monkeypatch):
    def failing(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'x/y' on the Hub (LocalEntryNotFoundError)\nmore")

    monkeypatch.setattr(datasets, "load_dataset", failing)
    config = DataConfig(source="hub", name="x/y", cache_dir=str(tmp_path))
    with pytest.raises(
        InputError, match=r"^cannot load hub dataset 'x/y', split 'train': Couldn't"
    ) as info:
        prepare_data(config)
    assert "\n" not in str(info.value)
