"""The token cache is keyed by content, written atomically, and never read half-built."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from flops_fit_torch.data import DataConfig, prepare_data
from flops_fit_torch.data.cache import (
    CACHE_FORMAT,
    STALE_AFTER_S,
    TokenWriter,
    build_cache,
    clean_stale,
    default_cache_dir,
    fingerprint,
    open_cache,
    token_dtype,
)

KEY = "ab" * 32
DEAD_PID = 4_999_999  # above Linux's largest pid_max, so never a live process


def small_config(tmp_path: Path, **options) -> DataConfig:
    synthetic = {"words": 256, "tokens": 1 << 14}
    return DataConfig(cache_dir=str(tmp_path), synthetic=synthetic, eval_tokens=1024, **options)


def writer_of(train: np.ndarray, held_out: np.ndarray):
    def build(tmp: Path) -> dict:
        for name, ids in (("train", train), ("eval", held_out)):
            with TokenWriter(tmp / f"{name}.bin", 256) as writer:
                writer.write(ids)
        return {"dtype": "uint8", "train_tokens": len(train), "eval_tokens": len(held_out)}

    return build


def temp_dirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".tmp-"))


def test_dtype_is_the_smallest_that_fits():
    assert token_dtype(64) == np.uint8
    assert token_dtype(256) == np.uint8
    assert token_dtype(257) == np.uint16
    assert token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32


def test_fingerprint_is_canonical():
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    assert len(fingerprint({})) == 64


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FLOPS_FIT_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("FLOPS_FIT_CACHE")
    assert default_cache_dir() == tmp_path / "xdg" / "flops-fit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "flops-fit"


def test_prepare_data_uses_the_environment_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("FLOPS_FIT_CACHE", str(tmp_path / "env"))
    data = prepare_data(DataConfig(synthetic={"words": 256, "tokens": 1 << 14}, eval_tokens=1024))
    assert data.directory.parent == tmp_path / "env"


def test_layout_and_meta(tmp_path):
    data = prepare_data(small_config(tmp_path))
    directory = tmp_path / data.fingerprint
    assert data.directory == directory
    assert sorted(p.name for p in directory.iterdir()) == ["eval.bin", "meta.json", "train.bin"]
    meta = json.loads((directory / "meta.json").read_text())
    assert meta["format"] == CACHE_FORMAT and meta["fingerprint"] == data.fingerprint
    assert meta["dtype"] == "uint8" and meta["vocab_size"] == 64
    assert meta["train_tokens"] == 1 << 14 and meta["eval_tokens"] == 1024
    assert meta["entropy_rate"] == data.entropy_rate
    assert meta["bytes_per_token"] == 1.0
    assert (directory / "train.bin").stat().st_size == 1 << 14  # raw, no header
    assert temp_dirs(tmp_path) == []


def test_a_failed_build_leaves_nothing_behind(tmp_path):
    def crash(tmp: Path) -> dict:
        (tmp / "train.bin").write_bytes(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_cache(tmp_path, KEY, crash)
    assert list(tmp_path.iterdir()) == []


def test_stale_temp_dirs_of_dead_builds_are_ignored_and_removed(tmp_path):
    host = socket.gethostname()
    dead = tmp_path / f".tmp-{KEY[:16]}~{host}~{DEAD_PID}~00000000"
    alive = tmp_path / f".tmp-{KEY[:16]}~{host}~{os.getpid()}~11111111"
    elsewhere = tmp_path / f".tmp-{KEY[:16]}~other-host~123~22222222"
    abandoned = tmp_path / f".tmp-{KEY[:16]}~other-host~456~33333333"
    for directory in (dead, alive, elsewhere, abandoned):
        directory.mkdir()
        (directory / "train.bin").write_bytes(b"\x00" * 10)  # a half-written cache
    old = time.time() - STALE_AFTER_S - 60
    os.utime(abandoned, (old, old))

    cached = build_cache(tmp_path, KEY, writer_of(np.arange(100, dtype=np.uint8), np.ones(5)))
    assert np.array_equal(cached.train, np.arange(100))
    assert temp_dirs(tmp_path) == sorted([alive.name, elsewhere.name])
    clean_stale(tmp_path)
    assert temp_dirs(tmp_path) == sorted([alive.name, elsewhere.name])


def test_mismatched_meta_or_files_are_rebuilt(tmp_path):
    config = small_config(tmp_path)
    good = prepare_data(config)
    train, held_out = np.array(good.train), np.array(good.eval)
    directory = good.directory
    meta_path = directory / "meta.json"
    meta = json.loads(meta_path.read_text())

    damages = [
        lambda: meta_path.write_text(json.dumps({**meta, "format": CACHE_FORMAT + 1})),
        lambda: meta_path.write_text(json.dumps({**meta, "fingerprint": "0" * 64})),
        lambda: meta_path.write_text("{torn"),
        lambda: meta_path.unlink(),
        lambda: (directory / "eval.bin").unlink(),
        lambda: os.truncate(directory / "train.bin", 100),
    ]
    for damage in damages:
        damage()
        assert open_cache(directory, good.fingerprint) is None
        again = prepare_data(config)
        assert np.array_equal(again.train, train) and np.array_equal(again.eval, held_out)
        assert open_cache(directory, good.fingerprint) is not None
    assert temp_dirs(tmp_path) == []


def test_another_process_finishing_first_wins(tmp_path):
    theirs = writer_of(np.full(50, 7, dtype=np.uint8), np.ones(5))

    def ours(tmp: Path) -> dict:
        build_cache(tmp_path, KEY, theirs)  # the other process renames its copy first
        return writer_of(np.full(50, 7, dtype=np.uint8), np.ones(5))(tmp)

    cached = build_cache(tmp_path, KEY, ours)
    assert np.array_equal(cached.train, np.full(50, 7))
    assert temp_dirs(tmp_path) == []
    assert [p.name for p in tmp_path.iterdir()] == [KEY]


def test_an_invalid_directory_in_the_way_is_replaced(tmp_path):
    (tmp_path / KEY).mkdir()
    (tmp_path / KEY / "train.bin").write_bytes(b"junk")
    cached = build_cache(tmp_path, KEY, writer_of(np.arange(10, dtype=np.uint8), np.ones(5)))
    assert np.array_equal(cached.train, np.arange(10))
    assert temp_dirs(tmp_path) == []


def test_writer_rejects_ids_outside_the_vocabulary(tmp_path):
    with TokenWriter(tmp_path / "x.bin", 256) as writer, pytest.raises(ValueError, match="256"):
        writer.write(np.array([1, 256]))
