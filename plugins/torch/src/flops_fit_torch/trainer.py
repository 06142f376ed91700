"""The `local` trainer: the plugin class, importable without torch.

Registering the trainer (every `flops-fit` start-up) and validating its options must not pay
for importing torch (seconds); only `train` does, through `loop`.
"""

from __future__ import annotations

from typing import ClassVar

from flops_fit_core import ExperimentSpec, RunResult, Trainer, TrainerContext

from .config import LocalConfig

__all__ = ["LocalTrainer"]


class LocalTrainer(Trainer):
    """Trains the spec's GPT in PyTorch on this machine for exactly its planned tokens.

    Deterministic on a CPU in fp32 with a fixed thread count: the same spec and seed give the
    same weights, batches and loss, bit for bit, also across a kill and resume.
    """

    name = "local"
    Config = LocalConfig
    config: LocalConfig
    deterministic: ClassVar[bool] = True

    def train(self, spec: ExperimentSpec, context: TrainerContext) -> RunResult:
        from .loop import train_spec

        return train_spec(self, spec, context)
