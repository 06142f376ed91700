"""Shared fixtures: a small real model shape and a factory of valid specs around it."""

from __future__ import annotations

import pytest

from flops_fit_core import Conventions, ExperimentSpec, ModelShape, TrainerContext

SHAPE = ModelShape(d_model=256, n_layers=4, n_heads=4, d_ff=1024, vocab_size=32000, seq_len=512)


@pytest.fixture
def make_spec():
    """Build a valid `ExperimentSpec`: N is the shape's real count under the conventions."""

    def make(
        tokens: int = 200_000_000,
        *,
        seed: int = 0,
        shape: ModelShape = SHAPE,
        conventions: Conventions | None = None,
        batch_size: int = 32,
    ) -> ExperimentSpec:
        conventions = conventions or Conventions()
        params = shape.params(conventions.params)
        return ExperimentSpec(
            budget=6.0 * params * tokens,
            params=params,
            tokens=tokens,
            shape=shape,
            learning_rate=3e-4,
            batch_size=batch_size,
            seed=seed,
            conventions=conventions,
        )

    return make


@pytest.fixture
def context(tmp_path):
    """A fresh, uncancelled context whose progress calls are recorded in `context.calls`."""
    calls: list[tuple[float, str | None]] = []
    ctx = TrainerContext(run_dir=tmp_path, checkpoint_dir=tmp_path / "ckpt")
    ctx.progress = lambda fraction, message=None: calls.append((fraction, message))
    ctx.calls = calls
    return ctx
