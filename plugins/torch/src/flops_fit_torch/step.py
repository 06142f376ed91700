"""One optimizer step, and the model and AdamW it steps: shared by a run and the bf16 check.

`build_model` makes the spec's GPT (seeded by the spec), `make_optimizer` its AdamW, and
`train_step` trains one batch: forward and backward over micro-batches, gradient clipping at
the configured norm, the optimizer and schedule step. A run and `runtime`'s short bf16-vs-fp32
check both train through it, so the check measures what a run would compute.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from .model import GPT, ModelOptions

if TYPE_CHECKING:
    from flops_fit_core import ExperimentSpec

    from .config import LocalConfig
    from .runtime import Runtime


__all__: list[str] = []


def build_model(spec: ExperimentSpec, config: LocalConfig) -> GPT:
    """The spec's GPT, seeded by the spec, with the config's parametrization."""
    m = config.model
    options = ModelOptions(
        parametrization=m.parametrization,
        attn_mult=m.attn_mult,
        residual_mult=m.residual_mult,
        residual_attn_ratio=m.residual_attn_ratio,
        readout_mult=m.readout_mult,
        norm_eps=m.norm_eps,
    )
    torch.manual_seed(spec.seed)
    model = GPT(spec.shape, options)
    total, non_embedding = model.count_params()
    if (total, non_embedding) != (spec.shape.params_total, spec.shape.params_non_embedding):
        raise RuntimeError(
            f"built model has {total:,} parameters ({non_embedding:,} non-embedding); the "
            f"shape counts {spec.shape.params_total:,} ({spec.shape.params_non_embedding:,})"
        )
    return model


def make_optimizer(
    model: GPT, spec: ExperimentSpec, config: LocalConfig, device: torch.device
) -> torch.optim.AdamW:
    """AdamW over the model's parameter groups (per-group u-muP learning-rate multipliers)."""
    o = config.optimizer
    groups = model.param_groups(spec.learning_rate, o.weight_decay)
    for group in groups:
        group.pop("names")
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(
        groups, lr=spec.learning_rate, betas=(o.beta1, o.beta2), eps=o.eps, fused=fused
    )


def scheduled_lr(optimizer: torch.optim.Optimizer) -> float:
    """The learning rate the next step takes, before the groups' u-muP multipliers."""
    group = optimizer.param_groups[0]
    return group["lr"] / group["lr_multiplier"]


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    x: torch.Tensor,
    y: torch.Tensor,
    runtime: Runtime,
    micro: int,
    clip: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Train one batch `(x, y)` in micro-batches of `micro` sequences, clipped at `clip` (0:
    not clipped). `model` may be compiled (`torch.compile` shares the model's parameters).

    Returns the batch's mean loss and the gradient norm before clipping, both still on the
    device: reading them back each step would make a GPU wait for the host.
    """
    loss_sum = torch.zeros((), device=runtime.device)
    for start in range(0, len(x), micro):
        xs, ys = x[start : start + micro], y[start : start + micro]
        with runtime.autocast():
            loss = model(xs, ys) * (len(xs) / len(x))
        loss.backward()
        loss_sum += loss.detach()
    # an infinite max norm clips nothing and still returns the norm
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip if clip > 0 else math.inf)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum, norm
