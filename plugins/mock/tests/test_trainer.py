"""Behaviour users and downstream tests rely on from the `mock` trainer."""

from __future__ import annotations

import math
import pickle
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points, version

import numpy as np
import pytest
from pydantic import ValidationError

import flops_fit_mock
from flops_fit_core import (
    ConfigError,
    Conventions,
    RunResult,
    Trainer,
    TrainingCancelled,
    run_one,
)
from flops_fit_mock import MockConfig, MockTrainer, true_loss


def _bits(result: RunResult) -> tuple:
    """Everything a replay must reproduce bit for bit (timestamps excluded on purpose)."""
    curve = None if result.curve is None else [(t.hex(), v.hex()) for t, v in result.curve]
    return (
        result.experiment_id,
        result.loss.hex(),
        result.train_loss.hex(),
        curve,
        result.trainer.version,
    )


# -- registration ---------------------------------------------------------------------------


def test_entry_point_registers_the_mock_trainer():
    (ep,) = [ep for ep in entry_points(group="flops_fit") if ep.name == "mock"]
    module = ep.load()
    assert module is flops_fit_mock
    assert module.flops_fit_register_trainers() == [MockTrainer]
    assert issubclass(MockTrainer, Trainer)
    assert MockTrainer.name == "mock" and MockTrainer.deterministic is True
    # the class knows its own version, so results from worker processes record it too
    assert MockTrainer.version == version("flops-fit-mock") != "unknown"


# -- determinism ----------------------------------------------------------------------------


def test_same_seed_and_spec_are_bit_identical_across_instances(make_spec, context):
    specs = [make_spec(tokens, seed=s) for tokens in (10**8, 3 * 10**9) for s in (0, 1)]
    cfg = {"seed": 7, "noise": 0.05, "curve_points": 5}
    first = [_bits(MockTrainer(cfg).train(spec, context)) for spec in specs]
    second = [_bits(MockTrainer(MockConfig(**cfg)).train(spec, context)) for spec in specs]
    assert first == second


def test_results_do_not_depend_on_order(make_spec, context):
    trainer = MockTrainer({"noise": 0.05})
    specs = [make_spec(10**8 * k) for k in range(1, 9)]
    forward = {r.experiment_id: _bits(r) for r in (trainer.train(s, context) for s in specs)}
    backward = {
        r.experiment_id: _bits(r) for r in (trainer.train(s, context) for s in reversed(specs))
    }
    assert forward == backward
    assert len({bits[1] for bits in forward.values()}) == len(specs)  # distinct draws per spec


def test_results_are_bit_identical_across_a_process_boundary(make_spec, context, tmp_path):
    trainer = MockTrainer({"seed": 3, "noise": 0.05, "curve_points": 4})
    specs = [make_spec(10**8 * k, seed=k) for k in range(1, 6)]
    local = [_bits(trainer.train(spec, context)) for spec in specs]

    payload = tmp_path / "job.pkl"
    answer = tmp_path / "answer.pkl"
    payload.write_bytes(pickle.dumps((trainer, specs)))
    child = textwrap.dedent(
        f"""
        import pickle, sys
        from pathlib import Path
        from flops_fit_core import TrainerContext
        trainer, specs = pickle.loads(Path({str(payload)!r}).read_bytes())
        run_dir = Path({str(tmp_path)!r})
        ctx = TrainerContext(run_dir=run_dir, checkpoint_dir=run_dir / "ckpt")
        results = [trainer.train(spec, ctx) for spec in reversed(specs)][::-1]
        out = []
        for r in results:
            curve = [(t.hex(), v.hex()) for t, v in r.curve]
            bits = (r.experiment_id, r.loss.hex(), r.train_loss.hex(), curve, r.trainer.version)
            out.append(bits)
        Path({str(answer)!r}).write_bytes(pickle.dumps(out))
        """
    )
    subprocess.run([sys.executable, "-c", child], check=True, timeout=60)
    assert pickle.loads(answer.read_bytes()) == local


