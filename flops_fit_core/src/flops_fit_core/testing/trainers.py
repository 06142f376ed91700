"""A tiny trainer for executor contracts: instant, deterministic, picklable, fails on demand.

It lives in an importable module (not a test file) so worker processes can unpickle it.
"""

from __future__ import annotations

import os
import time

from ..bases import Trainer, TrainerContext
from ..errors import TrainingError
from ..schemas import ExperimentSpec, ModelShape, PluginConfig, RunResult

__all__ = ["EchoTrainer", "tiny_specs"]


class EchoTrainer(Trainer):
    """loss = 2 + 1/ln(N): a spec with `extras={"fail": True}` raises TrainingError."""

    name = "echo"
    deterministic = True

    class Config(PluginConfig):
        delay_s: float = 0.0

    def train(self, spec: ExperimentSpec, context: TrainerContext) -> RunResult:
        context.check_cancelled()
        if spec.extras.get("fail"):
            raise TrainingError(f"asked to fail for {spec.id}")
        if self.config.delay_s:
            time.sleep(self.config.delay_s)
        context.progress(1.0, "done")
        import math

        return RunResult.success(
            spec,
            self.info,
            loss=2 + 1 / math.log(spec.params),
            tokens_trained=spec.tokens,
            device=f"pid-{os.getpid()}",
        )


def tiny_specs(count: int = 4, fail: tuple[int, ...] = ()) -> list[ExperimentSpec]:
    """`count` small distinct specs; those at the indexes in `fail` ask EchoTrainer to fail."""
    specs = []
    for i in range(count):
        shape = ModelShape(
            d_model=64 * (i + 1),
            n_layers=2,
            n_heads=4,
            d_ff=256 * (i + 1),
            vocab_size=256,
            seq_len=64,
        )
        specs.append(
            ExperimentSpec(
                budget=1e12,
                params=shape.params_total,
                tokens=1_000_000,
                shape=shape,
                learning_rate=1e-3,
                batch_size=8,
                extras={"fail": True} if i in fail else {},
            )
        )
    return specs
