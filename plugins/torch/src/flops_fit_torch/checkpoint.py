"""Resume consistency: checkpoints and the training log a killed run resumes exactly from.

A checkpoint holds the model, the optimizer and scheduler states, the step, the tokens trained,
the data cursor, every RNG state (torch CPU and CUDA, numpy, Python) and the running statistics
the result reports, under the hash of the configuration that produced it. It is written with
the core's `write_atomic` (a temporary file in the same folder, fsynced, renamed over the old
one), so a kill at any moment leaves the previous checkpoint or the new one, never half of one.
A checkpoint whose hash differs from the run's (another spec, other trainer settings, other
data, another thread count) is ignored, never resumed from; the checkpoint also stores what
was hashed, so the run can say which options differ (an older checkpoint without them was
"made under unknown options").

`hash_inputs` is what a checkpoint must match, `resume` loads a matching one into the run, and
`TrainLog` keeps the run's log in step with it: a resume drops the lines the killed session
wrote past its checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from flops_fit_core import write_atomic

if TYPE_CHECKING:
    from flops_fit_core import ExperimentSpec

    from .config import LocalConfig
    from .data import TokenData
    from .runtime import Runtime

__all__ = ["CHECKPOINT_FILE", "save_checkpoint"]

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


def hash_inputs(
    spec: ExperimentSpec, config: LocalConfig, data: TokenData, runtime: Runtime
) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: spec, training options, data, numerics and
    the resolved thread count (which changes the order of floating-point sums)."""
    return {
        "spec": spec.id,
        "trainer": config.training_fields(),
        "data": data.fingerprint,
        "precision": runtime.precision,
        "device": runtime.device.type,
        "threads": runtime.threads,
    }


def config_hash(inputs: dict[str, Any]) -> str:
    """The digest of `hash_inputs`, which a checkpoint is saved under."""
    text = json.dumps(inputs, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_checkpoint(
    folder: Path, config_hash: str, state: dict[str, Any], inputs: dict[str, Any] | None = None
) -> Path:
    """Write `state` (plus the hash, what was hashed and the RNG states) atomically to `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT_VERSION,
        "config_hash": config_hash,
        "hash_inputs": inputs,
        "rng": capture_rng(),
        **state,
    }
    target = folder / CHECKPOINT_FILE
    write_atomic(target, lambda fh: torch.save(payload, fh))
    return target


def load_checkpoint(
    folder: Path,
    config_hash: str,
    inputs: dict[str, Any] | None = None,
    notes: list[str] | None = None,
) -> dict[str, Any] | None:
    """The checkpoint in `folder` if it belongs to this configuration, else None.

    A checkpoint that cannot be read (truncated by a full disk, written by another version)
    is treated as absent: the run starts over rather than failing. Whenever a checkpoint is
    there but not resumed, one line saying why is appended to `notes` (naming the options that
    differ from `inputs`, what this run hashes, when the checkpoint recorded its own).
    """
    path = Path(folder) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    note = notes.append if notes is not None else (lambda line: None)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        note(f"checkpoint not resumed, it could not be read ({reason}); trained from the start")
        return None
    if not isinstance(payload, dict):
        note("checkpoint not resumed, it is not one of this trainer's; trained from the start")
        return None
    if payload.get("format") == FORMAT_VERSION and payload.get("config_hash") == config_hash:
        return payload
    step = payload.get("step")
    at = f" at step {step}" if isinstance(step, int) else ""
    old = payload.get("hash_inputs") if payload.get("format") == FORMAT_VERSION else None
    if isinstance(old, dict) and inputs is not None:
        changes = differences(old, inputs)
        what = f"other options ({changes})" if changes else "other options"
    else:
        what = "unknown options (an older version of the trainer)"
    note(f"checkpoint{at} not resumed: it was made under {what}; trained from the start")
    return None


def resume(
    folder: Path, inputs: dict[str, Any], model, optimizer, scheduler, notes: list[str]
) -> dict[str, Any] | None:
    """Load the checkpoint in `folder` into the model, optimizer and scheduler and restore every
    RNG state, if it was made under `inputs`; the checkpoint, or None (`notes` says why)."""
    state = load_checkpoint(folder, config_hash(inputs), inputs, notes)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng(state["rng"])
    return state


def differences(old: dict[str, Any], new: dict[str, Any], limit: int = 4) -> str:
    """`key old -> new` for each (dotted) key whose value differs, the first `limit` of them."""
    a, b = _flatten(old), _flatten(new)
    missing = object()
    changed = [
        f"{key} {_show(a.get(key, missing))} -> {_show(b.get(key, missing))}"
        for key in sorted(set(a) | set(b))
        if a.get(key, missing) != b.get(key, missing)
    ]
    more = f" and {len(changed) - limit} more" if len(changed) > limit else ""
    return "; ".join(changed[:limit]) + more


def _flatten(value: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, dict) and item:
            out.update(_flatten(item, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = item
    return out


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return repr(list(value))
    if value is None:
        return "(none)"
    return "(absent)" if type(value) is object else str(value)


class TrainLog:
    """`logs/<id>.jsonl`: step, tokens, learning rate, loss and pre-clip gradient norm.

    It always matches the checkpoint the run resumed from: a fresh start truncates it, and a
    resume from a checkpoint at step k drops the lines past k (written after that checkpoint by
    the session that was killed), so no step appears twice. The file stays open while the run
    trains.
    """

    def __init__(self, path: Path, start_step: int):
        self.path = path
        self._file = None
        if start_step == 0:
            path.unlink(missing_ok=True)
        elif path.is_file():
            kept = [
                line
                for line in path.read_text().splitlines()
                if line.strip() and _log_step(line) <= start_step
            ]
            write_atomic(path, "".join(f"{line}\n" for line in kept))

    def write(self, step: int, tokens: int, lr: float, loss: float, grad_norm: float) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a")
        record = {"step": step, "tokens": tokens, "lr": lr, "loss": loss, "grad_norm": grad_norm}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def __enter__(self) -> TrainLog:
        return self

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _log_step(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62  # a torn last line: drop it