def test_different_seed_gives_a_different_loss(make_spec, context):
    spec = make_spec()
    losses = {MockTrainer({"seed": seed}).train(spec, context).loss for seed in range(5)}
    assert len(losses) == 5
    # the spec's own seed is part of its id, so it also gives a fresh draw
    assert (
        MockTrainer().train(make_spec(seed=1), context).loss
        != MockTrainer().train(make_spec(seed=2), context).loss
    )


# -- the law and the noise ------------------------------------------------------------------


def test_zero_noise_gives_exactly_the_true_loss(make_spec, context):
    cfg = MockConfig(noise=0.0, E=1.5, A=300.0, B=500.0, alpha=0.3, beta=0.35)
    for tokens in (10**6, 10**8, 10**11):
        spec = make_spec(tokens)
        result = MockTrainer(cfg).train(spec, context)
        expected = true_loss(cfg, spec.params, spec.tokens)
        assert result.loss == expected
        assert result.train_loss == expected
        assert result.metrics["true_loss"] == expected
        by_hand = 1.5 + 300.0 / spec.params**0.3 + 500.0 / spec.tokens**0.35
        assert result.loss == pytest.approx(by_hand, rel=1e-13)


def test_noise_has_the_configured_log_normal_sigma(make_spec, context):
    noise = 0.02
    trainer = MockTrainer({"noise": noise})
    specs = [make_spec(10**8 + 1000 * k, seed=k) for k in range(2000)]
    results = [trainer.train(spec, context) for spec in specs]
    truth = np.array([true_loss(trainer.config, s.params, s.tokens) for s in specs])
    log_eval = np.log([r.loss for r in results]) - np.log(truth)
    log_train = np.log([r.train_loss for r in results]) - np.log(truth)
    n = len(specs)
    # sample sd has relative standard error 1/sqrt(2n) ~ 1.6%: 8% is five of those
    assert np.std(log_eval, ddof=1) == pytest.approx(noise, rel=0.08)
    assert np.std(log_train, ddof=1) == pytest.approx(noise, rel=0.08)
    assert abs(np.mean(log_eval)) < 5 * noise / math.sqrt(n)
    # eval and train noise are separate draws, not one number reported twice
    assert abs(np.corrcoef(log_eval, log_train)[0, 1]) < 5 / math.sqrt(n)
    np.testing.assert_allclose(
        [r.metrics["noise_z"] for r in results], log_eval / noise, rtol=1e-9, atol=1e-9
    )


# -- curve ----------------------------------------------------------------------------------


def test_noise_free_curve_decreases_and_ends_at_the_final_loss(make_spec, context):
    spec = make_spec(2 * 10**9)
    result = MockTrainer({"noise": 0.0, "curve_points": 20}).train(spec, context)
    tokens, losses = map(np.array, zip(*result.curve, strict=True))
    assert len(result.curve) == 20
    assert tokens[-1] == spec.tokens
    assert losses[-1] == result.loss
    assert np.all(np.diff(tokens) > 0) and np.all(np.diff(losses) < 0)
    ratios = tokens[1:] / tokens[:-1]
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-9)  # log-spaced


def test_noisy_curve_is_monotone_ish_and_does_not_change_the_loss(make_spec, context):
    spec = make_spec(2 * 10**9)
    plain = MockTrainer({"noise": 0.01}).train(spec, context)
    curved = MockTrainer({"noise": 0.01, "curve_points": 50}).train(spec, context)
    assert plain.curve is None
    assert curved.loss == plain.loss and curved.train_loss == plain.train_loss
    losses = np.array([loss for _, loss in curved.curve])
    assert losses[-1] == curved.loss
    assert losses[0] > 1.5 * losses[-1]
    # the noise wiggles the curve but the trend is down: rank correlation close to -1
    ranks = np.argsort(np.argsort(losses))
    assert np.corrcoef(ranks, np.arange(len(losses)))[0, 1] < -0.9


def test_a_one_point_curve_is_the_final_point(make_spec, context):
    spec = make_spec(10**9)
    result = MockTrainer({"noise": 0.01, "curve_points": 1}).train(spec, context)
    assert result.curve == [(float(spec.tokens), result.loss)]


