"""A stand-in training program: what the `command` trainer runs unless told otherwise.

    python -m flops_fit_example.toy_train --params N --tokens D --out result.json
        [--seed S] [--id RUN] [--noise 0.005] [--seconds 0.1] [--curve-points 8]

It "trains" a model of N parameters on D tokens by evaluating Chinchilla's fitted law
(Hoffmann et al. 2022, Approach 3)

    L(N, D) = 1.69 + 406.4 / N**0.34 + 410.7 / D**0.28

times log-normal noise exp(noise * z), z drawn from a generator seeded by the seed and the run
id alone (the same run gives the same loss in any process), pretends to take `--seconds`,
printing a line per step, and writes what the `command` trainer reads:

    {"loss": 2.41, "train_loss": 2.40, "tokens_trained": D,
     "curve": [[tokens, loss], ...], "details": {"schedule": "anytime"}}

The curve is the law along the run (what a run trained to that many tokens reaches, hence the
schedule `anytime`), so the `envelope` fitter and the `curves` figure can read it. Replace it
with your own program: anything that writes `{"loss": ...}` to the `--out` path and exits 0.

Only the standard library is imported: the program starts in a few milliseconds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path

#: Chinchilla's fitted law (Hoffmann et al. 2022, Approach 3).
E, A, B, ALPHA, BETA = 1.69, 406.4, 410.7, 0.34, 0.28


def law(params: float, tokens: float) -> float:
    """L(N, D) = E + A / N**alpha + B / D**beta, noise-free."""
    return E + A / params**ALPHA + B / tokens**BETA


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m flops_fit_example.toy_train",
        description="Pretend to train a model of N parameters on D tokens; write its loss.",
    )
    parser.add_argument("--params", type=int, required=True, help="N, parameters")
    parser.add_argument("--tokens", type=int, required=True, help="D, training tokens")
    parser.add_argument("--out", type=Path, required=True, help="where to write the result JSON")
    parser.add_argument("--seed", type=int, default=0, help="replicate seed")
    parser.add_argument("--id", default="", help="run id: with the seed, it seeds the noise")
    parser.add_argument("--noise", type=float, default=0.005, help="sigma of the log noise")
    parser.add_argument("--seconds", type=float, default=0.0, help="pretend to train this long")
    parser.add_argument("--curve-points", type=int, default=8, help="loss curve points (0: none)")
    args = parser.parse_args(argv)
    if args.params <= 0 or args.tokens <= 0:
        parser.error("--params and --tokens must be positive")
    if args.noise < 0 or args.seconds < 0 or args.curve_points < 0:
        parser.error("--noise, --seconds and --curve-points must not be negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A string seed is hashed with SHA-512 by `random`: the same in every process.
    rng = random.Random(f"{args.seed}:{args.id}")
    z_eval, z_train = rng.gauss(0.0, 1.0), rng.gauss(0.0, 1.0)
    truth = law(args.params, args.tokens)
    loss = truth * math.exp(args.noise * z_eval)

    steps = max(1, args.curve_points)
    for step in range(1, steps + 1):
        time.sleep(args.seconds / steps)
        print(f"step {step}/{steps}", flush=True)

    curve = []
    if args.curve_points:
        n = args.curve_points
        for i in range(n):
            # log-spaced from 1% of D to D; the last point is the final loss itself
            tokens = args.tokens * 100 ** ((i + 1 - n) / max(n - 1, 1))
            point = law(args.params, tokens) * math.exp(args.noise * rng.gauss(0.0, 1.0))
            curve.append([tokens, point])
        curve[-1] = [float(args.tokens), loss]

    result = {
        "loss": loss,
        "train_loss": truth * math.exp(args.noise * z_train),
        "tokens_trained": args.tokens,
        "details": {"schedule": "anytime"},
    }
    if curve:
        result["curve"] = curve
    # Write it whole or not at all: a half-written file must never be read as a result.
    partial = args.out.with_name(args.out.name + ".partial")
    partial.write_text(json.dumps(result))
    os.replace(partial, args.out)
    print(f"loss {loss:.4f} written to {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
