"""One training run, start to finish: data, model, AdamW, schedule, checkpoints, evaluation.

The run trains `steps = round(D / tokens_per_step)` optimizer steps of `batch_size x seq_len`
tokens (accumulated over micro-batches if asked), so the tokens it trains are the planned D up
to one step, and the compute it reports is counted from the tokens it actually trained. Batches
are a pure function of (seed, step), so a run resumed from a checkpoint sees exactly the
batches it would have seen. The loss it reports is the mean negative log-likelihood (nats per
token) over the study's fixed held-out set, in one deterministic pass.

Read `train_spec` top to bottom: `setup`, the step loop, `build_result`. Where and how it
computes (and when it must stop) is `runtime`'s; one optimizer step is `step.train_step`;
its batch comes from `prefetch` (built ahead, copied asynchronously); checkpoints, and the log
kept in step with them, are `checkpoint`'s.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from flops_fit_core import ExperimentSpec, InputError, RunResult, TrainerContext

from .checkpoint import TrainLog, config_hash, hash_inputs, resume, save_checkpoint
from .config import LocalConfig
from .data import Batches, TokenData, eval_windows, prepare_data
from .model import GPT
from .prefetch import Prefetcher
from .result import build_result
from .runtime import Runtime, resolve_runtime, restored_process, stop_if_cancelled
from .schedule import Schedule
from .step import build_model, make_optimizer, scheduled_lr, train_step

__all__ = ["curve_steps", "untimed_steps"]

#: The last this many steps' training losses make the reported `train_loss`.
TRAIN_LOSS_WINDOW = 10
#: Seconds between progress reports.
PROGRESS_INTERVAL_S = 0.5


@restored_process()
def train_spec(trainer, spec: ExperimentSpec, context: TrainerContext) -> RunResult:
    """Train `spec` to its planned tokens (resuming a checkpoint if one fits) and evaluate it.

    Leaves the process as it found it (`restored_process`), also after a failure, so the next
    run in the same process starts clean.
    """
    started = time.time()
    context.check_cancelled()
    run, state = setup(trainer.config, spec, context, started)
    config, steps, tally = run.config, run.steps, state.tally
    clip, every = config.optimizer.grad_clip, config.checkpoint_every_steps
    run.model.train()
    first = tally.step
    with run.log, Prefetcher(run.batches, run.runtime.device, first, steps) as batches:
        state.loop_started = time.time()
        while tally.step < steps:
            stop_if_cancelled(context, tally.step, steps, lambda: checkpoint(run, state))
            step = tally.step
            x, y = batches.get(step)
            lr = scheduled_lr(run.optimizer)
            loss, norm = train_step(
                run.forward, run.optimizer, run.scheduler, x, y, run.runtime, run.micro, clip
            )
            tally.step = step + 1
            if step == first:  # a compiled model compiles in its first step: time it apart
                run.runtime.synchronize()
                state.first_step_s = time.time() - state.loop_started
            if tally.step == state.timed_from:  # past the warm-up steps: start the clock
                run.runtime.synchronize()
                state.timed_since, state.timed_step = time.time(), tally.step
            state.pending.append((tally.step, lr, torch.stack((loss, norm.to(loss.dtype)))))
            if step in run.marks and tally.step < steps:  # the last point is the final loss
                tally.curve.append((float(tally.step * run.tokens_per_step), evaluate(run)))
            if tally.step % config.log_every_steps == 0 or tally.step == steps:
                settle(run, state)
            now = time.time()
            if now - state.last_progress >= PROGRESS_INTERVAL_S or tally.step == steps:
                settle(run, state)
                context.progress(
                    tally.step / steps,
                    f"step {tally.step}/{steps} loss {tally.recent_losses[-1]:.3f}",
                )
                state.last_progress = now
            if now - state.last_checkpoint >= config.checkpoint_interval_s or (
                every is not None and tally.step % every == 0 and tally.step < steps
            ):
                checkpoint(run, state)
                state.last_checkpoint = time.time()
        settle(run, state)  # waits for the device: the last step is done
        trained_s = time.time() - state.timed_since
        final = evaluate(run)
        end = float(steps * run.tokens_per_step)
        if run.marks and (not tally.curve or tally.curve[-1][0] != end):
            tally.curve.append((end, final))
        checkpoint(run, state)
    return build_result(trainer, run, state, final, trained_s)


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


@dataclass
class Run:
    """What one run trains, with what and for how long: fixed once `setup` has built it."""

    spec: ExperimentSpec
    config: LocalConfig
    context: TrainerContext
    data: TokenData
    runtime: Runtime
    model: GPT
    forward: Any  # the model as trained: compiled, or the model itself
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    schedule: Schedule
    batches: Batches  # the step loop reads them through a `Prefetcher`
    windows: np.ndarray  # the held-out evaluation windows
    steps: int
    micro: int  # sequences per forward pass
    marks: set[int]  # steps after which the loss curve is evaluated
    inputs: dict[str, Any]  # what a checkpoint must match (`checkpoint.hash_inputs`)
    log: TrainLog

    @property
    def tokens_per_step(self) -> int:
        return self.spec.batch_size * self.spec.shape.seq_len


@dataclass
class LoopState:
    """What changes while a run trains: its saved `Tally`, and this session's own clocks and
    the steps whose loss and gradient norm are still on the device."""

    tally: Tally
    warnings: list[str]  # a checkpoint not resumed says why here
    session_start: float  # wall time since then is not yet in `tally.wall_time_s`
    timed_from: int  # the throughput clock restarts once this step is done (past the warm-up)
    timed_step: int  # throughput counts the steps after this one, ...
    timed_since: float = field(default_factory=time.time)  # ... trained since this time
    last_progress: float = field(default_factory=time.time)
    last_checkpoint: float = field(default_factory=time.time)
    loop_started: float = field(default_factory=time.time)  # this session's first step began
    first_step_s: float | None = None  # ... and took this long (compiling, if compiled)
    pending: list[tuple[int, float, torch.Tensor]] = field(default_factory=list)


def setup(
    config: LocalConfig, spec: ExperimentSpec, context: TrainerContext, started: float
) -> tuple[Run, LoopState]:
    """Data, runtime, model, optimizer and schedule of the run, resumed from its checkpoint if
    one fits (else from step 0), and the state its loop starts in."""
    shape = spec.shape
    data = prepare_data(config.data)
    if shape.vocab_size < data.vocab_size:
        raise InputError(
            f"the model's vocab_size {shape.vocab_size} is smaller than the tokenizer's "
            f"{data.vocab_size} ({data.description.get('tokenizer', 'tokenizer')}); plan with "
            f"vocab_size >= {data.vocab_size}"
        )
    runtime = resolve_runtime(config, data)
    torch.set_num_threads(runtime.threads)
    model = build_model(spec, config).to(runtime.device)
    steps = max(1, round(spec.tokens / (spec.batch_size * shape.seq_len)))
    batches = Batches(data.train, shape.seq_len, spec.batch_size, spec.seed)
    optimizer = make_optimizer(model, spec, config, runtime.device)
    s = config.schedule
    schedule = Schedule(spec.schedule, steps, s.warmup, s.final_ratio, s.decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    inputs = hash_inputs(spec, config, data, runtime)
    warnings: list[str] = []
    saved = resume(context.checkpoint_dir, inputs, model, optimizer, scheduler, warnings)
    tally = Tally(**saved["tally"]) if saved is not None else Tally()
    tally.sessions += 1
    run = Run(
        spec=spec,
        config=config,
        context=context,
        data=data,
        runtime=runtime,
        model=model,
        forward=torch.compile(model) if runtime.compiled else model,
        optimizer=optimizer,
        scheduler=scheduler,
        schedule=schedule,
        batches=batches,
        windows=eval_windows(data.eval, shape.seq_len),
        steps=steps,
        micro=config.micro_batch_size or spec.batch_size,
        marks=set(curve_steps(steps, config.curve_points)),
        inputs=inputs,
        log=TrainLog(Path(context.run_dir) / "logs" / f"{spec.id}.jsonl", tally.step),
    )
    first = tally.step
    timed_from = first + untimed_steps(steps - first, runtime.compiled)
    return run, LoopState(tally, warnings, started, timed_from, timed_step=first)


def settle(run: Run, state: LoopState) -> None:
    """Read the pending steps' losses and gradient norms back in one transfer, record them in
    the tally and the log; a loss that is not finite stops the run.

    They stay on the device until they are needed (a log line, a progress report, a
    checkpoint, the end): reading them back every step would make a GPU wait for the host.
    """
    if not state.pending:
        return
    tally, clip = state.tally, run.config.optimizer.grad_clip
    values = torch.stack([pair for _, _, pair in state.pending]).tolist()
    for (done, lr, _), (loss, norm) in zip(state.pending, values, strict=True):
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"training loss is {loss} at step {done} of {run.steps} "
                f"(learning rate {run.spec.learning_rate:g}); lower it"
            )
        tally.recent_losses = [*tally.recent_losses, loss][-TRAIN_LOSS_WINDOW:]
        tally.grad_norm_sum += norm
        tally.grad_norm_max = max(tally.grad_norm_max, norm)
        tally.grad_norm_last = norm
        tally.clipped_steps += int(clip > 0 and norm > clip)
        if done % run.config.log_every_steps == 0 or done == run.steps:
            run.log.write(done, done * run.tokens_per_step, lr, loss, norm)
    state.pending.clear()


def checkpoint(run: Run, state: LoopState) -> None:
    """Save the run as of its last whole step (its pending steps settled first)."""
    settle(run, state)
    tally = state.tally
    tally.wall_time_s += time.time() - state.session_start
    state.session_start = time.time()
    saved = {
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "step": tally.step,
        "tokens": tally.step * run.tokens_per_step,
        "cursor": tally.step * run.spec.batch_size,
        "tally": asdict(tally),
    }
    save_checkpoint(run.context.checkpoint_dir, config_hash(run.inputs), saved, run.inputs)


@torch.no_grad()
def evaluate(run: Run) -> float:
    """Mean NLL in nats per token over every held-out window, in one fixed pass (fp32 sums)."""
    model, windows, batch_size = run.model, run.windows, run.config.eval_batch_size
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(windows), batch_size):
        chunk = torch.from_numpy(windows[start : start + batch_size]).to(run.runtime.device)
        x, y = chunk[:, :-1], chunk[:, 1:]
        with run.runtime.autocast():
            logits = model(x)
        total += float(F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="sum"))
        count += y.numel()
    model.train(was_training)
    return total / count


def untimed_steps(steps: int, compiled: bool = False) -> int:
    """Warm-up steps a session trains before timing its throughput (allocations, compiling):
    up to 3, a tenth of the session's steps; at least the first (its compiling) if compiled,
    where the session has a step after it to time."""
    warmup = min(3, steps // 10)
    return max(warmup, 1) if compiled and steps > 1 else warmup


def curve_steps(steps: int, points: int) -> list[int]:
    """The (0-based) steps after which the loss curve is evaluated: log-spaced, last included."""
    if points <= 0:
        return []
    marks = np.unique(np.rint(np.geomspace(1, steps, min(points, steps))).astype(int))
    return [int(m) - 1 for m in marks]
