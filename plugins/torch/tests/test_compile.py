"""`torch.compile` (inductor) trains what eager trains, and its compiling is timed apart.

On by default on CUDA only; here it is forced on a CPU (inductor's C++ backend) through the
real trainer. A tiny shape still takes about 30 s to compile on 2 cores: one test.
"""

from __future__ import annotations

import pytest
import torch

from flops_fit_core import ModelShape
from flops_fit_torch.bench import build_spec, run_local


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_compiled_and_eager_runs_agree_and_compiling_is_reported_apart():
    shape = ModelShape(d_model=32, n_layers=1, n_heads=2, d_ff=128, vocab_size=64, seq_len=32)
    spec = build_spec(shape, batch=8, steps=30)
    eager = run_local(spec, "fp32", "cpu", threads=1, compile=False)
    compiled = run_local(spec, "fp32", "cpu", threads=1, compile=True)
    assert (eager.details["compile"], compiled.details["compile"]) == (False, True)
    # fused kernels sum in another order: equal to float rounding, not bit for bit
    assert compiled.loss == pytest.approx(eager.loss, abs=1e-4)
    assert compiled.train_loss == pytest.approx(eager.train_loss, abs=1e-4)
    assert eager.loss < 3.9  # it learned something (ln 64 = 4.16), so the agreement means it
    # the compiling happened in the first step, and is reported apart from throughput
    assert eager.details["compile_s"] is None
    assert compiled.details["compile_s"] > 1.0
    assert compiled.details["first_step_s"] >= compiled.details["compile_s"]
    step_s = spec.batch_size * shape.seq_len / compiled.metrics["tokens_per_s"]
    assert step_s < compiled.details["compile_s"]  # throughput counts no compiling
