"""What a finished run reports: its `RunResult`, assembled in one place from the loop's state.

The loss is the final held-out evaluation; the compute is counted from the tokens trained;
throughput counts this session's timed steps only (after its warm-up, evaluation excluded).
Metrics and details record the statistics, the numerics and the data, so any two results can
be told apart by what produced them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch

from flops_fit_core import RunResult

if TYPE_CHECKING:
    from .loop import LoopState, Run


__all__: list[str] = []


def build_result(trainer, run: Run, state: LoopState, final: float, trained_s: float) -> RunResult:
    """The run's `RunResult`: final loss, accounting, statistics, numerics and warnings."""
    spec, shape, data, tally = run.spec, run.spec.shape, run.data, state.tally
    steps, tokens_per_step = run.steps, run.tokens_per_step
    tokens_trained = steps * tokens_per_step
    trained_now = (steps - state.timed_step) * tokens_per_step
    metrics = {
        "eval_loss": final,
        "bits_per_byte": final / math.log(2) / data.bytes_per_token,
        "steps": float(steps),
        "tokens_per_step": float(tokens_per_step),
        "epochs": run.batches.epochs(steps),
        "grad_norm_last": tally.grad_norm_last,
        "grad_norm_max": tally.grad_norm_max,
        "grad_norm_mean": tally.grad_norm_sum / steps,
        "clipped_fraction": tally.clipped_steps / steps,
        "params_total": float(shape.params_total),
        "params_non_embedding": float(shape.params_non_embedding),
        "flops_per_token_exact": float(shape.flops_per_token),
    }
    if trained_now and trained_s > 0:
        metrics["tokens_per_s"] = trained_now / trained_s
        metrics["flops_per_s"] = metrics["tokens_per_s"] * shape.flops_per_token
    if data.entropy_rate is not None:
        metrics["entropy_rate"] = data.entropy_rate
        metrics["excess_loss"] = final - data.entropy_rate
    warnings = state.warnings
    if metrics["epochs"] > 1:
        warnings.append(
            f"trained {metrics['epochs']:.2f} epochs of the corpus ({tokens_trained:,} tokens "
            f"over {len(data.train):,} unique): repeated data lowers what each token teaches"
        )
    details: dict[str, Any] = {
        **run.runtime.describe(),
        "parametrization": run.config.model.parametrization,
        "schedule": spec.schedule,
        "warmup_steps": run.schedule.warmup_steps,
        "micro_batch_size": run.micro,
        "accumulation_steps": math.ceil(spec.batch_size / run.micro),
        "sessions": tally.sessions,
        "data": data.description,
        "data_fingerprint": data.fingerprint,
        "torch": torch.__version__,
        **_timings(run, state, trained_s),
    }
    return RunResult.success(
        spec,
        trainer.info,
        loss=final,
        train_loss=sum(tally.recent_losses) / len(tally.recent_losses),
        tokens_trained=tokens_trained,
        wall_time_s=tally.wall_time_s,
        device=details["device"],
        curve=tally.curve or None,
        metrics=metrics,
        details=details,
        warnings=warnings,
    )


def _timings(run: Run, state: LoopState, trained_s: float) -> dict[str, Any]:
    """This session's first step (`first_step_s`), the compiling in it (`compile_s`: that step
    less a timed step's mean, compiled runs only) and, on CUDA, the peak memory allocated.

    Reported apart from throughput, which counts only the steps after the warm-up: a short
    run would otherwise seem slow because its compiling was spread over few steps.
    """
    out: dict[str, Any] = {"first_step_s": state.first_step_s, "compile_s": None}
    timed = run.steps - state.timed_step
    if run.runtime.compiled and state.first_step_s is not None:
        step_s = trained_s / timed if timed > 0 and trained_s > 0 else 0.0
        out["compile_s"] = max(0.0, state.first_step_s - step_s)
    if run.runtime.device.type == "cuda":
        out["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated(run.runtime.device))
    return out
