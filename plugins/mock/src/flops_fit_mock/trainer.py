"""The `mock` trainer: a known scaling law plus seeded log-normal noise, instantly.

Why it exists: every stage after training (the store, the executors, the fitters, the plots,
the whole `flops-fit run`) needs results whose *truth is known*, so that a test can ask "did the
fitter recover alpha?" rather than "did it return something?". The mock trainer answers each
`ExperimentSpec` with the Chinchilla parametric law

    L(N, D) = E + A / N**alpha + B / D**beta

times log-normal noise `exp(noise * z)`, where `z` is drawn from a generator seeded by
`(config.seed, spec.id)` alone. The spec id is a content hash, so the same plan gives bit-identical
losses in any order, in any process, under any executor; a different `seed` gives a different
(equally valid) replicate of the sweep.

The pure functions here (`true_loss`, `optimal_params`, `optimal_tokens`, `optimal_loss`,
`optimal_laws`) are the ground truth other packages' tests compare against. They are written in
terms of C = 6 N D: a sweep whose budgets are counted with the `6n` FLOPs convention lies exactly
on these optima; one counted with `exact` FLOPs (attention and embeddings included) does not.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from pydantic import ConfigDict, Field

from flops_fit_core import (
    ANYTIME,
    ConfigError,
    ExperimentSpec,
    PluginConfig,
    RunResult,
    Trainer,
    TrainerContext,
    TrainingError,
)

__all__ = [
    "MockConfig",
    "MockTrainer",
    "optimal_coefficient",
    "optimal_exponents",
    "optimal_laws",
    "optimal_loss",
    "optimal_params",
    "optimal_tokens",
    "true_loss",
]

#: The most curve points one result may carry: each point is a line item in `results.jsonl`,
#: and a curve longer than this is a typo, not a request.
MAX_CURVE_POINTS = 10_000
#: The largest `noise`: a factor e**10 per standard deviation is no loss a run could reach,
#: and far beyond it exp(noise * z) leaves the range of a float.
MAX_NOISE = 10.0

#: Where a loss curve starts, as a share of the final tokens, unless one optimizer step of
#: `batch_size * seq_len` tokens is more than that (no real run evaluates before its first step).
CURVE_START_FRACTION = 1e-3


class MockConfig(PluginConfig):
    """Options of the `mock` trainer: the true law, the noise, and the simulated device.

    Defaults are Chinchilla's fitted law (Hoffmann et al. 2022, Approach 3). Every value that
    would make the law meaningless (a non-positive coefficient or exponent, negative noise, an
    infinite number) is rejected up front, so a typo fails at config time with a `ConfigError`
    instead of producing a sweep of NaNs.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    E: float = Field(1.69, ge=0, description="irreducible loss (nats per token)")
    A: float = Field(406.4, gt=0, description="parameter term coefficient")
    B: float = Field(410.7, gt=0, description="data term coefficient")
    alpha: float = Field(0.34, gt=0, description="parameter term exponent")
    beta: float = Field(0.28, gt=0, description="data term exponent")
    noise: float = Field(
        0.005,
        ge=0,
        le=MAX_NOISE,
        description="sigma of the log-normal noise: loss = L(N, D) * exp(noise * z)",
    )
    seed: int = Field(
        0, ge=0, description="replicate seed; with the spec id it seeds each run's noise"
    )
    throughput_flops_per_s: float = Field(
        1e14, gt=0, description="simulated device speed: wall_time_s = counted FLOPs / this"
    )
    curve_points: int = Field(
        0,
        ge=0,
        le=MAX_CURVE_POINTS,
        description="0 = no loss curve; else that many (tokens, loss) points ending at D",
    )
    device: str = Field("mock", min_length=1, description="what results record as their device")
    seconds_per_run: float = Field(
        0.0,
        ge=0,
        le=3600,
        description="really take this long per run (checking for a cancel): to try "
        "executors, progress and Ctrl-C on an instant law; changes no result",
    )


def _as_float(value: np.ndarray) -> float | np.ndarray:
    """A 0-d result as a Python float, anything else as the array it is."""
    return float(value) if np.ndim(value) == 0 else value


