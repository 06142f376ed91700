"""`python -m flops_fit_torch.bench` and the plain reference loop, on tiny shapes (seconds).

The successful CLI run goes through `bench.main` in this process (torch and its optimizer
machinery take ~10 s to import, once); the bad-argument case also runs as a real
`python -m` subprocess, which exits before importing torch.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from flops_fit_core import ModelShape
from flops_fit_torch import bench
from flops_fit_torch.bench.reference import PlainGPT, plain_train
from flops_fit_torch.runtime import cpu_has_native_bf16

TINY = "--d-model 32 --layers 1 --heads 1 --seq-len 16 --batch 2 --steps 4"
KEYS = {
    "tokens_per_s",
    "flops_per_token",
    "achieved_flops_per_s",
    "matmul_peak_flops_per_s",
    "peak_flops_per_s",
    "mfu",
    "mfu_of_measured_peak",
    "precision",
    "device",
    "threads",
    "reference_tokens_per_s",
    "ratio",
}
NUMBERS = KEYS - {"precision", "device"}


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_cli_prints_one_json_object_with_every_number(capsys):
    # One thread and a small peak matmul keep this fast, also on a loaded machine.
    argv = [*TINY.split(), "--device", "cpu", "--threads", "1", "--peak-size", "512"]
    threads = torch.get_num_threads()
    assert bench.main([*argv, "--reference", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= KEYS
    for key in NUMBERS:
        assert isinstance(out[key], int | float) and math.isfinite(out[key]) and out[key] > 0, key
    assert 0 < out["mfu"] < 1.5
    assert (out["precision"], out["device"], out["threads"]) == ("fp32", "cpu", 1)
    # no data sheet for a CPU: the MFU is of the matmul peak measured in the same run
    assert out["peak_source"] == "measured matmul"
    assert out["peak_flops_per_s"] == out["matmul_peak_flops_per_s"]
    assert out["mfu"] == out["mfu_of_measured_peak"]
    assert out["compile_s"] is None and out["peak_memory_bytes"] is None  # eager, CPU
    assert out["first_step_s"] > 0
    shape = ModelShape(d_model=32, n_layers=1, n_heads=1, d_ff=128, vocab_size=256, seq_len=16)
    assert out["flops_per_token"] == shape.flops_per_token
    assert out["achieved_flops_per_s"] == pytest.approx(out["tokens_per_s"] * shape.flops_per_token)
    assert out["ratio"] == pytest.approx(out["tokens_per_s"] / out["reference_tokens_per_s"])
    assert torch.get_num_threads() == threads  # restored after the run


def test_bad_argument_exits_2_with_one_line():
    cmd = [sys.executable, "-m", "flops_fit_torch.bench", *TINY.split()]
    cmd[cmd.index("--heads") + 1] = "3"
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not divide" in lines[0], proc.stderr


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (("--heads", "32"), "odd"),  # head size 1
        (("--steps", "0"), "not positive"),
        (("--batch", "-2"), "not positive"),
        (("--d-model", "x"), "not an integer"),
        (("--precision", "fp16"), "invalid choice"),
        (("--vocab", "16"), "symbols"),
        (("--device", "tpu"), "--device"),
        (("--lr", "nan"), "positive finite"),
    ],
)
def test_bad_arguments_give_one_line_and_status_2(change, words, capsys):
    argv = TINY.split()
    flag, value = change
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    assert bench.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], captured.err


@pytest.mark.skipif(cpu_has_native_bf16(), reason="this CPU computes bf16 natively")
def test_bf16_on_a_cpu_without_native_bf16_is_refused(capsys):
    assert bench.main([*TINY.split(), "--device", "cpu", "--precision", "bf16"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "native bf16" in lines[0]


def test_importing_bench_has_no_side_effects():
    code = "import sys, flops_fit_torch.bench; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr


@pytest.mark.parametrize(
    "dims",
    [(32, 1, 1, 128, 256, 16), (64, 2, 2, 96, 300, 8), (128, 4, 2, 512, 256, 256)],
)
def test_reference_model_has_exactly_params_total(dims):
    d, layers, heads, d_ff, vocab, seq = dims
    shape = ModelShape(
        d_model=d, n_layers=layers, n_heads=heads, d_ff=d_ff, vocab_size=vocab, seq_len=seq
    )
    model = PlainGPT(shape)
    assert sum(p.numel() for p in model.parameters()) == shape.params_total


def test_reference_loop_learns():
    shape = ModelShape(d_model=32, n_layers=1, n_heads=2, d_ff=128, vocab_size=64, seq_len=16)
    run = plain_train(shape, 4, 10, warmup=0, threads=1, lr=1e-2, distinct_batches=1)
    assert run.params == shape.params_total
    assert len(run.losses) == 10 and all(math.isfinite(v) for v in run.losses)
    assert run.losses[-1] < run.losses[0] - 0.5
    assert run.tokens_per_s > 0 and run.threads == 1


@pytest.mark.parametrize(
    ("name", "precision", "peak"),
    [
        ("NVIDIA H100 80GB HBM3", "bf16", 989.4e12),
        ("NVIDIA H100 PCIe", "bf16", 756e12),
        ("NVIDIA H200", "bf16", 989.4e12),
        ("NVIDIA A100-SXM4-80GB", "bf16", 312e12),
        ("NVIDIA L4", "bf16", 121e12),
        ("NVIDIA L40S", "bf16", 362e12),
        ("NVIDIA GeForce RTX 3090", "bf16", None),  # unknown: measured instead
        ("NVIDIA H100 80GB HBM3", "fp32", None),  # the table is of bf16 peaks only
    ],
)
def test_the_data_sheet_peak_is_looked_up_by_device_name(name, precision, peak):
    assert bench.table_peak_flops_per_s(f"cuda:0 ({name})", precision) == peak


def test_the_sweep_benchmark_trains_the_shapes_one_at_a_time_and_packed(capsys):
    """`python -m flops_fit_torch.bench.sweep` through the real executor both ways, on the
    mock preset's two smallest shapes (its trainer answers at once: what is checked is the
    bench's own work; packed local runs have tests/test_packing.py); the numbers add up."""
    from flops_fit_torch.bench import sweep

    assert sweep.main(["--preset", "mock", "--steps", "2", "--limit", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["shapes"] == 2 and out["params"] == sorted(out["params"])
    assert out["runs_per_gpu"] == [1, 1]  # the mock trainer shares no GPU
    for name in ("one_at_a_time", "packed"):
        run = out[name]
        assert run["runs"] == 2 and run["tokens"] > 0
        assert run["tokens_per_s"] == pytest.approx(run["tokens"] / run["wall_s"])
    assert out["one_at_a_time"]["tokens"] == out["packed"]["tokens"]
    assert out["ratio"] == pytest.approx(
        out["packed"]["tokens_per_s"] / out["one_at_a_time"]["tokens_per_s"]
    )


def test_the_sweep_benchmark_refuses_a_bad_option_in_one_line(capsys):
    from flops_fit_torch.bench import sweep

    assert sweep.main(["--device", "cpu", "--set", "trainer.nonsense=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nonsense" in err[0], err
