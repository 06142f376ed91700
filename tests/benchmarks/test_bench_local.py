"""Benchmark: the `local` trainer against a plain PyTorch fp32 loop of the same GPT.

Opt-in: `uv run pytest tests/benchmarks/test_bench_local.py -m benchmark -n 0 -s`. For d_model 128
and 256 (4 layers, d/64 heads, T 256, V 256, batch 16, 20 steps) three loops are measured,
interleaved in one process so machine noise hits them alike: the plain loop
(`flops_fit_torch.bench.reference`: nanoGPT-style fp32, default AdamW), `local` with
precision=auto and `local` with precision=fp32 (the real trainer: data pipeline, schedule, fused
AdamW, clipping; its own tokens/s, timed after its warm-up steps, evaluation excluded). Each is
run REPEATS times, rotating the order; the median tokens/s is printed with the ratios local /
plain.

Targets (printed PASS/MISS, never asserted: timings depend on the machine and its load):
precision=auto >= 1.6x the plain loop, and fp32 never below 1.0x. precision=auto resolves to
bf16 only on CUDA or a CPU with native bf16; on other CPUs it is fp32, which the line says.
Only facts are asserted: both loops train params_total parameters to finite losses.

FLOPS_FIT_BENCH_THREADS (default: local's own choice, the free cores) and
FLOPS_FIT_BENCH_REPEATS (default 3) override the thread count and the repeats.
"""

from __future__ import annotations

import math
import os
import statistics

import torch

from flops_fit_core import ModelShape
from flops_fit_torch.bench import build_spec, local_warmup_steps, run_local
from flops_fit_torch.bench.reference import plain_train
from flops_fit_torch.runtime import cpu_has_native_bf16, resolve_device, resolve_threads

WIDTHS = (128, 256)
LAYERS, SEQ_LEN, VOCAB, BATCH, STEPS = 4, 256, 256, 16, 20
REPEATS = int(os.environ.get("FLOPS_FIT_BENCH_REPEATS", "3"))
THREADS = (
    int(os.environ["FLOPS_FIT_BENCH_THREADS"]) if "FLOPS_FIT_BENCH_THREADS" in os.environ else None
)
AUTO_TARGET, FP32_TARGET = 1.6, 1.0
VARIANTS = ("plain fp32", "local auto", "local fp32")


def _shape(d: int) -> ModelShape:
    return ModelShape(
        d_model=d, n_layers=LAYERS, n_heads=d // 64, d_ff=4 * d, vocab_size=VOCAB, seq_len=SEQ_LEN
    )


def _measure(shape: ModelShape, variant: str, threads: int, device) -> tuple[float, dict]:
    """One run of one variant on `device`: (tokens/s, facts to check and print)."""
    if variant == "plain fp32":
        warmup = local_warmup_steps(STEPS)  # the same steps untimed as `local`
        run = plain_train(shape, BATCH, STEPS - warmup, warmup, threads, device)
        assert run.params == shape.params_total
        assert all(math.isfinite(v) for v in run.losses)
        return run.tokens_per_s, {"precision": "fp32", "device": run.device}
    precision = variant.split()[1]
    result = run_local(build_spec(shape, BATCH, STEPS), precision, str(device), threads)
    assert result.status == "ok", result
    assert result.metrics["params_total"] == shape.params_total
    assert math.isfinite(result.loss) and math.isfinite(result.train_loss)
    return result.metrics["tokens_per_s"], dict(result.details)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def test_bench_local_against_plain_fp32():
    threads = resolve_threads(THREADS)
    device = resolve_device("auto")  # what `local` picks by default; the plain loop runs there too
    previous = torch.get_num_threads()
    loads = [os.getloadavg()[0]]
    lines = [
        f"\nlocal vs plain fp32 loop: {LAYERS} layers, T {SEQ_LEN}, V {VOCAB}, batch {BATCH}, "
        f"{STEPS} steps ({STEPS - local_warmup_steps(STEPS)} timed), median of {REPEATS} "
        f"interleaved repeats, {threads} threads, torch {torch.__version__}"
    ]
    try:
        for d in WIDTHS:
            shape = _shape(d)
            rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
            details: dict[str, dict] = {}
            for rep in range(REPEATS):
                order = VARIANTS[rep % 3 :] + VARIANTS[: rep % 3]
                for variant in order:
                    rate, info = _measure(shape, variant, threads, device)
                    rates[variant].append(rate)
                    loads.append(os.getloadavg()[0])
                    details[variant] = info
            median = {v: statistics.median(r) for v, r in rates.items()}
            spread = {v: (min(r), max(r)) for v, r in rates.items()}
            plain = median["plain fp32"]
            resolved = details["local auto"]["precision"]
            lines.append(
                f"d_model {d} ({d // 64} heads, {shape.params_total:,} params, "
                f"{shape.flops_per_token:,} FLOPs/token), device {details['local fp32']['device']}:"
            )
            best_plain = spread["plain fp32"][1]
            for v in VARIANTS:
                lo, hi = spread[v]
                lines.append(
                    f"  {v:<11} {median[v]:>9,.0f} tokens/s  (range {lo:,.0f} .. {hi:,.0f})"
                    + (
                        f"  {median[v] / plain:.2f}x plain (best vs best {hi / best_plain:.2f}x)"
                        if v != "plain fp32"
                        else ""
                    )
                )
            why = ""
            if resolved != "bf16":
                why = (
                    f" (auto resolved to {resolved}: "
                    + (
                        "no CUDA and this CPU has no native bf16, so auto trains fp32"
                        if not cpu_has_native_bf16() and not torch.cuda.is_available()
                        else "bf16 was not chosen on this device"
                    )
                    + f"; the {AUTO_TARGET}x target assumes bf16)"
                )
            for label, target, variant, extra in (
                ("auto", AUTO_TARGET, "local auto", why),
                ("fp32", FP32_TARGET, "local fp32", ""),
            ):
                ratio = median[variant] / plain
                best = spread[variant][1] / best_plain
                note = ""
                if (ratio >= target) != (best >= target):
                    note = (
                        f"; best vs best {best:.2f}x would {_verdict(best >= target)}: "
                        "the runs were too noisy to tell"
                    )
                lines.append(
                    f"  target {label} >= {target}x plain: {_verdict(ratio >= target)} "
                    f"at {ratio:.3f}x{extra}{note}"
                )
    finally:
        torch.set_num_threads(previous)
    cores = len(os.sched_getaffinity(0))
    noisy = max(loads) > threads + 0.5
    lines.append(
        f"(timings, not assertions. 1-min load average {min(loads):.1f} .. {max(loads):.1f} "
        f"during the runs, on {cores} cores; this benchmark accounts for about {threads}"
        + (
            ": other processes competed for the cores, so these numbers are noisy)"
            if noisy
            else ")"
        )
    )
    print("\n".join(lines))
