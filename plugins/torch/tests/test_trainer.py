"""What a user of the `local` trainer relies on: exact token budgets, honest accounting,
resumable runs, failures that become results, and numerics recorded with every result."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import pytest

from flops_fit_core import ModelShape, run_one
from flops_fit_torch import LocalTrainer
from flops_fit_torch.checkpoint import CHECKPOINT_FILE
from flops_fit_torch.loop import curve_steps


def train(config, spec, context):
    return LocalTrainer(config).train(spec, context)


def log_lines(context, spec):
    path = context.run_dir / "logs" / f"{spec.id}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_trains_exactly_the_planned_steps_and_counts_what_it_trained(
    local_config, make_spec, context
):
    spec = make_spec(steps=10)
    result = train(local_config, spec, context)
    assert result.metrics["steps"] == 10
    assert result.tokens_trained == spec.tokens == 10 * 4 * 32
    assert result.flops_exact == result.tokens_trained * spec.shape.flops_per_token
    assert result.flops_6n == 6 * spec.shape.params_total * result.tokens_trained
    assert result.metrics["params_total"] == spec.shape.params_total
    assert result.metrics["params_non_embedding"] == spec.shape.params_non_embedding
    # a budget that is not a whole number of steps is rounded to the nearest step
    odd = type(spec)(**{**spec.model_dump(exclude={"id"}), "tokens": spec.tokens + 3 * 32})
    assert train(local_config, odd, context).metrics["steps"] == 11


def test_records_loss_in_nats_and_bits_per_byte_and_the_numerics(local_config, make_spec, context):
    result = train(local_config, make_spec(), context)
    assert result.loss == result.metrics["eval_loss"]
    # the synthetic symbols are one ASCII byte each
    assert result.metrics["bits_per_byte"] == pytest.approx(result.loss / math.log(2))
    assert 0 < result.metrics["entropy_rate"] < result.loss
    assert result.details["precision"] == "fp32"
    assert result.details["device"] == "cpu"
    assert result.details["threads"] == 2
    assert result.details["parametrization"] == "umup"
    assert result.details["data_fingerprint"]
    assert result.metrics["grad_norm_max"] >= result.metrics["grad_norm_last"] > 0


def test_logs_the_pre_clip_gradient_norm_and_the_schedule_ends_at_the_last_step(
    local_config, make_spec, context
):
    config = {**local_config, "log_every_steps": 1, "optimizer": {"grad_clip": 1e-3}}
    spec = make_spec(steps=10, learning_rate=0.25)
    result = train(config, spec, context)
    lines = log_lines(context, spec)
    assert [line["step"] for line in lines] == list(range(1, 11))
    # clipping at 1e-3 clips every step, yet the log holds the norms before clipping
    assert all(line["grad_norm"] > 1e-3 for line in lines)
    assert result.metrics["clipped_fraction"] == 1.0
    assert lines[-1]["lr"] == pytest.approx(0.1 * 0.25)  # cosine to 10% at the run's last step
    assert max(line["lr"] for line in lines) == pytest.approx(0.25, rel=0.05)


def test_gradient_accumulation_matches_the_whole_batch(local_config, make_spec, tmp_path):
    from flops_fit_core import TrainerContext

    spec = make_spec(steps=6)
    whole = train(local_config, spec, TrainerContext(tmp_path / "a", tmp_path / "a" / "ck"))
    config = {**local_config, "micro_batch_size": 1}
    split = train(config, spec, TrainerContext(tmp_path / "b", tmp_path / "b" / "ck"))
    assert split.details["accumulation_steps"] == 4
    assert split.loss == pytest.approx(whole.loss, abs=1e-4)


def test_curve_is_log_spaced_and_ends_at_the_final_loss(local_config, make_spec, context):
    spec = make_spec(steps=16)
    result = train({**local_config, "curve_points": 5}, spec, context)
    tokens = [t for t, _ in result.curve]
    assert len(tokens) == len(curve_steps(16, 5)) >= 4
    assert tokens == sorted(tokens) and tokens[-1] == result.tokens_trained
    assert result.curve[-1][1] == result.loss
    assert result.curve[0][1] > result.curve[-1][1]


def test_warns_and_records_when_the_data_repeats(data_config, local_config, make_spec, context):
    config = {**local_config, "data": {**data_config, "synthetic": {"words": 512, "tokens": 4096}}}
    result = train(config, make_spec(steps=50), context)  # 6,400 tokens over ~4,096
    assert result.metrics["epochs"] > 1
    assert any("epochs" in w for w in result.warnings)


def test_a_resumed_run_ends_bitwise_like_an_uninterrupted_one(local_config, make_spec, tmp_path):
    """Kill -9 a run after its step-5 checkpoint, resume it, compare with a clean run."""
    from flops_fit_core import TrainerContext

    spec = make_spec(steps=12)
    config = {**local_config, "checkpoint_every_steps": 5, "curve_points": 6, "log_every_steps": 1}
    clean = train(config, spec, TrainerContext(tmp_path / "clean", tmp_path / "clean" / "ck"))

    run_dir = tmp_path / "killed"
    script = textwrap.dedent(
        f"""
        import json, os, signal
        from flops_fit_core import ExperimentSpec, TrainerContext
        from flops_fit_torch import LocalTrainer

        class KillAtStep(TrainerContext):
            calls = 0
            def cancelled(self):
                KillAtStep.calls += 1
                if KillAtStep.calls == 8:  # checked once per step: die before step 8
                    os.kill(os.getpid(), signal.SIGKILL)
                return False

        spec = ExperimentSpec.model_validate_json({spec.model_dump_json()!r})
        ctx = KillAtStep(run_dir={str(run_dir)!r}, checkpoint_dir={str(run_dir / "ck")!r})
        LocalTrainer(json.loads({json.dumps(config)!r})).train(spec, ctx)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert (run_dir / "ck" / CHECKPOINT_FILE).is_file()

    resumed = train(config, spec, TrainerContext(run_dir, run_dir / "ck"))
    assert resumed.details["sessions"] == 2
    assert resumed.loss == clean.loss  # bitwise, on a CPU in fp32
    assert resumed.train_loss == clean.train_loss
    assert resumed.curve == clean.curve
    timing = {"tokens_per_s", "flops_per_s"}
    assert {k: v for k, v in resumed.metrics.items() if k not in timing} == {
        k: v for k, v in clean.metrics.items() if k not in timing
    }
    # the killed session's steps past its checkpoint were dropped from the log, not repeated
    assert (run_dir / "logs" / f"{spec.id}.jsonl").read_text() == (
        tmp_path / "clean" / "logs" / f"{spec.id}.jsonl"
    ).read_text()


