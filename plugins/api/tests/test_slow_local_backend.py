"""The `local` trainer behind `flops-fit serve` (CPU, fp32): a shrunk study through the server
gives the losses of training it here, and a server killed mid-run resumes the run from its
checkpoint to the same loss. Slow (real training): `uv run pytest -m slow plugins/api`."""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest

from flops_fit_api import ApiTrainer
from flops_fit_core import SweepPlan, TrainerContext
from flops_fit_core.cli import main

pytestmark = pytest.mark.slow

#: The default preset's study at three tiny budgets on a small synthetic corpus (as the core's
#: tests/test_local_study.py shrinks it).
PLANNER = [
    "planner.min_flops=1e10",
    "planner.max_flops=4e10",
    "planner.n_budgets=3",
    "planner.sizes_per_budget=3",
    "planner.span=3.0",
    "fitter.name='empirical'",
    "executor.name='serial'",
    "plot.names=[]",
]
TRAINER = [
    "trainer.data.synthetic.words=512",
    "trainer.data.synthetic.tokens=262144",
    "trainer.data.eval_tokens=4096",
    "trainer.checkpoint_every_steps=5",
]


def _sets(items):
    return [a for item in items for a in ("--set", item)]


def _losses(run_dir) -> dict[str, float]:
    records = [json.loads(line) for line in (run_dir / "results.jsonl").open()]
    return {r["experiment_id"]: r["loss"] for r in records if r["status"] == "ok"}


@pytest.fixture(scope="module")
def local_study(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        cache = tmp_path_factory.mktemp("cache")
        mp.setenv("FLOPS_FIT_CACHE", str(cache))
        run = tmp_path_factory.mktemp("local") / "run"
        assert main(["-q", "run", "--out", str(run), *_sets(PLANNER + TRAINER)]) == 0
        yield run, cache


def test_a_study_through_the_server_gives_the_local_losses(
    local_study, make_server, monkeypatch, tmp_path
):
    local, cache = local_study
    monkeypatch.setenv("FLOPS_FIT_CACHE", str(cache))
    server = make_server("--workers", "1", *_sets(TRAINER)).start()
    monkeypatch.setenv("FLOPS_FIT_TOKEN", server.token)
    remote = tmp_path / "remote"
    args = ["-q", "run", "--out", str(remote), *_sets(PLANNER), "--trainer", "api"]
    assert main([*args, "--set", f"trainer.base_url={server.url}"]) == 0
    assert _losses(remote) == _losses(local) and len(_losses(local)) == 9


def test_a_server_killed_mid_run_resumes_it_from_its_checkpoint(
    local_study, make_server, monkeypatch, tmp_path
):
    local, cache = local_study
    monkeypatch.setenv("FLOPS_FIT_CACHE", str(cache))
    server = make_server("--workers", "1", *_sets(TRAINER)).start()
    plan = SweepPlan.model_validate_json((local / "plan.json").read_text())
    spec = max(plan.experiments, key=lambda s: s.tokens)  # the longest run
    trainer = ApiTrainer({"base_url": server.url, "token": server.token, "poll_s": 0.2})
    out: dict = {}
    context = TrainerContext(tmp_path / "run", tmp_path / "ck")
    waiting = threading.Thread(target=lambda: out.update(result=trainer.train(spec, context)))
    waiting.start()
    checkpoint = server.data_dir / "checkpoints" / spec.id / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists():
        assert time.monotonic() < deadline and waiting.is_alive(), "no checkpoint written"
        time.sleep(0.05)
    server.kill(signal.SIGKILL)
    server.start()
    waiting.join(300)
    assert not waiting.is_alive()
    assert out["result"].loss == _losses(local)[spec.id]
    with server.client() as client:
        run = client.get(f"/v1/runs/{spec.id}").json()
    assert run["attempt"] == 2 and run["cause"] == "server_restart"
    with server.client() as client:
        log = client.get(f"/v1/runs/{spec.id}/log").text.splitlines()
    steps = [json.loads(line)["step"] for line in log]
    assert steps and steps == sorted(set(steps))  # resumed: no step logged twice
    assert run["result"]["details"]["sessions"] == 2, run["result"].get("warnings")
