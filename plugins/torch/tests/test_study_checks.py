"""What the `local` trainer checks before anything trains, and what keys its results.

A mistake that would fail every run (a schedule it does not know, a vocabulary below its
tokenizer's, a u-muP option under standard parametrization, a split local files do not have)
is one `ConfigError` line at `config validate`, not a failed run each. Results are keyed by the
options that can change a loss, not by threads or checkpoint cadence. A checkpoint made under
other options is not resumed, and the result says so and names what differs.
"""

from __future__ import annotations

import pytest

from flops_fit_core import ConfigError, TrainerContext, TrainingCancelled, resolve_study
from flops_fit_core.config import load_study_config
from flops_fit_core.schemas import parse_model
from flops_fit_torch import LocalTrainer
from flops_fit_torch.checkpoint import CHECKPOINT_FILE, save_checkpoint
from flops_fit_torch.config import ModelConfig
from flops_fit_torch.data import DataConfig

# --- outcome options -------------------------------------------------------------------


def digest(options: dict) -> str:
    return LocalTrainer(options).info.options_digest


@pytest.mark.parametrize(
    "change",
    [
        {"optimizer": {"beta2": 0.99}},
        {"optimizer": {"weight_decay": 0.0}},
        {"model": {"readout_mult": 2.0}},
        {"schedule": {"warmup": 0.1}},
        {"data": {"eval_tokens": 4096}},
        {"data": {"tokenizer": "byte"}},
        {"precision": "fp32"},
        {"device": "cpu"},
        {"micro_batch_size": 4},
        {"eval_batch_size": 8},
        {"curve_points": 4},
        {"compile": False},
    ],
)
def test_options_that_can_change_a_loss_change_the_results_key(change):
    assert digest(change) != digest({})


@pytest.mark.parametrize(
    "change",
    [
        {"threads": 3},
        {"data": {"cache_dir": "/somewhere/else"}},
        {"checkpoint_interval_s": 5.0},
        {"checkpoint_every_steps": 7},
        {"log_every_steps": 1},
    ],
)
def test_speed_and_bookkeeping_options_keep_the_results_key(change):
    assert digest(change) == digest({})
    assert LocalTrainer(change).outcome_options() == LocalTrainer({}).outcome_options()


# --- validate_study, through the real study path --------------------------------------


def study(*overrides: str):
    return resolve_study(load_study_config(None, "cpu-tiny", list(overrides), {}))