def test_cancelling_saves_a_checkpoint_that_the_next_run_resumes(
    local_config, make_spec, context, monkeypatch
):
    import flops_fit_torch.loop as loop
    from flops_fit_core import TrainingCancelled

    monkeypatch.setattr(loop, "PROGRESS_INTERVAL_S", 0.0)  # report after every step

    spec = make_spec(steps=10)

    def stop_after_first_report(fraction, message=None):
        context.cancel_event.set()

    context.progress = stop_after_first_report
    with pytest.raises(TrainingCancelled):
        train(local_config, spec, context)
    assert (context.checkpoint_dir / CHECKPOINT_FILE).is_file()
    context.cancel_event.clear()
    context.progress = lambda fraction, message=None: None
    result = train(local_config, spec, context)
    assert result.details["sessions"] == 2
    assert result.tokens_trained == spec.tokens


def test_a_checkpoint_of_other_settings_is_not_resumed(local_config, make_spec, context):
    spec = make_spec(steps=6)
    train(local_config, spec, context)
    other = {**local_config, "optimizer": {"weight_decay": 0.0}}
    assert train(other, spec, context).details["sessions"] == 1


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {
                "shape": ModelShape(
                    d_model=32, n_layers=1, n_heads=2, d_ff=64, vocab_size=16, seq_len=32
                )
            },
            "vocab_size 16 is smaller than the tokenizer's 64",
        ),
        ({"learning_rate": 1e9}, "lower it"),
    ],
)
def test_failures_become_failed_results(local_config, make_spec, context, change, expected):
    spec = make_spec(steps=6, **change)
    result = run_one(LocalTrainer(local_config), spec, context)
    assert result.status == "failed"
    assert expected in result.error


def test_missing_data_becomes_a_failed_result(local_config, make_spec, context, tmp_path):
    config = {
        **local_config,
        "data": {
            "source": "files",
            "files": [str(tmp_path / "missing.txt")],
            "cache_dir": str(tmp_path),
        },
    }
    result = run_one(LocalTrainer(config), make_spec(), context)
    assert result.status == "failed"
    assert "missing.txt" in result.error


