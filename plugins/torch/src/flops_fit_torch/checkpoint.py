"""Atomic training checkpoints: everything a killed run needs to end exactly as if it had not been.

A checkpoint holds the model, the optimizer and scheduler states, the step, the tokens trained,
the data cursor, every RNG state (torch CPU and CUDA, numpy, Python) and the running statistics
the result reports, under the hash of the configuration that produced it. It is written to a
temporary file in the same folder, flushed and fsynced, then renamed over the old one, so a
kill at any moment leaves either the previous checkpoint or the new one, never half of one.
A checkpoint whose hash differs from the run's (another spec, other trainer settings, other
data) is ignored, never resumed from.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["CHECKPOINT_FILE", "capture_rng", "load_checkpoint", "restore_rng", "save_checkpoint"]

CHECKPOINT_FILE = "checkpoint.pt"
FORMAT_VERSION = 1


def capture_rng() -> dict[str, Any]:
    """Every random state a training step may draw from."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(folder: Path, config_hash: str, state: dict[str, Any]) -> Path:
    """Write `state` (plus the hash and the RNG states) atomically to `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT_VERSION, "config_hash": config_hash, "rng": capture_rng(), **state}
    target = folder / CHECKPOINT_FILE
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_checkpoint(folder: Path, config_hash: str) -> dict[str, Any] | None:
    """The checkpoint in `folder` if it belongs to this configuration, else None.

    A checkpoint that cannot be read (truncated by a full disk, written by another version)
    is treated as absent: the run starts over rather than failing.
    """
    path = Path(folder) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:
        return None
    if payload.get("format") != FORMAT_VERSION or payload.get("config_hash") != config_hash:
        return None
    return payload