def test_curve_starts_no_earlier_than_one_step(make_spec, context):
    spec = make_spec(10**6, batch_size=32)  # one step = 32 * 512 tokens, more than D / 1000
    result = MockTrainer({"noise": 0.0, "curve_points": 3}).train(spec, context)
    assert result.curve[0][0] == 32 * 512
    assert result.curve[-1] == (float(spec.tokens), result.loss)


# -- cancellation and progress --------------------------------------------------------------


def test_pre_set_cancellation_raises_and_reports_nothing(make_spec, context):
    context.cancel_event.set()
    with pytest.raises(TrainingCancelled):
        MockTrainer({"curve_points": 10}).train(make_spec(), context)
    with pytest.raises(TrainingCancelled):  # the executor's wrapper does not swallow it
        run_one(MockTrainer(), make_spec(), context)
    assert context.calls == []


def test_cancellation_between_curve_points_stops_the_run(make_spec, context):
    def progress(fraction, message=None):
        context.calls.append((fraction, message))
        if len(context.calls) == 3:
            context.cancel_event.set()

    context.progress = progress
    with pytest.raises(TrainingCancelled):
        MockTrainer({"curve_points": 10}).train(make_spec(), context)
    assert len(context.calls) == 3


@pytest.mark.parametrize("curve_points", [0, 7])
def test_progress_rises_to_one(make_spec, context, curve_points):
    MockTrainer({"curve_points": curve_points}).train(make_spec(), context)
    fractions = [f for f, _ in context.calls]
    assert len(fractions) == max(curve_points, 1)
    assert fractions[-1] == 1.0
    assert all(0 < f <= 1 for f in fractions) and fractions == sorted(fractions)
    assert all(isinstance(message, str) and message for _, message in context.calls)


# -- configuration --------------------------------------------------------------------------


def test_unknown_config_key_is_a_config_error():
    with pytest.raises(ConfigError, match="nosie"):
        MockTrainer({"nosie": 0.1})


@pytest.mark.parametrize(
    "bad",
    [
        {"noise": -0.01},
        {"A": 0.0},
        {"B": -1.0},
        {"alpha": 0.0},
        {"beta": -0.28},
        {"E": -0.1},
        {"throughput_flops_per_s": 0.0},
        {"seed": -1},
        {"curve_points": -1},
        {"curve_points": 10**6},
        {"E": float("nan")},
        {"A": float("inf")},
        {"device": ""},
    ],
)
def test_impossible_values_are_config_errors(bad):
    with pytest.raises(ConfigError):
        MockTrainer(bad)


def test_config_defaults_are_chinchillas_and_frozen():
    cfg = MockTrainer().config
    assert (cfg.E, cfg.A, cfg.B, cfg.alpha, cfg.beta) == (1.69, 406.4, 410.7, 0.34, 0.28)
    assert (cfg.noise, cfg.seed, cfg.curve_points, cfg.device) == (0.005, 0, 0, "mock")
    assert cfg.throughput_flops_per_s == 1e14
    with pytest.raises(ValidationError):
        cfg.noise = 0.1


# -- accounting -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "conventions",
    [
        Conventions(),
        Conventions(flops="6n"),
        Conventions(params="non_embedding", flops="6n"),
        Conventions(params="non_embedding", flops="exact"),
    ],
)
def test_counted_flops_tokens_and_wall_time(make_spec, context, conventions):
    spec = make_spec(123_456_789, conventions=conventions)
    result = MockTrainer({"throughput_flops_per_s": 2e12, "device": "sim"}).train(spec, context)
    assert result.status == "ok" and math.isfinite(result.loss)
    assert result.tokens_trained == spec.tokens
    assert result.flops == spec.tokens * spec.flops_per_token == spec.flops
    assert result.flops_exact == spec.tokens * spec.shape.flops_per_token
    assert result.flops_6n == spec.tokens * 6 * spec.params
    assert result.wall_time_s == pytest.approx(result.flops / 2e12, rel=1e-12)
    assert result.device == "sim"
    assert result.trainer.name == "mock"
    assert result.experiment_id == spec.id
    assert result.metrics["tokens_per_param"] == pytest.approx(spec.tokens / spec.params)
    # the record survives the results store's JSON round trip unchanged
    assert RunResult.model_validate_json(result.model_dump_json()) == result
