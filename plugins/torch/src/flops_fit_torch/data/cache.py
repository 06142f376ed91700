"""The token cache: raw memory-mapped token files under `cache_dir/<fingerprint>/`.

A directory holds `train.bin` and `eval.bin` (headerless arrays of `meta["dtype"]`) and
`meta.json`. The fingerprint is the sha256 of the canonical JSON of everything that determines
the tokens, so a cache is never stale: change a file, a tokenizer setting or `eval_tokens`, and
the tokens land in a new directory.

Atomicity. A directory is built under a private temporary name in `cache_dir`, fsynced, then
renamed into place; a rename is atomic, so a reader sees a complete cache or none, and a crash
leaves only a temporary directory, which a later build removes. If another process renames its
copy first, ours is discarded and theirs is used. A directory whose meta does not match its
files (a different format, truncated files) is rebuilt, never read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CACHE_FORMAT",
    "STALE_AFTER_S",
    "TokenWriter",
    "build_cache",
    "clean_stale",
    "default_cache_dir",
    "fingerprint",
    "open_cache",
    "token_dtype",
]

#: Bumped whenever the layout or the meaning of cached tokens changes.
CACHE_FORMAT = 1

#: A temporary directory older than this is abandoned whoever made it.
STALE_AFTER_S = 24 * 3600

_TMP_PREFIX = ".tmp-"


def default_cache_dir() -> Path:
    """$FLOPS_FIT_CACHE, else $XDG_CACHE_HOME/flops-fit, else ~/.cache/flops-fit."""
    if explicit := os.environ.get("FLOPS_FIT_CACHE"):
        return Path(explicit).expanduser()
    if xdg := os.environ.get("XDG_CACHE_HOME"):
        return Path(xdg).expanduser() / "flops-fit"
    return Path.home() / ".cache" / "flops-fit"


def fingerprint(key: Any) -> str:
    """sha256 hex of the canonical JSON of `key` (sorted keys, no whitespace)."""
    text = json.dumps(key, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds every id below `vocab_size`."""
    if vocab_size <= 1 << 8:
        return np.dtype(np.uint8)
    if vocab_size <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


class TokenWriter:
    """Appends token arrays to one raw file, checking ids against the vocabulary."""

    def __init__(self, path: Path, vocab_size: int):
        self.path = path
        self.vocab_size = vocab_size
        self.dtype = token_dtype(vocab_size)
        self.count = 0
        self._file = path.open("wb")

    def write(self, ids: np.ndarray) -> None:
        if len(ids) and int(ids.max()) >= self.vocab_size:
            raise ValueError(f"token id {int(ids.max())} >= vocab_size {self.vocab_size}")
        self._file.write(np.ascontiguousarray(ids, dtype=self.dtype).tobytes())
        self.count += len(ids)

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def __enter__(self) -> TokenWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, eq=False)
class CachedTokens:
    """An opened cache directory: its meta and read-only memmaps of both splits."""

    directory: Path
    meta: dict[str, Any]
    train: np.ndarray
    eval: np.ndarray


def _memmap(path: Path, dtype: np.dtype, length: int) -> np.ndarray | None:
    if not path.is_file() or path.stat().st_size != length * dtype.itemsize or length <= 0:
        return None
    return np.memmap(path, dtype=dtype, mode="r", shape=(length,))


def open_cache(directory: Path, expected: str) -> CachedTokens | None:
    """The cache in `directory` if it is complete and has fingerprint `expected`, else None."""
    try:
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
        if meta.get("format") != CACHE_FORMAT or meta.get("fingerprint") != expected:
            return None
        dtype = np.dtype(meta["dtype"])
        train = _memmap(directory / "train.bin", dtype, int(meta["train_tokens"]))
        held_out = _memmap(directory / "eval.bin", dtype, int(meta["eval_tokens"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if train is None or held_out is None:
        return None
    return CachedTokens(directory, meta, train, held_out)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(root: Path) -> None:
    """Remove temporary directories of builds that died: ours by pid, anyone's by age."""
    host = socket.gethostname()
    now = time.time()
    for entry in root.glob(f"{_TMP_PREFIX}*"):
        parts = entry.name[len(_TMP_PREFIX) :].split("~")
        try:
            dead = parts[1] == host and not _pid_alive(int(parts[2]))
            old = now - entry.stat().st_mtime > STALE_AFTER_S
        except (IndexError, ValueError, OSError):
            dead, old = False, True
        if dead or old:
            shutil.rmtree(entry, ignore_errors=True)


def build_cache(root: Path, key: str, build: Callable[[Path], dict[str, Any]]) -> CachedTokens:
    """Build `root/key` atomically with `build(tmp)` and return it opened.

    `build` writes `train.bin` and `eval.bin` into the temporary directory it is given and
    returns the meta (without `format` and `fingerprint`, which are added here).
    """
    root.mkdir(parents=True, exist_ok=True)
    clean_stale(root)
    final = root / key
    tmp = (
        root
        / f"{_TMP_PREFIX}{key[:16]}~{socket.gethostname()}~{os.getpid()}~{uuid.uuid4().hex[:8]}"
    )
    tmp.mkdir()
    try:
        meta = {"format": CACHE_FORMAT, "fingerprint": key, **build(tmp)}
        meta_path = tmp / "meta.json"
        with meta_path.open("w", encoding="utf-8") as handle:
            json.dump(meta, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        _fsync_dir(tmp)
        if open_cache(tmp, key) is None:
            raise RuntimeError(f"token cache built in {tmp} does not match its meta")
        _install(tmp, final, key)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    opened = open_cache(final, key)
    if opened is None:  # pragma: no cover - only if someone deletes it under our feet
        raise RuntimeError(f"token cache {final} vanished right after it was built")
    return opened


def _install(tmp: Path, final: Path, key: str) -> None:
    """Rename `tmp` to `final`; a valid `final` from another process wins, an invalid one goes."""
    for _ in range(3):
        try:
            os.rename(tmp, final)
            _fsync_dir(final.parent)
            return
        except OSError:
            if not final.exists():
                raise
            if open_cache(final, key) is not None:
                return  # another process finished first; theirs is as good as ours
            stale = final.with_name(f"{_TMP_PREFIX}stale-{key[:16]}~{uuid.uuid4().hex[:8]}")
            with contextlib.suppress(OSError):
                os.rename(final, stale)
                shutil.rmtree(stale, ignore_errors=True)
    raise RuntimeError(f"could not install token cache {final}")
