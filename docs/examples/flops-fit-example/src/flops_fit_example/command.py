"""The `command` trainer: trains each experiment by running an external program.

Most teams already have a training script. This trainer runs it once per experiment, as a
subprocess (no shell), with its arguments filled in from the experiment's spec, and reads the
result the program writes to a JSON file:

    [trainer]
    name = "command"
    command = ["python", "train.py", "--params", "{params}", "--tokens", "{tokens}",
               "--lr", "{learning_rate}", "--seed", "{seed}", "--out", "{out}"]
    timeout_s = 7200

The program must write `{"loss": <final eval loss>}` to the `{out}` path and exit 0; it may add
`train_loss`, `tokens_trained` (default: the planned D), `curve` (`[[tokens, loss], ...]`),
`metrics` (`{name: number}`), `details` (anything JSON) and `device`. Every other key is an
error, so that a typo (`"los"`) is not silently ignored.

What becomes of each ending:

- exit 0 with a valid result: an `ok` result, its FLOPs counted from `tokens_trained`;
- a non-zero exit, no result file, a malformed one, a program that cannot be started, or a run
  past `timeout_s`: `TrainingError` with the reason and the last lines of the program's output
  (the executor records a `failed` result, cause `trainer_error`, and the sweep goes on; a rerun
  leaves it alone unless `--retry-failed`);
- killed from outside by SIGKILL or SIGTERM (the out-of-memory killer, a preemption): a failed
  result with cause `worker_died`, which a plain rerun trains again;
- the sweep's cancel (the first Ctrl-C): the program's process group gets SIGTERM, then SIGKILL
  after `stop_grace_s`, and `TrainingCancelled` is raised (nothing is recorded; the next run
  trains the experiment again).

The program's stdout and stderr go to `<run_dir>/logs/<experiment id>.log`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import string
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flops_fit_core import (
    ConfigError,
    ExperimentSpec,
    PluginConfig,
    RunResult,
    Trainer,
    TrainerContext,
    TrainingError,
    write_atomic,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["PLACEHOLDERS", "CommandConfig", "CommandOutput", "CommandTrainer"]

#: What `{name}` in `command` and `env` stands for.
PLACEHOLDERS: dict[str, str] = {
    "python": "the Python running flops-fit (sys.executable)",
    "id": "the experiment id (a content hash)",
    "params": "N, parameters (in the plan's convention)",
    "tokens": "D, tokens to train",
    "budget": "the compute budget the run belongs to (FLOPs)",
    "flops": "the run's planned compute: D x FLOPs per token (the plan's convention)",
    "seed": "the experiment's seed",
    "learning_rate": "the planned learning rate",
    "batch_size": "sequences per optimizer step",
    "schedule": "the learning-rate schedule's name",
    "d_model": "model width",
    "n_layers": "layers",
    "n_heads": "attention heads",
    "d_ff": "MLP hidden width",
    "vocab_size": "vocabulary size",
    "seq_len": "sequence length",
    "out": "the JSON file the program writes its result to",
    "spec": "a JSON file holding the whole experiment spec",
    "run_dir": "the study's run directory",
    "checkpoint_dir": "this experiment's checkpoint folder (kept between attempts)",
}

#: The default command: the stand-in program shipped with this package.
DEFAULT_COMMAND = (
    "{python}",
    "-m",
    "flops_fit_example.toy_train",
    "--params",
    "{params}",
    "--tokens",
    "{tokens}",
    "--seed",
    "{seed}",
    "--id",
    "{id}",
    "--seconds",
    "0.1",
    "--out",
    "{out}",
)

#: How much of the program's output a failure message quotes: its last lines, this long at most.
TAIL_LINES, TAIL_CHARS = 3, 400

#: Signals that mean "killed from outside" (the OOM killer, a preemption), not a bug of the run.
OUTSIDE_SIGNALS = {signal.SIGKILL, signal.SIGTERM}


def _fields(template: str) -> list[str]:
    try:
        return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:  # a lone `{` or `}`
        raise ValueError(f"{template!r}: {exc} (write {{{{ and }}}} for literal braces)") from None


def _check_placeholders(template: str) -> str:
    unknown = [name for name in _fields(template) if name not in PLACEHOLDERS]
    if unknown:
        raise ValueError(
            f"{template!r}: unknown placeholder {{{unknown[0]}}} "
            f"(known: {', '.join(sorted(PLACEHOLDERS))})"
        )
    return template


class CommandConfig(PluginConfig):
    """Options of the `command` trainer."""

    command: tuple[str, ...] = Field(
        DEFAULT_COMMAND,
        min_length=1,
        description="the program and its arguments, run without a shell; {params}, {tokens}, "
        "{seed}, {out}, ... are filled in from the experiment (`flops-fit plugins command`)",
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="environment variables added for the program (placeholders allowed)",
    )
    timeout_s: float | None = Field(
        None, gt=0, description="a run taking longer fails (None: no limit)"
    )
    stop_grace_s: float = Field(
        10.0, ge=0, le=3600, description="after a cancel or timeout: SIGTERM, then SIGKILL"
    )
    poll_s: float = Field(
        0.05, gt=0, le=60, description="how often a run checks for a cancel and the timeout"
    )
    gpu: bool = Field(False, description="each run takes a GPU (executors place runs on GPUs)")

    @field_validator("command")
    @classmethod
    def _command(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value[0].strip():
            raise ValueError("the program (the first word) is empty")
        return tuple(_check_placeholders(arg) for arg in value)

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for name, template in value.items():
            if not name or "=" in name:
                raise ValueError(f"{name!r} is not an environment variable name")
            _check_placeholders(template)
        return value


class CommandOutput(BaseModel):
    """What the program writes to `{out}`: its final loss, and optionally more."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    loss: float = Field(gt=0)
    train_loss: float | None = None
    tokens_trained: int | None = Field(None, gt=0)
    curve: list[tuple[float, float]] | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    details: dict[str, Any] = Field(default_factory=dict)
    device: str = "cpu"


