"""The `local` trainer: the plugin class, importable without torch.

Registering the trainer (every `flops-fit` start-up) and validating its options must not pay
for importing torch (seconds); only `train` does, through `loop`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from flops_fit_core import ConfigError, ExperimentSpec, RunResult, Trainer, TrainerContext

from .config import LocalConfig
from .schedule import SCHEDULES

__all__ = ["FULL_GPU_STEP_FLOPS", "LocalTrainer"]

#: The executors that train on this machine: a `cuda` device must be one of its own.
LOCAL_EXECUTORS = ("serial", "process")

#: Forward and backward FLOPs of one optimizer step that fill an H100-class GPU on their own
#: (`LocalTrainer.runs_per_gpu`).
FULL_GPU_STEP_FLOPS = 4e12


class LocalTrainer(Trainer):
    """Trains the spec's GPT in PyTorch on this machine for exactly its planned tokens.

    Deterministic on a CPU in fp32 with a fixed thread count: the same spec and seed give the
    same weights, batches and loss, bit for bit, also across a kill and resume.
    """

    name = "local"
    Config = LocalConfig
    config: LocalConfig
    deterministic: ClassVar[bool] = True

    def outcome_options(self) -> dict[str, Any]:
        """What results are keyed by: every option that can change a loss (`training_fields`),
        not threads, checkpoint or log cadence, or where the token cache lives."""
        return self.config.training_fields()

    def validate_study(self, study: Any) -> None:
        """Refuse a plan every run of which would fail here, in one line, before training.

        Cheap: reads the plan and the options only (no data, no tokenizer training, no torch).
        """
        specs = study.plan.experiments
        if not specs:
            return
        where = f"trainer {self.name!r}"
        device = self.config.device
        # Runs trained on this machine (not by a cluster's nodes) need its GPU to be there.
        trains_here = getattr(study.executor, "name", "") in LOCAL_EXECUTORS
        if device.startswith("cuda") and trains_here and not _cuda_here():
            raise ConfigError(
                f"{where}: device = {device!r}, but this machine shows no GPU that CUDA "
                "can use; set trainer.device=auto (or cpu), or run a study sized for a "
                "CPU: --preset cpu-tiny"
            )
        unknown = sorted({s.schedule for s in specs} - set(SCHEDULES))
        if unknown:
            raise ConfigError(
                f"{where}: planner.schedule = {unknown[0]!r} is not a schedule this trainer "
                f"knows; use one of: {', '.join(SCHEDULES)}"
            )
        data = self.config.data
        needed = data.vocab_size
        smallest = min(s.shape.vocab_size for s in specs)
        if smallest < needed:
            raise ConfigError(
                f"{where}: the plan's vocab_size {smallest} is below the "
                f"{data.tokenizer_kind!r} tokenizer's {needed} tokens; set "
                f"planner.vocab_size={needed} (or more)"
            )
        window = max(s.shape.seq_len for s in specs) + 1
        if data.eval_tokens < window:
            raise ConfigError(
                f"{where}: trainer.data.eval_tokens = {data.eval_tokens} holds no evaluation "
                f"window of seq_len + 1 = {window} tokens; set trainer.data.eval_tokens={window} "
                "(or more)"
            )
        # a synthetic corpus in symbols or bytes has exactly `tokens` tokens (BPE: fewer)
        corpus = data.synthetic.tokens
        if data.source == "synthetic" and data.tokenizer_kind != "bpe" and corpus < window:
            raise ConfigError(
                f"{where}: trainer.data.synthetic.tokens = {corpus} is shorter than one "
                f"training sequence of seq_len + 1 = {window} tokens; set "
                f"trainer.data.synthetic.tokens={window} (or more)"
            )
        for spec in specs:
            shape = spec.shape
            head = shape.d_model / shape.n_heads
            if shape.d_model % shape.n_heads or head % 2:
                raise ConfigError(
                    f"{where}: experiment {spec.id} has d_model {shape.d_model} with "
                    f"{shape.n_heads} heads, a head size of {head:g}; rotary positions need "
                    "an even integer head size (plan even head sizes)"
                )

    def uses_gpu(self) -> bool:
        """`cuda` takes a GPU; `auto` takes one where this machine (the driver) has one, so a
        CPU-only head node of a GPU cluster sets `device = "cuda"` (or the executor's
        `num_gpus`)."""
        device = self.config.device
        if device.startswith("cuda"):
            return True
        if device != "auto":
            return False
        import shutil

        return shutil.which("nvidia-smi") is not None  # no torch import for a yes or no

    def runs_per_gpu(self, spec: ExperimentSpec) -> int:
        """Runs of this size that share a GPU: as many as fit in the work of one full step.

        A step of `FULL_GPU_STEP_FLOPS` (forward and backward) keeps an H100-class GPU busy
        by itself: ~10 ms at 40% of its bf16 peak, long beside the ~2 ms a compiled step
        spends launching kernels. A run of a tenth of that work leaves the GPU mostly idle
        between its launches, so ten such runs share it (the executor caps the count).
        """
        step = spec.shape.flops_per_token * spec.batch_size * spec.shape.seq_len
        return max(1, int(FULL_GPU_STEP_FLOPS // max(step, 1)))

    def checkpoint_bytes(self, spec: ExperimentSpec) -> int:
        """fp32 weights and AdamW's two moments (12 bytes a parameter), plus the RNG states,
        statistics and the pickle's overhead."""
        return 12 * spec.shape.params_total + (1 << 20)

    def train(self, spec: ExperimentSpec, context: TrainerContext) -> RunResult:
        from .loop import train_spec

        return train_spec(self, spec, context)


def _cuda_here() -> bool:
    """Whether this machine has a GPU for CUDA: `nvidia-smi` or CUDA_VISIBLE_DEVICES says so
    at no cost; where neither does, torch is asked (seconds to import, on this path only: a
    machine whose driver has no `nvidia-smi` is not refused)."""
    from flops_fit_core import visible_gpus

    if visible_gpus():
        return True
    import torch

    return torch.cuda.is_available()
