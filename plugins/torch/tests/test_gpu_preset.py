"""The `gpu-small` preset: a real study sized for one H100-class GPU, checked here without one.

What a CPU can check: the plan (budgets, sizes, shapes a GPU likes, the time it is planned to
take), that the runs are packed on the GPU, and that a machine without a GPU refuses it in one
line before anything trains. The study itself is measured on a GPU (docs/performance.md).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from flops_fit_core import ConfigError, resolve_study
from flops_fit_core.config import load_study_config


def gpu_small(*overrides: str):
    return resolve_study(load_study_config(None, "gpu-small", list(overrides), {}))


@pytest.fixture
def stand_in_gpu(tmp_path, monkeypatch):
    """An `nvidia-smi` on PATH that lists one GPU, as on a GPU machine."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-stand-in)'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_the_plan_is_a_real_isoflop_grid_of_gpu_friendly_shapes():
    plan = gpu_small().plan
    budgets = sorted({spec.budget for spec in plan.experiments})
    assert len(budgets) >= 4
    for budget in budgets:
        sizes = [s.params for s in plan.experiments if s.budget == budget]
        assert len(sizes) >= 5
    params = [spec.params for spec in plan.experiments]
    assert min(params) < 1.5e6 and max(params) > 5e7  # small models to tens of millions
    largest = [s.params for s in plan.experiments if s.budget == budgets[-1]]
    assert min(largest) >= 0.9e6
    for spec in plan.experiments:
        shape = spec.shape
        assert shape.d_model % 64 == 0 and shape.d_model // shape.n_heads == 64
    assert not plan.warnings
    # planned to take about 5 minutes at the throughput the preset states for a packed sweep
    assert 4 * 60 <= plan.estimates["wall_time_s"]["h100-packed"] <= 6 * 60


def test_on_a_gpu_machine_it_validates_and_packs_its_small_models(stand_in_gpu):
    study = gpu_small()
    study.validate()
    trainer = study.trainer
    assert trainer.uses_gpu()
    packing = [trainer.runs_per_gpu(spec) for spec in study.plan.experiments]
    assert max(packing) >= 8 and min(packing) == 1  # the smallest share, the largest has it
    assert study.executor.config.workers_per_gpu == "auto"


@pytest.fixture
def no_gpu(monkeypatch):
    """This machine as one without a GPU: no nvidia-smi on PATH, no CUDA_VISIBLE_DEVICES."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    path = os.environ["PATH"].split(os.pathsep)
    monkeypatch.setenv(
        "PATH",
        os.pathsep.join(p for p in path if not os.path.exists(os.path.join(p, "nvidia-smi"))),
    )


def test_without_a_gpu_it_is_refused_in_one_line_before_anything_trains(tmp_path, no_gpu):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "flops_fit_core", "run", "--preset", "gpu-small", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert (
        len(lines) == 1
        and "shows no GPU that CUDA can use" in lines[0]
        and "--preset cpu-tiny" in lines[0]
    )
    assert not out.exists()


def test_a_cluster_executor_may_name_cuda_from_a_cpu_only_head_node(no_gpu):
    """The nodes that train have the GPUs: the driver's own machine is not checked."""
    with pytest.raises(ConfigError, match="shows no GPU that CUDA can use"):
        gpu_small().validate()
    gpu_small("executor.name=slurm").validate()