def test_threads_default_to_this_process_share_of_the_cores(
    local_config, make_spec, context, monkeypatch
):
    from flops_fit_torch.runtime import free_cores

    monkeypatch.setenv("FLOPS_FIT_WORKERS", "2")
    assert free_cores() == max(1, len(os.sched_getaffinity(0)) // 2)
    config = {k: v for k, v in local_config.items() if k != "threads"}
    monkeypatch.setenv("FLOPS_FIT_WORKERS", str(len(os.sched_getaffinity(0))))
    assert train(config, make_spec(steps=4), context).details["threads"] == 1
    monkeypatch.setenv("FLOPS_FIT_WORKERS", "2")
    assert train(config, make_spec(steps=4), context).details["threads"] == free_cores()


def test_auto_precision_on_a_cpu_with_native_bf16_keeps_bf16_only_if_it_agrees(
    local_config, make_spec, context, monkeypatch
):
    import flops_fit_torch.runtime as loop

    auto = {**local_config, "precision": "auto"}
    monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(loop, "BF16_CHECK_STEPS", 4)
    monkeypatch.setattr(loop, "BF16_CHECK_TOLERANCE", 10.0)  # anything agrees
    monkeypatch.setattr(loop, "_bf16_verdicts", {})
    assert train(auto, make_spec(steps=4), context).details["precision"] == "bf16"
    # one verdict for the whole study: another size reuses it, never mixing precisions
    other = make_spec(
        steps=4,
        shape=ModelShape(d_model=64, n_layers=1, n_heads=2, d_ff=256, vocab_size=64, seq_len=32),
    )
    assert train(auto, other, context).details["precision"] == "bf16"
    assert len(loop._bf16_verdicts) == 1
    monkeypatch.setattr(loop, "BF16_CHECK_TOLERANCE", -1.0)  # nothing can agree
    monkeypatch.setattr(loop, "_bf16_verdicts", {})
    assert train(auto, make_spec(steps=4, seed=1), context).details["precision"] == "fp32"


def test_standard_parametrization_trains_too(local_config, make_spec, context):
    config = {**local_config, "model": {"parametrization": "sp"}}
    result = train(config, make_spec(steps=6, learning_rate=3e-3), context)
    assert result.status == "ok" and result.details["parametrization"] == "sp"


def test_bad_options_are_config_errors():
    from flops_fit_core import ConfigError

    for bad in (
        {"precision": "fp8"},
        {"device": "tpu"},
        {"optimizer": {"beta2": 1.5}},
        {"schedule": {"warmup": 1.0}},
        {"nonsense": 1},
    ):
        with pytest.raises(ConfigError):
            LocalTrainer(bad)


def test_registering_the_plugin_does_not_import_torch():
    code = "import sys, flops_fit_torch; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_a_cancel_mid_run_checkpoints_at_a_step_boundary_and_the_resume_is_exact(
    local_config, make_spec, tmp_path
):
    """Issue 12: the sweep's cancel event (Ctrl-C, the API's cancel) stops a run between
    steps, with a checkpoint of whole steps: the resumed run ends bit for bit as a clean one."""
    import torch

    from flops_fit_core import TrainerContext, TrainingCancelled
    from flops_fit_core.testing import CancelAfter

    spec = make_spec(steps=12)
    clean = train(local_config, spec, TrainerContext(tmp_path / "clean", tmp_path / "clean" / "c"))
    run_dir = tmp_path / "interrupted"
    context = TrainerContext(run_dir, run_dir / "ck", cancel_event=CancelAfter(checks=7))
    with pytest.raises(TrainingCancelled, match="cancelled at step 5 of 12"):
        train(local_config, spec, context)
    saved = torch.load(run_dir / "ck" / CHECKPOINT_FILE, weights_only=False)
    assert saved["step"] == 5  # checked once before training, then once before each step
    resumed = train(local_config, spec, TrainerContext(run_dir, run_dir / "ck"))
    assert resumed.details["sessions"] == 2
    assert resumed.loss == clean.loss


def test_no_clipping_still_logs_the_gradient_norm(local_config, make_spec, context):
    spec = make_spec(steps=4)
    result = train({**local_config, "optimizer": {"grad_clip": 0.0}}, spec, context)
    assert result.metrics["clipped_fraction"] == 0.0
    assert result.metrics["grad_norm_max"] > 0
