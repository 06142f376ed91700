"""`python -m flops_fit_torch.bench.sweep`: a study's sweep shapes packed on a GPU vs one at a time.

    python -m flops_fit_torch.bench.sweep --preset gpu-small --steps 300 [--json]

Takes the distinct shapes of the preset's plan (each with its batch and learning rate), gives
each a run of exactly `--steps` optimizer steps, and trains them all twice through the
`process` executor and the preset's `local` trainer: one at a time (`workers_per_gpu = 1`), then
packed (`workers_per_gpu = "auto"`: several small models share the GPU, `runs_per_gpu`).
Reported for each: the sweep's total tokens over its wall time (process start-up, compiling and
evaluation included: what a user waits for), and the ratio packed / one at a time.

`--device cpu` runs the same on a CPU (each run one thread), as the tests do; the placement is
then the GPU's (`gpus = 1`), with the runs side by side on the cores. Bad arguments give one
line on stderr and exit status 2. Importing this module does not import torch.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from flops_fit_core import ExperimentSpec, FlopsFitError

from . import _positive_int

PROG = "python -m flops_fit_torch.bench.sweep"

__all__ = ["main", "parse_args", "sweep_specs", "time_sweep"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        print(f"{PROG}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def sweep_specs(plan_specs: list[ExperimentSpec], steps: int, limit: int | None = None):
    """One spec per distinct shape of the plan (its first batch size and learning rate), of
    exactly `steps` steps, smallest first; the `limit` smallest if given."""
    seen: dict[Any, ExperimentSpec] = {}
    for spec in sorted(plan_specs, key=lambda s: (s.params, s.budget)):
        seen.setdefault(spec.shape, spec)
    out = []
    for spec in list(seen.values())[:limit]:
        tokens = steps * spec.batch_size * spec.shape.seq_len
        fields = spec.model_dump(exclude={"id"})
        fields.update(tokens=tokens, budget=float(tokens * spec.shape.flops_per_token))
        out.append(ExperimentSpec(**fields))
    return out


def time_sweep(trainer, specs: list[ExperimentSpec], executor_options: dict) -> dict[str, Any]:
    """Train `specs` through `process` with these options: tokens, wall time, tokens/s."""
    from flops_fit_core import get_host

    executor = get_host().create("executor", "process", executor_options)
    results = []
    with tempfile.TemporaryDirectory(prefix="flops-fit-sweep-bench-") as tmp:
        start = time.perf_counter()
        executor.map(trainer, specs, results.append, run_dir=Path(tmp))
        wall = time.perf_counter() - start
    failed = [r for r in results if r.status != "ok"]
    if failed:
        raise RuntimeError(f"{len(failed)} run(s) failed, e.g. {failed[0].error}")
    tokens = sum(r.tokens_trained for r in results)
    compile_s = sum((r.details or {}).get("compile_s") or 0.0 for r in results)
    return {
        "runs": len(results),
        "tokens": tokens,
        "wall_s": wall,
        "tokens_per_s": tokens / wall,
        "compile_s_total": compile_s,
    }


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="gpu-small", help="the study whose shapes are swept")
    p.add_argument("--steps", type=_positive_int, default=300, help="optimizer steps per run")
    p.add_argument("--limit", type=_positive_int, default=None, help="only the N smallest shapes")
    p.add_argument("--device", default=None, help="override the preset's trainer.device")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one option of the preset, as `flops-fit --set` (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The arguments, checked without importing torch; a bad one exits 2 with one line."""
    return _parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (0, 1 if a run failed, 2 bad arguments)."""
    args = parse_args(argv)
    from flops_fit_core import MAX_RUNS_PER_GPU, load_study_config, resolve_study

    overrides = list(args.overrides)
    cpu = args.device == "cpu"
    if args.device is not None:
        overrides.append(f"trainer.device={args.device}")
    if cpu:  # one thread a run: runs side by side on the cores, as on a GPU's SMs
        overrides += ["trainer.threads=1", "trainer.precision=fp32", "trainer.compile=false"]
    overrides.append("trainer.curve_points=0")
    try:
        study = resolve_study(load_study_config(None, args.preset, overrides, {}))
        study.validate()
        specs = sweep_specs(study.plan.experiments, args.steps, args.limit)
        trainer = study.trainer
        alone = time_sweep(trainer, specs, {"gpus": 1, "workers_per_gpu": 1})
        packed = time_sweep(trainer, specs, {"gpus": 1, "workers_per_gpu": "auto"})
    except FlopsFitError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{PROG}: run failed: {type(exc).__name__}: {message}", file=sys.stderr)
        return 1
    out = {
        "preset": args.preset,
        "shapes": len(specs),
        "params": [s.params for s in specs],
        "runs_per_gpu": [min(MAX_RUNS_PER_GPU, trainer.runs_per_gpu(s)) for s in specs],
        "steps": args.steps,
        "device": trainer.config.device,
        "one_at_a_time": alone,
        "packed": packed,
        "ratio": packed["tokens_per_s"] / alone["tokens_per_s"],
    }
    if args.json:
        print(json.dumps(out))
    else:
        for name in ("one_at_a_time", "packed"):
            r = out[name]
            print(
                f"{name:<14} {r['runs']} runs, {r['tokens']:,} tokens in {r['wall_s']:.1f} s: "
                f"{r['tokens_per_s']:,.0f} tokens/s (compiling {r['compile_s_total']:.0f} s in all)"
            )
        print(f"{'ratio':<14} {out['ratio']:.2f}x packed / one at a time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
