"""One training run, start to finish: data, model, AdamW, schedule, checkpoints, evaluation.

The run trains `steps = round(D / tokens_per_step)` optimizer steps of `batch_size x seq_len`
tokens (accumulated over micro-batches if asked), so the tokens it trains are the planned D up
to one step, and the compute it reports is counted from the tokens it actually trained. Batches
are a pure function of (seed, step), so a run resumed from a checkpoint sees exactly the
batches it would have seen. The loss it reports is the mean negative log-likelihood (nats per
token) over the study's fixed held-out set, in one deterministic pass.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from flops_fit_core import (
    ExperimentSpec,
    InputError,
    ModelShape,
    RunResult,
    TrainerContext,
    TrainingCancelled,
)

from .checkpoint import load_checkpoint, restore_rng, save_checkpoint
from .config import LocalConfig
from .data import Batches, TokenData, eval_windows, prepare_data
from .model import GPT, ModelOptions
from .runtime import (
    Runtime,
    autocast,
    cpu_has_native_bf16,
    resolve_device,
    resolve_threads,
)
from .schedule import Schedule

__all__ = ["build_model", "evaluate", "resolve_runtime", "train_spec"]

#: The last this many steps' training losses make the reported `train_loss`.
TRAIN_LOSS_WINDOW = 10
#: Steps of the short bf16-vs-fp32 check on a CPU with native bf16, and its tolerance (nats).
BF16_CHECK_STEPS = 20
BF16_CHECK_TOLERANCE = 0.01
#: Seconds between progress reports.
PROGRESS_INTERVAL_S = 0.5

_bf16_verdicts: dict[tuple, bool] = {}


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


def make_optimizer(model: GPT, spec: ExperimentSpec, config: LocalConfig, device: torch.device):
    o = config.optimizer
    groups = model.param_groups(spec.learning_rate, o.weight_decay)
    for group in groups:
        group.pop("names")
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(
        groups, lr=spec.learning_rate, betas=(o.beta1, o.beta2), eps=o.eps, fused=fused
    )


def resolve_runtime(config: LocalConfig, spec: ExperimentSpec, data: TokenData) -> Runtime:
    """Device, precision, threads and compilation for this run (see `LocalConfig`)."""
    device = resolve_device(config.device)
    threads = resolve_threads(config.threads)
    precision = config.precision
    if precision == "auto":
        if device.type == "cuda":
            native = torch.cuda.is_bf16_supported(including_emulation=False)
            precision = "bf16" if native else "fp32"
        elif device.type == "cpu" and cpu_has_native_bf16():
            precision = "bf16" if _bf16_agrees(config, data, threads) else "fp32"
        else:
            precision = "fp32"
    elif precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise RuntimeError(f"precision 'bf16' asked for, but {device} does not support it")
    compiled = config.compile if config.compile is not None else device.type == "cuda"
    return Runtime(device=device, precision=precision, threads=threads, compiled=compiled)


def _bf16_agrees(config: LocalConfig, data: TokenData, threads: int) -> bool:
    """Train one fixed small model briefly in fp32 and in bf16: bf16 if they agree in 0.01 nats.

    The check uses a reference shape, not each run's, so every run of a study on this machine
    and data gets the same verdict: a sweep never mixes precisions. It trains the way runs do
    (warmup and cosine, clipping), on the study's own data, and is made once per process.
    """
    key = json.dumps([data.fingerprint, config.training_fields()["model"]], sort_keys=True)
    if key in _bf16_verdicts:
        return _bf16_verdicts[key]
    shape = ModelShape(
        d_model=64,
        n_layers=2,
        n_heads=4,
        d_ff=256,
        vocab_size=max(64, data.vocab_size),
        seq_len=64,
    )
    umup = config.model.parametrization == "umup"
    reference = ExperimentSpec(
        budget=1.0,
        params=shape.params_total,
        tokens=BF16_CHECK_STEPS * 16 * shape.seq_len,
        shape=shape,
        learning_rate=0.5 if umup else 3e-3,
        batch_size=16,
    )
    torch.set_num_threads(threads)
    cpu = torch.device("cpu")
    schedule = Schedule("cosine", BF16_CHECK_STEPS, config.schedule.warmup)
    losses = {}
    for precision in ("fp32", "bf16"):
        model = build_model(reference, config)
        optimizer = make_optimizer(model, reference, config, cpu)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        runtime = Runtime(cpu, precision, threads, False)
        batches = Batches(data.train, shape.seq_len, reference.batch_size, 0)
        recent = []
        for step in range(BF16_CHECK_STEPS):
            x, y = (torch.from_numpy(a) for a in batches.batch(step))
            with autocast(runtime):
                loss = model(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            recent.append(float(loss.detach()))
        losses[precision] = sum(recent[-5:]) / 5
    verdict = abs(losses["bf16"] - losses["fp32"]) <= BF16_CHECK_TOLERANCE
    _bf16_verdicts[key] = verdict
    return verdict


@torch.no_grad()
def evaluate(model, windows: np.ndarray, runtime: Runtime, batch_size: int) -> float:
    """Mean NLL in nats per token over every window, in one fixed pass (fp32 accumulation)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(windows), batch_size):
        chunk = torch.from_numpy(windows[start : start + batch_size]).to(runtime.device)
        x, y = chunk[:, :-1], chunk[:, 1:]
        with autocast(runtime):
            logits = model(x)
        total += float(F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="sum"))
        count += y.numel()
    model.train(was_training)
    return total / count