class CommandTrainer(Trainer):
    """Runs an external training program per experiment and reads the loss it writes.

    Not `deterministic`: that is the program's to promise. A program that is (the stand-in
    `toy_train` is, for a seed and id) can be checked as one: subclass and set it.
    """

    name = "command"
    Config = CommandConfig
    config: CommandConfig

    def outcome_options(self) -> dict[str, Any]:
        """The options that can change a result: the command and its environment, not how
        long it may take or how often it is watched."""
        return self.config.model_dump(
            mode="json", exclude={"timeout_s", "stop_grace_s", "poll_s", "gpu"}
        )

    def uses_gpu(self) -> bool:
        return self.config.gpu

    def validate_study(self, study: Any) -> None:
        """Refuse, before anything trains, a program that is not there: every run would fail."""
        program = self.config.command[0]
        if _fields(program) not in ([], ["python"]):
            return  # the program's name depends on the experiment: checked when it runs
        program = program.format(python=sys.executable)
        if shutil.which(program) is None:
            raise ConfigError(
                f"trainer 'command': program {program!r} not found "
                "(not an executable file, nor a command on PATH)"
            )

    def train(self, spec: ExperimentSpec, context: TrainerContext) -> RunResult:
        context.check_cancelled()
        folder = Path(context.checkpoint_dir)
        folder.mkdir(parents=True, exist_ok=True)
        out = (folder / "result.json").resolve()
        out.unlink(missing_ok=True)  # never read a result an earlier attempt left
        spec_file = folder / "spec.json"
        write_atomic(spec_file, spec.model_dump_json(indent=2))
        log = Path(context.run_dir) / "logs" / f"{spec.id}.log"
        log.parent.mkdir(parents=True, exist_ok=True)

        values = _values(spec, context, out, spec_file)
        argv = [arg.format(**values) for arg in self.config.command]
        env = {**os.environ, **{k: v.format(**values) for k, v in self.config.env.items()}}
        program = Path(argv[0]).name
        started = time.monotonic()
        with log.open("wb") as sink:
            try:
                # Its own session: a Ctrl-C reaches flops-fit, which stops the program's whole
                # process group itself (a launcher's children included).
                process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            except OSError as exc:
                raise TrainingError(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from None
            context.progress(0.0, f"{program} running (pid {process.pid})")
            try:
                code = self._wait(process, context, started)
            except BaseException:
                _stop(process, self.config.stop_grace_s)
                raise
        wall = time.monotonic() - started

        if code < 0 and -code in OUTSIDE_SIGNALS:
            return RunResult.failure(
                spec,
                self.info,
                f"{program} was killed by {signal.Signals(-code).name} from outside "
                f"(out of memory? preempted?); a rerun trains it again{_tail(log)}",
                cause="worker_died",
                wall_time_s=wall,
            )
        if code < 0:
            raise TrainingError(f"{program} died of {signal.Signals(-code).name}{_tail(log)}")
        if code != 0:
            raise TrainingError(f"{program} exited {code}{_tail(log)}")
        output = _read_output(out, program, log)
        context.progress(1.0, f"loss {output.loss:.4g}")
        return RunResult.success(
            spec,
            self.info,
            loss=output.loss,
            tokens_trained=output.tokens_trained or spec.tokens,
            train_loss=output.train_loss,
            curve=output.curve,
            metrics=output.metrics,
            details={**output.details, "command": argv},
            device=output.device,
            wall_time_s=wall,
        )

    def _wait(self, process: subprocess.Popen, context: TrainerContext, started: float) -> int:
        """The program's exit code; checks for a cancel and the timeout every `poll_s`."""
        timeout = self.config.timeout_s
        while True:
            context.check_cancelled()  # raises TrainingCancelled: the caller stops the program
            if timeout is not None and time.monotonic() - started > timeout:
                raise TrainingError(
                    f"{Path(process.args[0]).name} ran past timeout_s = {timeout:g} s and "
                    "was stopped (raise trainer.timeout_s if runs this long are expected)"
                )
            try:
                return process.wait(timeout=self.config.poll_s)
            except subprocess.TimeoutExpired:
                continue


def _values(
    spec: ExperimentSpec, context: TrainerContext, out: Path, spec_file: Path
) -> dict[str, Any]:
    shape = spec.shape
    return {
        "python": sys.executable,
        "id": spec.id,
        "params": spec.params,
        "tokens": spec.tokens,
        "budget": spec.budget,
        "flops": spec.flops,
        "seed": spec.seed,
        "learning_rate": spec.learning_rate,
        "batch_size": spec.batch_size,
        "schedule": spec.schedule,
        "d_model": shape.d_model,
        "n_layers": shape.n_layers,
        "n_heads": shape.n_heads,
        "d_ff": shape.d_ff,
        "vocab_size": shape.vocab_size,
        "seq_len": shape.seq_len,
        "out": str(out),
        "spec": str(spec_file.resolve()),
        "run_dir": str(Path(context.run_dir).resolve()),
        "checkpoint_dir": str(Path(context.checkpoint_dir).resolve()),
    }


def _stop(process: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM to the program's process group, SIGKILL after `grace_s`; reaps the program."""
    if process.poll() is not None:
        return
    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        process.wait()


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    except AttributeError:  # pragma: no cover - no process groups (Windows)
        process.send_signal(sig)


def _tail(log: Path) -> str:
    """`: <its last lines>` of the program's output, on one line, or nothing."""
    try:
        with log.open("rb") as fh:
            fh.seek(max(0, log.stat().st_size - 4096))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()][-TAIL_LINES:]
    if not lines:
        return f" (no output; log {log})"
    said = " | ".join(lines)
    if len(said) > TAIL_CHARS:
        said = "..." + said[-TAIL_CHARS:]
    return f": {said} (log {log})"


def _read_output(out: Path, program: str, log: Path) -> CommandOutput:
    try:
        text = out.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TrainingError(
            f"{program} exited 0 but wrote no result to {out} "
            f'(it must write {{"loss": ...}} to the {{out}} path){_tail(log)}'
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingError(f"{program}'s result {out}: cannot read it ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TrainingError(f"{program}'s result {out} is not JSON ({exc})") from None
    if not isinstance(data, Mapping):
        raise TrainingError(f'{program}\'s result {out} is not a JSON object {{"loss": ...}}')
    try:
        output = CommandOutput.model_validate(data)
    except ValidationError as exc:
        # an unknown key first: `"los"` says more than "loss: Field required"
        first = min(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        what = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        known = ", ".join(CommandOutput.model_fields)
        raise TrainingError(f"{program}'s result {out}: {where}: {what} (keys: {known})") from None
    if output.curve is not None and not all(
        t > 0 and math.isfinite(t) and math.isfinite(v) for t, v in output.curve
    ):
        raise TrainingError(f"{program}'s result {out}: curve: every point must be finite")
    return output
