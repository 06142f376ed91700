"""Throughput of the `local` trainer on one shape: tokens/s, FLOP/s, MFU, and a plain baseline.

    python -m flops_fit_torch.bench --d-model 128 --layers 4 --heads 2 --seq-len 256 \\
        --batch 16 --steps 20 --precision auto [--reference] [--json]

Trains one `ExperimentSpec` of exactly `steps x batch x seq_len` tokens through `LocalTrainer`,
the real trainer (data pipeline, AdamW, schedule, clipping, final evaluation), in a temporary
run and checkpoint directory; the synthetic data comes from the usual cache. Reported:

* `tokens_per_s`: the trainer's own measurement (after its warm-up steps, evaluation excluded);
* `flops_per_token`: exact forward+backward FLOPs per token (Chinchilla appendix F), from the
  shape; `achieved_flops_per_s` = their product;
* `peak_flops_per_s`: the device's bf16 dense peak from its data sheet, looked up by its name
  (`DENSE_BF16_PEAKS`), or else `matmul_peak_flops_per_s`, measured here, in this process, on
  the run's device and in the run's precision: the best of a few large square matmuls;
  `mfu` = achieved / that peak (`mfu_of_measured_peak` against the measured one);
* `compile_s` (a compiled run: its first step less a timed step), `first_step_s`, and on CUDA
  `peak_memory_bytes` (the most allocated at once);
* with `--reference`, `reference_tokens_per_s` of the plain fp32 loop of the same shape
  (`flops_fit_torch.bench.reference`), measured in the same process, and `ratio` = local / plain.

Bad arguments give one line on stderr and exit status 2. Importing this module does nothing
(and does not import torch).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from flops_fit_core import ExperimentSpec, ModelShape

from ..data.config import ALPHABET

__all__ = [
    "DENSE_BF16_PEAKS",
    "build_spec",
    "local_warmup_steps",
    "main",
    "parse_args",
    "run_local",
    "table_peak_flops_per_s",
]

PROG = "python -m flops_fit_torch.bench"
DEFAULT_LR = 0.5
#: Square matmul sizes the peak is measured with, per device type.
PEAK_SIZES = {"cpu": (2048, 4096), "cuda": (4096, 8192), "mps": (2048, 4096)}
#: Timed repetitions per size, and the seconds one size may take before it stops repeating.
PEAK_REPEATS = 3
PEAK_BUDGET_S = 2.0
#: Each timed GPU repetition runs enough matmuls to last at least this long.
PEAK_MIN_REPEAT_S = 0.05
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class BenchError(Exception):
    """A bad argument or an impossible request: one line for stderr, exit status 2."""


def local_warmup_steps(steps: int, compiled: bool = False) -> int:
    """Steps `local` trains before it starts its clock (`loop.untimed_steps`; imported here, not
    at the top, so that importing this module does not import torch)."""
    from ..loop import untimed_steps

    return untimed_steps(steps, compiled)


#: Dense (no sparsity) bf16 tensor-core peaks, FLOP/s, from the vendors' data sheets, by a
#: pattern of `torch.cuda.get_device_name()`; the first that matches. "H100" alone is the SXM
#: part ("NVIDIA H100 80GB HBM3"), whose peak is the highest: an unknown variant is then
#: measured against too high a peak, never too low.
DENSE_BF16_PEAKS: tuple[tuple[str, float], ...] = (
    (r"H100.*PCIe", 756e12),
    (r"GH200|H200|H100|H800", 989.4e12),
    (r"A100|A800", 312e12),
    (r"L40S", 362e12),
    (r"\bL4\b", 121e12),
)


def table_peak_flops_per_s(device_name: str, precision: str) -> float | None:
    """The data-sheet bf16 dense peak of a CUDA device by its name; None if unknown or fp32."""
    if precision != "bf16":
        return None
    for pattern, peak in DENSE_BF16_PEAKS:
        if re.search(pattern, device_name):
            return peak
    return None


def build_spec(
    shape: ModelShape, batch: int, steps: int, lr: float = DEFAULT_LR, seed: int = 0
) -> ExperimentSpec:
    """The spec of a run of exactly `steps` optimizer steps of `batch x seq_len` tokens."""
    tokens = steps * batch * shape.seq_len
    return ExperimentSpec(
        budget=float(tokens) * shape.flops_per_token,
        params=shape.params_total,
        tokens=tokens,
        shape=shape,
        learning_rate=lr,
        batch_size=batch,
        seed=seed,
    )


def run_local(
    spec: ExperimentSpec,
    precision: str = "auto",
    device: str = "auto",
    threads: int | None = None,
    compile: bool | None = None,
):
    """Train `spec` through `LocalTrainer` in a throw-away run directory; its `RunResult`."""
    from flops_fit_core import TrainerContext

    from ..trainer import LocalTrainer

    options: dict[str, Any] = {"precision": precision, "device": device}
    if threads is not None:
        options["threads"] = threads
    if compile is not None:
        options["compile"] = compile
    trainer = LocalTrainer(options)
    with tempfile.TemporaryDirectory(prefix="flops-fit-bench-") as tmp:
        context = TrainerContext(run_dir=Path(tmp) / "run", checkpoint_dir=Path(tmp) / "ckpt")
        return trainer.train(spec, context)


def _synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def matmul_peak_flops_per_s(
    device: str = "cpu",
    precision: str = "fp32",
    sizes: tuple[int, ...] | None = None,
    repeats: int = PEAK_REPEATS,
) -> tuple[float, int]:
    """(FLOP/s, size) of the fastest of a few `n x n @ n x n` matmuls on `device`.

    In bf16 if `precision` is bf16, else fp32, with torch's current thread count. A size stops
    repeating once it has used `PEAK_BUDGET_S`, so a slow device still answers in seconds.
    """
    import torch

    dev = torch.device(device)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    sizes = sizes or PEAK_SIZES.get(dev.type, PEAK_SIZES["cpu"])
    best, best_size = 0.0, sizes[0]
    for index, n in enumerate(sizes):
        a = torch.randn(n, n, device=dev, dtype=dtype)
        b = torch.randn(n, n, device=dev, dtype=dtype)
        _synchronize(dev)
        start = time.perf_counter()
        torch.mm(a, b)  # warm-up (allocation, kernel choice); also sizes one repetition
        _synchronize(dev)
        once = time.perf_counter() - start
        inner = 1 if dev.type == "cpu" else max(1, math.ceil(PEAK_MIN_REPEAT_S / max(once, 1e-6)))
        spent = once if index == 0 else 0.0
        for _ in range(repeats):
            _synchronize(dev)
            start = time.perf_counter()
            for _ in range(inner):
                torch.mm(a, b)
            _synchronize(dev)
            elapsed = time.perf_counter() - start
            rate = 2.0 * n**3 * inner / elapsed
            if rate > best:
                best, best_size = rate, n
            spent += elapsed
            if spent >= PEAK_BUDGET_S:
                break
        del a, b
    return best, best_size


def _check_bf16(device, precision: str) -> None:
    """Refuse bf16 on a device that cannot compute it natively."""
    if precision != "bf16":
        return
    import torch

    from ..runtime import cpu_has_native_bf16

    if device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        raise BenchError(f"--precision bf16 asked for, but {device} does not support bf16")
    if device.type == "cpu" and not cpu_has_native_bf16():
        raise BenchError(
            "--precision bf16 asked for, but this CPU has no native bf16 (AVX-512 BF16 or AMX); "
            "emulated bf16 is many times slower than fp32: use --precision fp32 or auto"
        )
    if device.type == "mps":
        try:
            torch.ones(1, dtype=torch.bfloat16, device=device)
        except (RuntimeError, TypeError) as exc:
            raise BenchError(f"--precision bf16 asked for, but MPS cannot: {exc}") from None


def run_bench(
    shape: ModelShape,
    batch: int,
    steps: int,
    precision: str = "auto",
    device: str = "auto",
    *,
    lr: float = DEFAULT_LR,
    threads: int | None = None,
    compile: bool | None = None,
    reference: bool = False,
    peak_sizes: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """Train the shape through `local`, measure the matmul peak (and the plain loop): a dict."""
    import torch

    from ..runtime import resolve_device

    try:
        resolved = resolve_device(device)
    except RuntimeError as exc:
        raise BenchError(str(exc)) from None
    _check_bf16(resolved, precision)
    spec = build_spec(shape, batch, steps, lr)
    previous_threads = torch.get_num_threads()
    try:
        result = run_local(spec, precision, device, threads, compile)
        return _report(result, spec, steps, resolved, reference, peak_sizes)
    finally:
        torch.set_num_threads(previous_threads)


def _report(result, spec: ExperimentSpec, steps: int, run_device, reference, peak_sizes):
    """The bench's numbers from a finished run, plus the peak and baseline measured now."""
    import torch

    shape, batch = spec.shape, spec.batch_size
    details, metrics = result.details, result.metrics
    if "tokens_per_s" not in metrics:
        raise RuntimeError(f"the run reported no tokens_per_s (metrics: {sorted(metrics)})")
    tokens_per_s = metrics["tokens_per_s"]
    flops_per_token = shape.flops_per_token
    achieved = tokens_per_s * flops_per_token
    # The trainer leaves torch's thread count at the run's; the peak and the baseline use it too.
    torch.set_num_threads(int(details["threads"]))
    measured, peak_size = matmul_peak_flops_per_s(run_device, details["precision"], peak_sizes)
    listed = table_peak_flops_per_s(str(details["device"]), details["precision"])
    peak = listed if listed is not None else measured
    compiled = bool(details["compile"])
    out: dict[str, Any] = {
        "tokens_per_s": tokens_per_s,
        "flops_per_token": flops_per_token,
        "achieved_flops_per_s": achieved,
        "peak_flops_per_s": peak,
        "peak_source": "data sheet (bf16 dense)" if listed is not None else "measured matmul",
        "mfu": achieved / peak,
        "matmul_peak_flops_per_s": measured,
        "matmul_peak_size": peak_size,
        "mfu_of_measured_peak": achieved / measured,
        "compile_s": details.get("compile_s"),
        "first_step_s": details.get("first_step_s"),
        "peak_memory_bytes": details.get("peak_memory_bytes"),
        "precision": details["precision"],
        "device": details["device"],
        "threads": details["threads"],
        "compile": compiled,
        "shape": shape.model_dump(),
        "batch": batch,
        "steps": steps,
        "timed_steps": steps - local_warmup_steps(steps, compiled),
        "params_total": shape.params_total,
        "train_loss": result.train_loss,
        "eval_loss": result.loss,
        "torch": details.get("torch", torch.__version__),
    }
    if reference:
        from .reference import plain_tokens_per_s

        warmup = local_warmup_steps(steps, compiled)
        ref = plain_tokens_per_s(
            shape, batch, steps - warmup, warmup, int(details["threads"]), run_device
        )
        out["reference_tokens_per_s"] = ref
        out["ratio"] = tokens_per_s / ref
    return out


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line, never a usage block."""

    def error(self, message: str):
        raise BenchError(message)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not positive")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} is not a positive finite number")
    return value


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--d-model", type=_positive_int, required=True)
    p.add_argument("--layers", type=_positive_int, required=True)
    p.add_argument("--heads", type=_positive_int, required=True)
    p.add_argument("--seq-len", type=_positive_int, required=True)
    p.add_argument("--batch", type=_positive_int, required=True, help="sequences per step")
    p.add_argument("--steps", type=_positive_int, required=True, help="optimizer steps")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    p.add_argument("--vocab", type=_positive_int, default=256)
    p.add_argument("--d-ff", type=_positive_int, default=None, help="default 4 x d-model")
    p.add_argument("--device", default="auto", help="auto, cpu, mps, cuda or cuda:N")
    p.add_argument("--threads", type=_positive_int, default=None, help="CPU threads")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--lr", type=_positive_float, default=DEFAULT_LR, help="u-muP global lr")
    p.add_argument(
        "--peak-size",
        type=_positive_int,
        action="append",
        default=None,
        help="square matmul size for the peak (repeatable; default per device)",
    )
    p.add_argument("--reference", action="store_true", help="also time the plain fp32 loop")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the arguments without importing torch; `BenchError` if they are bad."""
    args = _parser().parse_args(argv)
    d, heads = args.d_model, args.heads
    if d % heads:
        raise BenchError(f"--heads {heads} does not divide --d-model {d}")
    if (d // heads) % 2:
        raise BenchError(
            f"head size {d // heads} (--d-model {d} / --heads {heads}) is odd; "
            "rotary positions need an even head size"
        )
    if args.vocab < len(ALPHABET):
        raise BenchError(
            f"--vocab {args.vocab} is below the synthetic language's {len(ALPHABET)} symbols"
        )
    if not _DEVICE.match(args.device):
        raise BenchError(f"--device {args.device!r}: use auto, cpu, mps, cuda or cuda:N")
    args.d_ff = args.d_ff or 4 * d
    return args


def format_table(out: dict[str, Any]) -> str:
    """The result as aligned `name  value` lines."""
    s = out["shape"]
    rows = [
        (
            "shape",
            f"d {s['d_model']}, {s['n_layers']} layers, {s['n_heads']} heads, d_ff {s['d_ff']}, "
            f"V {s['vocab_size']}, T {s['seq_len']}; batch {out['batch']}, {out['steps']} steps",
        ),
        ("device", f"{out['device']} (threads {out['threads']}, compile {out['compile']})"),
        ("precision", out["precision"]),
        ("tokens_per_s", f"{out['tokens_per_s']:,.0f}"),
        ("flops_per_token", f"{out['flops_per_token']:,}"),
        ("achieved_flops_per_s", f"{out['achieved_flops_per_s']:.4g}"),
        ("peak_flops_per_s", f"{out['peak_flops_per_s']:.4g} ({out['peak_source']})"),
        ("mfu", f"{out['mfu']:.1%}"),
        (
            "matmul_peak_flops_per_s",
            f"{out['matmul_peak_flops_per_s']:.4g} ({out['matmul_peak_size']}^2 "
            f"{out['precision']} matmul; MFU of it {out['mfu_of_measured_peak']:.1%})",
        ),
        ("train_loss", f"{out['train_loss']:.4f}"),
    ]
    if out["compile_s"] is not None:
        first = out["first_step_s"]
        rows.append(("compile_s", f"{out['compile_s']:.1f} (first step {first:.1f} s)"))
    if out["peak_memory_bytes"] is not None:
        rows.append(("peak_memory", f"{out['peak_memory_bytes'] / 2**30:.2f} GiB"))
    if "ratio" in out:
        rows.append(
            ("reference_tokens_per_s", f"{out['reference_tokens_per_s']:,.0f} (plain fp32)")
        )
        rows.append(("ratio", f"{out['ratio']:.2f}x local / plain"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (0, 1 if the run failed, 2 bad arguments)."""
    try:
        args = parse_args(argv)
        shape = ModelShape(
            d_model=args.d_model,
            n_layers=args.layers,
            n_heads=args.heads,
            d_ff=args.d_ff,
            vocab_size=args.vocab,
            seq_len=args.seq_len,
        )
        out = run_bench(
            shape,
            args.batch,
            args.steps,
            args.precision,
            args.device,
            lr=args.lr,
            threads=args.threads,
            compile=args.compile,
            reference=args.reference,
            peak_sizes=tuple(args.peak_size) if args.peak_size else None,
        )
    except BenchError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{PROG}: run failed: {type(exc).__name__}: {message}", file=sys.stderr)
        return 1
    print(json.dumps(out) if args.json else format_table(out))
    return 0
