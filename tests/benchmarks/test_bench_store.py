"""Loading 100,000 results: target < 2 s on 2 cores.

`load()` indexes every record (id and status: all that resuming needs) and builds a validated
`RunResult` only when one is asked for. Printed, against a reference measured in the same run
(plain `json.loads` of every line, no validation): the load plus the resume decision, and
separately the cost of building all 100,000 full records.
"""

from __future__ import annotations

import json
import time

from flops_fit_core import RunResult, TrainerInfo
from flops_fit_core.store import ResultsStore
from flops_fit_core.testing import tiny_specs

N = 100_000
TARGET_S = 2.0


def test_load_100k_results(tmp_path):
    path = tmp_path / "results.jsonl"
    spec = tiny_specs(1)[0]
    line = RunResult.success(
        spec, TrainerInfo(name="mock", version="0.1.0"), loss=3.1, tokens_trained=spec.tokens
    ).model_dump_json()
    path.write_text((line + "\n") * N)

    t0 = time.perf_counter()
    loaded = ResultsStore(path).load()
    statuses = loaded.statuses()
    load_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    records = loaded.records
    build_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    plain = [json.loads(ln) for ln in path.read_text().splitlines()]
    ref_s = time.perf_counter() - t0

    assert len(loaded) == N and len(plain) == N and len(records) == N and len(statuses) == 1
    verdict = "meets" if load_s < TARGET_S else "MISSES"
    print(
        f"\nload + resume decision over {N:,} results: {load_s:.2f} s "
        f"({verdict} the {TARGET_S} s target)"
        f"\nreference, json.loads of every line without validation: {ref_s:.2f} s; "
        f"ratio {load_s / ref_s:.2f}x"
        f"\nbuilding all {N:,} validated RunResults on top: {build_s:.2f} s "
        f"({build_s / ref_s:.2f}x the reference)"
    )