def untimed_steps(steps: int) -> int:
    """Warm-up steps a session trains before timing its throughput (allocations, compiling)."""
    return min(3, steps // 10)


def curve_steps(steps: int, points: int) -> list[int]:
    """The (0-based) steps after which the loss curve is evaluated: log-spaced, last included."""
    if points <= 0:
        return []
    marks = np.unique(np.rint(np.geomspace(1, steps, min(points, steps))).astype(int))
    return [int(m) - 1 for m in marks]


@dataclass
class Tally:
    """Running statistics of a run, saved in its checkpoints so a resume reports the same."""

    step: int = 0
    grad_norm_sum: float = 0.0
    grad_norm_max: float = 0.0
    grad_norm_last: float = 0.0
    clipped_steps: int = 0
    recent_losses: list[float] = field(default_factory=list)
    curve: list[tuple[float, float]] = field(default_factory=list)
    wall_time_s: float = 0.0
    sessions: int = 0


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


def config_hash(spec: ExperimentSpec, config: LocalConfig, data: TokenData, runtime: Runtime):
    """The digest of `hash_inputs`, which a checkpoint is saved under."""
    text = json.dumps(hash_inputs(spec, config, data, runtime), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def train_spec(trainer, spec: ExperimentSpec, context: TrainerContext) -> RunResult:
    """Train `spec` to its planned tokens (resuming a checkpoint if one fits) and evaluate it.

    Leaves the process as it found it: torch's thread count restored, compiled graphs and
    cached GPU memory released (also after a failure such as running out of memory), so the
    next run in the same process starts clean.
    """
    threads_before = torch.get_num_threads()
    try:
        return _train_spec(trainer, spec, context)
    finally:
        torch.set_num_threads(threads_before)
        torch._dynamo.reset()
        gc.collect()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()


def _train_spec(trainer, spec: ExperimentSpec, context: TrainerContext) -> RunResult:
    config: LocalConfig = trainer.config
    started = time.time()
    context.check_cancelled()
    shape = spec.shape
    data = prepare_data(config.data)
    if shape.vocab_size < data.vocab_size:
        raise InputError(
            f"the model's vocab_size {shape.vocab_size} is smaller than the tokenizer's "
            f"{data.vocab_size} ({data.description.get('tokenizer', 'tokenizer')}); plan with "
            f"vocab_size >= {data.vocab_size}"
        )
    runtime = resolve_runtime(config, spec, data)
    torch.set_num_threads(runtime.threads)
    model = build_model(spec, config).to(runtime.device)
    tokens_per_step = spec.batch_size * shape.seq_len
    steps = max(1, round(spec.tokens / tokens_per_step))
    micro = config.micro_batch_size or spec.batch_size
    batches = Batches(data.train, shape.seq_len, spec.batch_size, spec.seed)
    optimizer = make_optimizer(model, spec, config, runtime.device)
    s = config.schedule
    schedule = Schedule(spec.schedule, steps, s.warmup, s.final_ratio, s.decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    key = config_hash(spec, config, data, runtime)
    inputs = hash_inputs(spec, config, data, runtime)
    tally = Tally()
    warnings: list[str] = []  # a checkpoint not resumed says why here
    state = load_checkpoint(context.checkpoint_dir, key, inputs, warnings)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        tally = Tally(**state["tally"])
        restore_rng(state["rng"])
    tally.sessions += 1
    forward = torch.compile(model) if runtime.compiled else model
    windows = eval_windows(data.eval, shape.seq_len)
    log = _TrainLog(Path(context.run_dir) / "logs" / f"{spec.id}.jsonl", tally.step)
    marks = set(curve_steps(steps, config.curve_points))
    clip = config.optimizer.grad_clip

    # Each step's loss and gradient norm stay on the device until they are needed (a log line,
    # a progress report, a checkpoint, the end): reading them back every step would make a GPU
    # wait for the host twice a step. `settle` reads all pending ones in one transfer.
    pending: list[tuple[int, float, torch.Tensor]] = []

    def settle() -> None:
        if not pending:
            return
        values = torch.stack([pair for _, _, pair in pending]).tolist()
        for (done, lr, _), (loss_value, norm_value) in zip(pending, values, strict=True):
            if not math.isfinite(loss_value):
                raise FloatingPointError(
                    f"training loss is {loss_value} at step {done} of {steps} "
                    f"(learning rate {spec.learning_rate:g}); lower it"
                )
            tally.recent_losses = [*tally.recent_losses, loss_value][-TRAIN_LOSS_WINDOW:]
            tally.grad_norm_sum += norm_value
            tally.grad_norm_max = max(tally.grad_norm_max, norm_value)
            tally.grad_norm_last = norm_value
            tally.clipped_steps += int(clip > 0 and norm_value > clip)
            if done % config.log_every_steps == 0 or done == steps:
                log.write(done, done * tokens_per_step, lr, loss_value, norm_value)
        pending.clear()

    def checkpoint() -> None:
        settle()
        tally.wall_time_s += time.time() - session_start[0]
        session_start[0] = time.time()
        save_checkpoint(
            context.checkpoint_dir,
            key,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "step": tally.step,
                "tokens": tally.step * tokens_per_step,
                "cursor": tally.step * spec.batch_size,
                "tally": asdict(tally),
            },
            inputs,
        )

    session_start = [started]
    last_checkpoint = last_progress = time.time()
    # Throughput is timed after a few warm-up steps (allocations, torch.compile's first call).
    first_step = tally.step
    timed_from = first_step + untimed_steps(steps - first_step)
    timer = [time.time(), first_step]
    model.train()
    with log:
        while tally.step < steps:
            # The sweep's cancel event (Ctrl-C, or the API's cancel) is checked between
            # steps, so the checkpoint holds whole steps and the resume is exact.
            if context.cancelled():
                checkpoint()
                raise TrainingCancelled(f"cancelled at step {tally.step} of {steps}")
            step = tally.step
            x_all, y_all = batches.batch(step)
            x_all = torch.from_numpy(x_all).to(runtime.device, non_blocking=True)
            y_all = torch.from_numpy(y_all).to(runtime.device, non_blocking=True)
            loss_sum = torch.zeros((), device=runtime.device)
            for start in range(0, spec.batch_size, micro):
                x, y = x_all[start : start + micro], y_all[start : start + micro]
                with autocast(runtime):
                    loss = forward(x, y) * (len(x) / spec.batch_size)
                loss.backward()
                loss_sum += loss.detach()
            if clip > 0:
                norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            else:
                # an infinite max norm clips nothing and still returns the norm
                norm = torch.nn.utils.clip_grad_norm_(model.parameters(), math.inf)
            lr = optimizer.param_groups[0]["lr"] / optimizer.param_groups[0]["lr_multiplier"]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            tally.step = step + 1
            if tally.step == timed_from:
                if runtime.device.type == "cuda":
                    torch.cuda.synchronize()  # time the steps, not the queue
                timer[:] = [time.time(), tally.step]
            pending.append((tally.step, lr, torch.stack((loss_sum, norm.to(loss_sum.dtype)))))
            if step in marks and tally.step < steps:  # the last point is the final loss
                value = evaluate(model, windows, runtime, config.eval_batch_size)
                tally.curve.append((float(tally.step * tokens_per_step), value))
            if tally.step % config.log_every_steps == 0 or tally.step == steps:
                settle()
            now = time.time()
            if now - last_progress >= PROGRESS_INTERVAL_S or tally.step == steps:
                settle()
                context.progress(
                    tally.step / steps,
                    f"step {tally.step}/{steps} loss {tally.recent_losses[-1]:.3f}",
                )
                last_progress = now
            every = config.checkpoint_every_steps
            if now - last_checkpoint >= config.checkpoint_interval_s or (
                every is not None and tally.step % every == 0 and tally.step < steps
            ):
                checkpoint()
                last_checkpoint = time.time()
        settle()  # waits for the device: the last step is done
        trained_s = time.time() - timer[0]
        final = evaluate(model, windows, runtime, config.eval_batch_size)
        if marks and (not tally.curve or tally.curve[-1][0] != steps * tokens_per_step):
            tally.curve.append((float(steps * tokens_per_step), final))
        checkpoint()
    tokens_trained = steps * tokens_per_step
    trained_now = (steps - timer[1]) * tokens_per_step
    metrics = {
        "eval_loss": final,
        "bits_per_byte": final / math.log(2) / data.bytes_per_token,
        "steps": float(steps),
        "tokens_per_step": float(tokens_per_step),
        "epochs": batches.epochs(steps),
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
    if metrics["epochs"] > 1:
        warnings.append(
            f"trained {metrics['epochs']:.2f} epochs of the corpus ({tokens_trained:,} tokens "
            f"over {len(data.train):,} unique): repeated data lowers what each token teaches"
        )
    details: dict[str, Any] = {
        **runtime.describe(),
        "parametrization": config.model.parametrization,
        "schedule": spec.schedule,
        "warmup_steps": schedule.warmup_steps,
        "micro_batch_size": micro,
        "accumulation_steps": math.ceil(spec.batch_size / micro),
        "sessions": tally.sessions,
        "data": data.description,
        "data_fingerprint": data.fingerprint,
        "torch": torch.__version__,
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


def _log_step(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62  # a torn last line: drop it


class _TrainLog:
    """`logs/<id>.jsonl`: step, tokens, learning rate, loss and pre-clip gradient norm.

    It always matches the run it describes: a fresh start truncates it, and a resume from a
    checkpoint at step k drops the lines past k (written after that checkpoint by the session
    that was killed), so no step appears twice.
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
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(f"{line}\n" for line in kept))
            os.replace(tmp, path)

    def write(self, step: int, tokens: int, lr: float, loss: float, grad_norm: float) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a")
        record = {"step": step, "tokens": tokens, "lr": lr, "loss": loss, "grad_norm": grad_norm}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def __enter__(self) -> _TrainLog:
        return self

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
