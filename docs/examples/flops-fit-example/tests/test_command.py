"""What the `command` trainer does with a program that fails, lies or hangs."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from importlib.metadata import entry_points

import pytest
from flops_fit_core import (
    ConfigError,
    PluginHost,
    RunResult,
    TrainerContext,
    TrainingCancelled,
    TrainingError,
    run_one,
)
from flops_fit_core.testing import tiny_specs

from flops_fit_example import plugin
from flops_fit_example.command import CommandTrainer
from flops_fit_example.plotter import TokensPerParamPlotter
from flops_fit_example.toy_train import law


@pytest.fixture
def spec():
    return tiny_specs(1)[0]


@pytest.fixture
def context(tmp_path):
    return TrainerContext(run_dir=tmp_path, checkpoint_dir=tmp_path / "checkpoints" / "x")


def python(code: str) -> list[str]:
    """A command running `code` in this Python; `sys.argv[1]` is the {out} path.

    Braces in a command are placeholders: the code's own are doubled, as in `str.format`."""
    return [sys.executable, "-c", code.replace("{", "{{").replace("}", "}}"), "{out}"]


def test_the_entry_point_registers_both_classes():
    (ep,) = [ep for ep in entry_points(group="flops_fit") if ep.name == "example"]
    assert ep.load() is plugin
    host = PluginHost(load_entry_points=False)
    host.register(plugin, name="example", distribution="flops-fit-example", version="0.1.0")
    assert host.errors == []
    assert host.get("trainer", "command") is CommandTrainer
    assert host.get("plotter", "tokens-per-param") is TokensPerParamPlotter


def test_the_stand_in_program_answers_with_the_law(spec, context):
    result = CommandTrainer({}).train(spec, context)
    truth = law(spec.params, spec.tokens)
    assert result.status == "ok"
    assert abs(result.loss / truth - 1) < 0.05  # 0.5% noise
    assert result.curve is not None and result.curve[-1] == (spec.tokens, result.loss)
    assert (context.run_dir / "logs" / f"{spec.id}.log").read_text().startswith("step 1/")


def test_placeholders_are_filled_from_the_spec(spec, context):
    code = (
        "import json, sys; "
        "json.dump({'loss': 2.0, 'metrics': {'n': float(sys.argv[2]), 'd': float(sys.argv[3])},"
        " 'details': {'seen': sys.argv[4:]}}, open(sys.argv[1], 'w'))"
    )
    command = [*python(code), "{params}", "{tokens}", "{id}", "{budget}", "{schedule}"]
    result = CommandTrainer({"command": command}).train(spec, context)
    assert result.metrics == {"n": spec.params, "d": spec.tokens}
    assert result.details["seen"] == [spec.id, str(spec.budget), spec.schedule]
    assert json.loads((context.checkpoint_dir / "spec.json").read_text())["id"] == spec.id


def test_environment_variables_reach_the_program(spec, context):
    code = "import json, os, sys; "
    code += "json.dump({'loss': float(os.environ['LOSS'])}, open(sys.argv[1], 'w'))"
    result = CommandTrainer({"command": python(code), "env": {"LOSS": "3.5"}}).train(spec, context)
    assert result.loss == 3.5


@pytest.mark.parametrize(
    "code, says",
    [
        ("import sys; print('CUDA out of memory'); sys.exit(3)", "exited 3: CUDA out of memory"),
        ("pass", "exited 0 but wrote no result"),
        ("import sys; open(sys.argv[1], 'w').write('{not json')", "is not JSON"),
        ("import sys; open(sys.argv[1], 'w').write('[1, 2]')", "is not a JSON object"),
        ("import sys; open(sys.argv[1], 'w').write('{\"los\": 2.0}')", "los: unknown key"),
        ("import sys; open(sys.argv[1], 'w').write('{\"loss\": NaN}')", "loss:"),
        ("import sys; open(sys.argv[1], 'w').write('{\"loss\": -1}')", "loss:"),
    ],
)
def test_a_failing_program_is_a_training_error(spec, context, code, says):
    trainer = CommandTrainer({"command": python(code)})
    with pytest.raises(TrainingError, match=says.replace("(", r"\(")):
        trainer.train(spec, context)
    # as the executors record it: a failed result with the reason, and the sweep goes on
    result = run_one(trainer, spec, context)
    assert isinstance(result, RunResult)
    assert result.status == "failed" and result.cause == "trainer_error"
    assert says.split(":")[0] in result.error and "\n" not in result.error


def test_a_program_that_cannot_start_is_refused_before_training(spec, context):
    trainer = CommandTrainer({"command": ["surely-no-such-program-xyz", "{out}"]})
    with pytest.raises(ConfigError, match="not found"):
        trainer.validate_study(None)
    with pytest.raises(TrainingError, match="cannot start"):
        trainer.train(spec, context)


def test_a_run_past_its_timeout_is_stopped_and_fails(spec, context):
    trainer = CommandTrainer(
        {"command": python("import time; time.sleep(60)"), "timeout_s": 0.3, "stop_grace_s": 1}
    )
    started = time.monotonic()
    with pytest.raises(TrainingError, match=r"timeout_s = 0\.3 s"):
        trainer.train(spec, context)
    assert time.monotonic() - started < 10


def test_a_program_killed_from_outside_is_retried_on_rerun(spec, context):
    code = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    result = CommandTrainer({"command": python(code)}).train(spec, context)
    assert result.status == "failed" and result.cause == "worker_died"
    assert result.retried_on_rerun
    assert "SIGKILL" in result.error


def test_a_cancel_stops_the_program_at_once(spec, context, tmp_path):
    pid_file = tmp_path / "pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    trainer = CommandTrainer({"command": python(code), "stop_grace_s": 5})

    def cancel_once_started():
        while not pid_file.exists():
            time.sleep(0.01)
        context.cancel_event.set()

    threading.Thread(target=cancel_once_started, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(TrainingCancelled):
        trainer.train(spec, context)
    assert time.monotonic() - started < 10
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):  # stopped and reaped
        os.kill(pid, 0)


@pytest.mark.parametrize(
    "options, says",
    [
        ({"command": []}, "command"),
        ({"command": ["train", "{paramz}"]}, "unknown placeholder {paramz}"),
        ({"command": ["train", "{params"]}, "literal braces"),
        ({"env": {"X": "{nope}"}}, "unknown placeholder {nope}"),
        ({"timeout_s": 0}, "timeout_s"),
    ],
)
def test_bad_options_are_config_errors(options, says):
    with pytest.raises(ConfigError, match=says.replace("{", r"\{").replace("}", r"\}")):
        CommandTrainer(options)


def test_only_options_that_change_a_result_key_it():
    fast = CommandTrainer({"timeout_s": 5, "poll_s": 0.01})
    assert fast.info.options_digest == CommandTrainer({}).info.options_digest
    other = CommandTrainer({"env": {"SEED_OFFSET": "1"}})
    assert other.info.options_digest != CommandTrainer({}).info.options_digest