def one_line_config_error(*overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        study(*overrides).validate()
    message = str(info.value)
    assert "\n" not in message
    return message


def test_the_vocabulary_checked_is_the_one_the_data_has(data_config):
    from flops_fit_torch.data import prepare_data

    config = parse_model(DataConfig, data_config, "data")
    assert config.vocab_size == prepare_data(config).vocab_size == 64
    assert parse_model(DataConfig, {**data_config, "tokenizer": "byte"}, "data").vocab_size == 256


def test_the_default_study_validates():
    study().validate()


def test_a_schedule_the_trainer_does_not_know_is_a_config_error():
    message = one_line_config_error("planner.schedule=cosin")
    assert "'cosin'" in message and "planner.schedule" in message
    assert "cosine, wsd, constant" in message


@pytest.mark.parametrize(
    ("overrides", "needed", "tokenizer"),
    [
        (["planner.vocab_size=32"], 64, "symbols"),
        (["trainer.data.tokenizer=byte"], 256, "byte"),
        (["trainer.data.tokenizer=bpe", "trainer.data.bpe_vocab_size=1000"], 1000, "bpe"),
    ],
)
def test_a_vocabulary_below_the_tokenizers_is_a_config_error(overrides, needed, tokenizer):
    message = one_line_config_error(*overrides)
    assert f"planner.vocab_size={needed}" in message
    assert f"{tokenizer!r} tokenizer" in message


def test_a_held_out_set_shorter_than_one_sequence_is_a_config_error():
    message = one_line_config_error("planner.seq_len=2048", "trainer.data.eval_tokens=1024")
    assert "trainer.data.eval_tokens" in message and "2049" in message


def test_a_synthetic_corpus_shorter_than_one_sequence_is_a_config_error():
    message = one_line_config_error("trainer.data.synthetic.tokens=32")
    assert "trainer.data.synthetic.tokens" in message and "65" in message


def test_config_validate_on_the_command_line_says_it_in_one_line(capsys):
    from flops_fit_core.cli import main

    capsys.readouterr()
    code = main(["config", "validate", "--set", "planner.schedule=cosin"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "cosin" in lines[0], err


# --- options that nothing would read ---------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"attn_mult": 2.0}, "attn_mult"),
        ({"residual_mult": 0.5, "readout_mult": 2.0}, "readout_mult, residual_mult"),
        ({"residual_attn_ratio": 2.0}, "residual_attn_ratio"),
    ],
)
def test_umup_options_under_standard_parametrization_are_config_errors(options, named):
    with pytest.raises(ConfigError, match=named):
        parse_model(ModelConfig, {"parametrization": "sp", **options}, "trainer 'local' model")
    # u-muP reads them; sp with every default and sp's own norm_eps are fine
    parse_model(ModelConfig, options, "model")
    parse_model(ModelConfig, {"parametrization": "sp", "norm_eps": 1e-5}, "model")


def test_local_files_have_only_the_train_split():
    files = {"source": "files", "files": ["a.txt"]}
    with pytest.raises(ConfigError, match="split") as info:
        parse_model(DataConfig, {**files, "split": "test"}, "trainer 'local' data")
    assert "'train'" in str(info.value)
    for split in ("train", "train[:90%]", "train[:1000]"):
        assert parse_model(DataConfig, {**files, "split": split}, "data").split == split
    assert parse_model(DataConfig, {"source": "hub", "name": "x/y", "split": "test"}, "d")


# --- checkpoints made under other options ----------------------------------------------


def test_a_checkpoint_of_other_options_is_dropped_with_a_warning_naming_them(
    local_config, make_spec, context
):
    spec = make_spec(steps=4)
    LocalTrainer(local_config).train(spec, context)
    other = {**local_config, "optimizer": {"weight_decay": 0.0}}
    result = LocalTrainer(other).train(spec, context)
    assert result.details["sessions"] == 1
    notes = [w for w in result.warnings if "checkpoint" in w]
    assert len(notes) == 1, result.warnings
    assert "optimizer.weight_decay 0.1 -> 0.0" in notes[0]
    # the same options again resume it, silently
    again = LocalTrainer(other).train(spec, context)
    assert again.details["sessions"] == 2
    assert not [w for w in again.warnings if "checkpoint" in w]


def test_a_checkpoint_of_an_older_version_is_dropped_as_made_under_unknown_options(
    local_config, make_spec, context
):
    save_checkpoint(context.checkpoint_dir, "0123456789abcdef", {"step": 3})  # no hash inputs
    result = LocalTrainer(local_config).train(make_spec(steps=4), context)
    assert result.details["sessions"] == 1
    assert any("unknown options" in w for w in result.warnings), result.warnings


def test_an_unreadable_checkpoint_is_dropped_with_a_warning(local_config, make_spec, context):
    context.checkpoint_dir.mkdir(parents=True)
    (context.checkpoint_dir / CHECKPOINT_FILE).write_bytes(b"torn")
    result = LocalTrainer(local_config).train(make_spec(steps=4), context)
    assert result.status == "ok" and result.details["sessions"] == 1
    assert any("could not be read" in w for w in result.warnings), result.warnings


def test_resuming_with_other_threads_starts_over_and_ends_bitwise_like_a_clean_run(
    local_config, make_spec, tmp_path
):
    """Threads change the order of floating-point sums, so a checkpoint made with one count
    is not resumed with another: the run starts over, and ends exactly like a clean run."""
    spec = make_spec(steps=8)
    config = {**local_config, "checkpoint_every_steps": 2, "curve_points": 4}
    clean = LocalTrainer(config).train(spec, TrainerContext(tmp_path / "c", tmp_path / "c" / "k"))

    context = TrainerContext(tmp_path / "r", tmp_path / "r" / "k")
    steps = []

    def cancel_after_five(fraction, message=None):
        steps.append(fraction)
        if len(steps) == 5:
            context.cancel_event.set()

    context.progress = cancel_after_five
    import flops_fit_torch.loop as loop

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop, "PROGRESS_INTERVAL_S", 0.0)
        with pytest.raises(TrainingCancelled):
            LocalTrainer({**config, "threads": 1}).train(spec, context)
    assert (context.checkpoint_dir / CHECKPOINT_FILE).is_file()
    context.cancel_event.clear()
    context.progress = lambda fraction, message=None: None

    resumed = LocalTrainer(config).train(spec, context)
    assert resumed.details["sessions"] == 1
    assert any("threads 1 -> 2" in w for w in resumed.warnings), resumed.warnings
    assert resumed.loss == clean.loss
    assert resumed.train_loss == clean.train_loss
    assert resumed.curve == clean.curve