def true_loss(config: MockConfig, params: Any, tokens: Any) -> float | np.ndarray:
    """L(N, D) = E + A / N**alpha + B / D**beta, noise-free; broadcasts over arrays.

    Both arguments go through `np.asarray(..., float)` and `np.power` whatever their type, so a
    scalar call takes the same arithmetic path as the trainer: with `noise = 0` the trainer's
    loss equals `true_loss(config, spec.params, spec.tokens)` bit for bit.
    """
    n = np.asarray(params, dtype=float)
    d = np.asarray(tokens, dtype=float)
    value = config.E + config.A * np.power(n, -config.alpha) + config.B * np.power(d, -config.beta)
    return _as_float(value)


def optimal_exponents(config: MockConfig) -> tuple[float, float]:
    """(a, b) with N* ∝ C**a and D* ∝ C**b: a = beta/(alpha+beta), b = alpha/(alpha+beta)."""
    total = config.alpha + config.beta
    return config.beta / total, config.alpha / total


def optimal_coefficient(config: MockConfig) -> float:
    """G = (alpha A / (beta B))**(1/(alpha+beta)), so that N* = G (C/6)**a, D* = (C/6)**b / G."""
    ratio = (config.alpha * config.A) / (config.beta * config.B)
    return float(ratio ** (1.0 / (config.alpha + config.beta)))


def optimal_params(config: MockConfig, compute: Any) -> float | np.ndarray:
    """N*(C) = G (C/6)**a: the N minimising L(N, C/(6N)) at compute C (C = 6 N D)."""
    a, _ = optimal_exponents(config)
    c = np.asarray(compute, dtype=float)
    return _as_float(optimal_coefficient(config) * np.power(c / 6.0, a))


def optimal_tokens(config: MockConfig, compute: Any) -> float | np.ndarray:
    """D*(C) = (C/6)**b / G: the tokens that go with N*(C) on C = 6 N D."""
    _, b = optimal_exponents(config)
    c = np.asarray(compute, dtype=float)
    return _as_float(np.power(c / 6.0, b) / optimal_coefficient(config))


def optimal_loss(config: MockConfig, compute: Any) -> float | np.ndarray:
    """L*(C) = L(N*(C), D*(C)): the lowest noise-free loss reachable with compute C."""
    return true_loss(config, optimal_params(config, compute), optimal_tokens(config, compute))


def optimal_laws(config: MockConfig) -> dict[str, tuple[float, float]]:
    """The true laws as (coefficient, exponent) of `coefficient * C**exponent`, C = 6 N D.

    `n_opt` and `d_opt` are what a fitter's `laws["n_opt"]` / `laws["d_opt"]` should recover.
    L*(C) itself is not a power law (E is added), but L*(C) - E is: since alpha a = beta b,
    A N*^-alpha + B D*^-beta = (A G^-alpha + B G^beta) (C/6)^(-alpha beta / (alpha + beta)),
    given here as `reducible_loss_opt`.
    """
    a, b = optimal_exponents(config)
    g = optimal_coefficient(config)
    gamma = config.alpha * config.beta / (config.alpha + config.beta)
    k_loss = config.A * g ** (-config.alpha) + config.B * g**config.beta
    return {
        "n_opt": (g * 6.0 ** (-a), a),
        "d_opt": (6.0 ** (-b) / g, b),
        "reducible_loss_opt": (k_loss * 6.0**gamma, -gamma),
    }


