"""Small models packed several to a GPU: how many, and results identical to one at a time.

The placement runs here as on a GPU machine (`process` with `gpus = 1`: each worker told its
GPU through CUDA_VISIBLE_DEVICES); with no GPU visible the `local` trainer trains on the CPU,
in fp32 on one thread, where a run is bitwise reproducible: so packed and unpacked results
must be equal bit for bit.
"""

from __future__ import annotations

import json

from flops_fit_core import ModelShape
from flops_fit_core.executors import ProcessExecutor, SerialExecutor
from flops_fit_torch import LocalTrainer
from flops_fit_torch.trainer import FULL_GPU_STEP_FLOPS


def test_runs_per_gpu_follow_the_work_of_a_step(make_spec):
    trainer = LocalTrainer()

    def shape(d, layers):
        return ModelShape(
            d_model=d, n_layers=layers, n_heads=d // 64, d_ff=4 * d, vocab_size=64, seq_len=256
        )

    small = make_spec(shape=shape(128, 2), batch_size=64)  # ~0.4M parameters
    large = make_spec(shape=shape(768, 12), batch_size=64)  # ~85M parameters
    assert trainer.runs_per_gpu(small) >= 8
    assert trainer.runs_per_gpu(large) == 1
    # a run's share is its step's work against a full GPU's
    for spec in (small, large):
        step = spec.shape.flops_per_token * spec.batch_size * spec.shape.seq_len
        assert trainer.runs_per_gpu(spec) == max(1, int(FULL_GPU_STEP_FLOPS // step))


def test_packed_runs_equal_runs_one_at_a_time_bit_for_bit(local_config, make_spec, tmp_path):
    config = {**local_config, "threads": 1, "device": "cpu"}
    specs = [make_spec(steps=8, seed=seed, learning_rate=lr) for seed, lr in [(0, 0.5), (1, 0.3)]]
    alone, packed = [], []
    SerialExecutor().map(LocalTrainer(config), specs, alone.append, run_dir=tmp_path / "alone")
    ProcessExecutor({"gpus": 1, "workers_per_gpu": 2, "workers": 2}).map(
        LocalTrainer(config), specs, packed.append, run_dir=tmp_path / "packed"
    )

    def by_id(results):
        return {r.experiment_id: r for r in results}

    alone, packed = by_id(alone), by_id(packed)
    assert set(alone) == set(packed) == {s.id for s in specs}
    for run_id, result in alone.items():
        other = packed[run_id]
        assert other.status == result.status == "ok"
        assert other.loss == result.loss and other.train_loss == result.train_loss
        assert json.dumps(other.curve) == json.dumps(result.curve)
        assert other.metrics["grad_norm_last"] == result.metrics["grad_norm_last"]
