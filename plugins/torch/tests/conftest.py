"""Shared fixtures of the torch trainer's tests: a small synthetic corpus and tiny specs.

The corpus is a scaled-down synthetic language (512 words, 2**16 training symbols) cached once
per test session, so each training test pays only for its own few steps.
"""

from __future__ import annotations

import pytest

from flops_fit_core import ExperimentSpec, ModelShape, TrainerContext

TINY_SHAPE = ModelShape(d_model=32, n_layers=1, n_heads=2, d_ff=128, vocab_size=64, seq_len=32)


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """No test writes to the user's token cache: the default cache is a per-session folder."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLOPS_FIT_CACHE", str(tmp_path_factory.mktemp("default-cache")))
        yield


@pytest.fixture(scope="session")
def data_config(tmp_path_factory) -> dict:
    """The `data` options of a small, fast synthetic corpus in a per-session cache."""
    return {
        "cache_dir": str(tmp_path_factory.mktemp("cache")),
        "eval_tokens": 2048,
        "synthetic": {"words": 512, "tokens": 2**16},
    }


@pytest.fixture
def local_config(data_config) -> dict:
    """A `local` trainer config for tests: small corpus, fp32 on two threads (bitwise results
    on any CPU; `auto` precision has its own test)."""
    return {"data": data_config, "threads": 2, "eval_batch_size": 16, "precision": "fp32"}


@pytest.fixture
def make_spec():
    """A valid spec of `shape` trained for `steps` optimizer steps of `batch_size` sequences."""

    def make(
        steps: int = 12,
        *,
        shape: ModelShape = TINY_SHAPE,
        batch_size: int = 4,
        learning_rate: float = 0.5,
        schedule: str = "cosine",
        seed: int = 0,
    ) -> ExperimentSpec:
        tokens = steps * batch_size * shape.seq_len
        return ExperimentSpec(
            budget=float(tokens * shape.flops_per_token),
            params=shape.params_total,
            tokens=tokens,
            shape=shape,
            learning_rate=learning_rate,
            batch_size=batch_size,
            schedule=schedule,
            seed=seed,
        )

    return make


@pytest.fixture
def context(tmp_path) -> TrainerContext:
    """A fresh context whose progress calls are recorded in `context.calls`."""
    calls: list[tuple[float, str | None]] = []
    ctx = TrainerContext(run_dir=tmp_path, checkpoint_dir=tmp_path / "checkpoints" / "run")
    ctx.progress = lambda fraction, message=None: calls.append((fraction, message))
    ctx.calls = calls
    return ctx