class MockTrainer(Trainer):
    """Answers a spec with the known law plus seeded noise; no model, no sleep, no GPU.

    `deterministic = True` is a promise the contract checks: the noise depends only on
    `(config.seed, spec.id)`, never on call order, process, wall clock or executor.
    """

    name = "mock"
    deterministic = True
    Config = MockConfig
    config: MockConfig

    def validate_study(self, study: Any) -> None:
        """Refuse a law that gives no finite loss at some planned run (E, A or B near the
        largest float): every such run would fail."""
        specs = study.plan.experiments
        if not specs:
            return
        with np.errstate(over="ignore", invalid="ignore"):
            truth = np.asarray(
                true_loss(self.config, [s.params for s in specs], [s.tokens for s in specs])
            )
        bad = np.flatnonzero(~np.isfinite(truth))
        if bad.size:
            first = specs[int(bad[0])]
            raise ConfigError(
                f"trainer 'mock': its law E + A/N^alpha + B/D^beta gives no finite loss at "
                f"{bad.size} of the {len(specs)} planned runs (first: N = {first.params:.4g}, "
                f"D = {first.tokens:.4g}); choose smaller E, A or B"
            )

    def outcome_options(self) -> dict[str, Any]:
        """Every option but `seconds_per_run`, which changes how long a run takes, not its
        result."""
        return self.config.model_dump(mode="json", exclude={"seconds_per_run"})

    def _rng(self, spec: ExperimentSpec) -> np.random.Generator:
        """The run's own generator: seeded by the replicate seed and the spec's content hash."""
        return np.random.default_rng(np.random.SeedSequence([self.config.seed, int(spec.id, 16)]))

    def _curve_tokens(self, spec: ExperimentSpec) -> np.ndarray:
        """Log-spaced evaluation points ending exactly at D (starting no earlier than one step)."""
        final = float(spec.tokens)
        one_step = float(spec.batch_size * spec.shape.seq_len)
        start = min(final, max(one_step, final * CURVE_START_FRACTION))
        points = np.geomspace(start, final, self.config.curve_points)
        points[-1] = final  # with one point geomspace returns `start`; the curve must end at D
        return points

    def train(self, spec: ExperimentSpec, context: TrainerContext) -> RunResult:
        """Return L(N, D) * exp(noise * z) for the spec, with a simulated wall time and curve.

        The curve is the law along the run, L(N, t) with noise: what a run trained to t tokens
        would reach, so the result records its schedule as `ANYTIME`.

        Draw order is fixed, so adding a curve never changes the final loss: z for the eval
        loss first, then z for the train loss, then one z per curve point. The last curve point
        is the final eval loss itself.
        """
        context.check_cancelled()
        cfg = self.config
        _take_time(cfg.seconds_per_run, context)
        rng = self._rng(spec)
        z_eval, z_train = rng.standard_normal(2)
        with np.errstate(over="ignore", invalid="ignore"):  # _noisy names a loss beyond floats
            truth = true_loss(cfg, spec.params, spec.tokens)
        loss = _noisy(truth, cfg.noise, z_eval, spec)
        train_loss = _noisy(truth, cfg.noise, z_train, spec)

        curve: list[tuple[float, float]] | None = None
        if cfg.curve_points:
            tokens = self._curve_tokens(spec)
            z_curve = rng.standard_normal(len(tokens))
            curve = []
            for i, (t, z) in enumerate(zip(tokens, z_curve, strict=True)):
                context.check_cancelled()
                last = i == len(tokens) - 1
                if last:
                    point = loss
                else:
                    with np.errstate(over="ignore", invalid="ignore"):
                        point = _noisy(true_loss(cfg, spec.params, t), cfg.noise, z, spec)
                curve.append((float(t), float(point)))
                context.progress((i + 1) / len(tokens), f"{t:.4g} / {spec.tokens} tokens")
        else:
            context.progress(1.0, f"{spec.tokens} tokens")

        counted = float(spec.tokens) * spec.flops_per_token
        return RunResult.success(
            spec,
            self.info,
            loss=loss,
            tokens_trained=spec.tokens,
            train_loss=train_loss,
            wall_time_s=counted / cfg.throughput_flops_per_s,
            device=cfg.device,
            curve=curve,
            # Each curve point is the law at that length, not a point mid-schedule: a curve
            # fitter may read every one of them as the end of a run (`ANYTIME`).
            details={"schedule": ANYTIME},
            metrics={
                "true_loss": truth,
                "noise_z": float(z_eval),
                "tokens_per_param": spec.tokens / spec.params,
            },
        )


def _noisy(truth: float, noise: float, z: float, spec: ExperimentSpec) -> float:
    """truth * exp(noise * z), or a `TrainingError` when the law leaves the range of a float
    (E, A or B near the largest float): the run fails with one line that says so."""
    try:
        value = truth * math.exp(noise * float(z))
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        raise TrainingError(
            f"the mock law gives no finite loss at N = {spec.params:.4g}, D = {spec.tokens:.4g} "
            f"(L(N, D) = {truth:.4g} before noise); choose smaller E, A, B or noise"
        )
    return value


def _take_time(seconds: float, context: TrainerContext) -> None:
    """Sleep `seconds` in slices of 20 ms, stopping at a cancel."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        context.check_cancelled()
        time.sleep(min(left, 0.02))
