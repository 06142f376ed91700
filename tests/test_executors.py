"""The built-in executors pass the executor contract, and the pipeline resumes by id."""

from __future__ import annotations

import pytest

from flops_fit_core.executors import ProcessExecutor, SerialExecutor
from flops_fit_core.testing import ExecutorContract


class TestSerialExecutor(ExecutorContract):
    @pytest.fixture
    def plugin(self):
        return SerialExecutor


class TestProcessExecutor(ExecutorContract):
    @pytest.fixture
    def plugin(self):
        return ProcessExecutor

    @pytest.fixture
    def plugin_config(self):
        return {"workers": 2}


def test_process_executor_really_uses_other_processes(tmp_path):
    import os

    from flops_fit_core.testing import EchoTrainer, tiny_specs

    devices = []
    ProcessExecutor({"workers": 2}).map(
        EchoTrainer(), tiny_specs(4), lambda r: devices.append(r.device), run_dir=tmp_path
    )
    assert len(devices) == 4
    assert f"pid-{os.getpid()}" not in devices


def _notes(run_dir):
    import json

    from flops_fit_core.testing import ECHO_DIR

    return [json.loads(p.read_text()) for p in sorted((run_dir / ECHO_DIR).glob("*.json"))]


def _most_at_once(notes) -> int:
    """The most runs of `notes` that were training at one moment."""
    events = sorted([(n["started"], 1) for n in notes] + [(n["ended"], -1) for n in notes])
    at_once = most = 0
    for _, change in events:
        at_once += change
        most = max(most, at_once)
    return most


@pytest.mark.parametrize(
    ("options", "trainer_says", "per_gpu"),
    [
        ({"workers_per_gpu": 2, "workers": 8}, 3, 2),  # as configured, whatever the trainer
        ({"workers": 8}, 3, 3),  # auto: as the trainer says for the run's size
        ({"workers": 2}, 3, 1),  # capped by the runs in flight in all (default: CPU count)
    ],
)
def test_runs_are_packed_on_gpus_each_worker_seeing_its_own(
    tmp_path, options, trainer_says, per_gpu
):
    """Two GPUs (none visible here: the placement is what is tested, as on a GPU machine):
    each run's worker sees one GPU through CUDA_VISIBLE_DEVICES, both GPUs are used, and no
    GPU ever holds more runs at once than it may."""
    from flops_fit_core.testing import EchoTrainer, tiny_specs

    trainer = EchoTrainer({"delay_s": 0.3, "runs_per_gpu": trainer_says, "record": True})
    results = []
    ProcessExecutor({"gpus": 2, **options}).map(
        trainer, tiny_specs(6), results.append, run_dir=tmp_path
    )
    assert sorted(r.experiment_id for r in results) == sorted(s.id for s in tiny_specs(6))
    notes = _notes(tmp_path)
    assert {n["gpu"] for n in notes} == {"0", "1"}
    for gpu in ("0", "1"):
        on_it = [n for n in notes if n["gpu"] == gpu]
        assert _most_at_once(on_it) <= per_gpu
    if per_gpu > 1:  # it really packs: more runs at once than GPUs
        assert _most_at_once(notes) > 2


def test_gpus_beyond_the_visible_ones_are_refused_in_one_line(tmp_path, monkeypatch):
    from flops_fit_core import ConfigError
    from flops_fit_core.testing import EchoTrainer, tiny_specs

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    with pytest.raises(ConfigError, match=r"gpus = 4, but this machine shows 2 \(3, 5\)"):
        ProcessExecutor({"gpus": 4}).map(EchoTrainer(), tiny_specs(2), print, run_dir=tmp_path)


def test_visible_gpus_are_named_as_cuda_visible_devices_names_them(monkeypatch):
    from flops_fit_core.executors import visible_gpus

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert visible_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,-1,2")  # CUDA stops at an invalid entry
    assert visible_gpus() == ["1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []


@pytest.mark.parametrize("value", [0, 65, "many", 2.5, True, -1])
def test_a_bad_workers_per_gpu_is_one_clear_line(value):
    from flops_fit_core import ConfigError

    with pytest.raises(ConfigError) as info:
        ProcessExecutor({"workers_per_gpu": value})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("executor 'process': workers_per_gpu: must be \"auto\" or a whole")


@pytest.mark.parametrize(("value", "parsed"), [("auto", "auto"), (3, 3), ("4", 4)])
def test_workers_per_gpu_takes_auto_or_a_count(value, parsed):
    assert ProcessExecutor({"workers_per_gpu": value}).config.workers_per_gpu == parsed
