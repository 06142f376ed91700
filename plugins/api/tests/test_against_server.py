"""The `api` trainer against a real `flops-fit serve` on 127.0.0.1: the trainer contract, a whole
study equal to the local one, a server restart under a waiting client, a Ctrl-C's cancel."""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest

from flops_fit_api import ApiTrainer
from flops_fit_core import TrainerContext, TrainingCancelled
from flops_fit_core.cli import main
from flops_fit_core.testing import TrainerContract, tiny_specs

#: A shrunk mock study: 3 budgets x 5 sizes, no figures (the mock preset's law and noise).
SHRUNK = ("--set", "planner.n_budgets=3", "--set", "planner.sizes_per_budget=5")
NO_FIGURES = ("--set", "plot.names=[]")


class TestApiTrainerAgainstAServer(TrainerContract):
    @pytest.fixture
    def plugin(self):
        return ApiTrainer

    @pytest.fixture
    def plugin_config(self, mock_server):
        return {"base_url": mock_server.url, "token": mock_server.token, "poll_s": 0.2}


def flops_fit(capsys, *args) -> tuple[int, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def _losses(run_dir) -> dict[str, float]:
    records = [json.loads(line) for line in (run_dir / "results.jsonl").open()]
    return {r["experiment_id"]: r["loss"] for r in records if r["status"] == "ok"}


def test_a_study_through_the_server_equals_the_local_one_bit_for_bit(
    capsys, tmp_path, mock_server, monkeypatch
):
    monkeypatch.setenv("FLOPS_FIT_TOKEN", mock_server.token)
    local, remote = tmp_path / "local", tmp_path / "remote"
    base = ["-q", "run", "--preset", "mock", *SHRUNK, *NO_FIGURES]
    assert flops_fit(capsys, *base, "--out", local)[0] == 0
    # two runs in flight at once through the process executor, one per server worker
    via_api = [*base, "--out", remote, "--trainer", "api", "--executor", "process"]
    via_api += ["--set", "executor.workers=2"]
    code, err = flops_fit(capsys, *via_api, "--set", f"trainer.base_url={mock_server.url}")
    assert code == 0, err
    assert _losses(remote) == _losses(local) and len(_losses(local)) == 15
    fits = [json.loads((d / "fit.json").read_text()) for d in (local, remote)]
    assert fits[0]["laws"] == fits[1]["laws"] and fits[0]["optima"] == fits[1]["optima"]
    assert mock_server.token not in (remote / "results.jsonl").read_text()
    assert mock_server.token not in (remote / "config.toml").read_text()


def test_a_waiting_client_carries_on_through_a_server_restart(make_server, tmp_path):
    server = make_server("--trainer", "mock", "--set", "trainer.seconds_per_run=3").start()
    trainer = ApiTrainer({"base_url": server.url, "token": server.token, "poll_s": 0.2})
    spec = tiny_specs(1)[0]
    messages: list[str] = []
    context = TrainerContext(
        run_dir=tmp_path / "run",
        checkpoint_dir=tmp_path / "ck",
        progress=lambda f, m=None: messages.append(m or ""),
    )
    out: dict = {}
    waiting = threading.Thread(target=lambda: out.update(result=trainer.train(spec, context)))
    waiting.start()
    deadline = time.monotonic() + 60
    while not _running(server, spec.id):
        assert time.monotonic() < deadline and waiting.is_alive()
        time.sleep(0.05)
    server.kill(signal.SIGKILL)
    time.sleep(1.0)  # the client meets a dead port for a while
    server.start()
    waiting.join(120)
    assert not waiting.is_alive()
    result = out["result"]
    assert result.status == "ok" and result.experiment_id == spec.id
    with server.client() as client:
        run = client.get(f"/v1/runs/{spec.id}").json()
    assert run["attempt"] == 2 and run["cause"] == "server_restart"


def test_a_ctrl_c_cancels_the_remote_run_and_a_rerun_trains_it(make_server, tmp_path):
    server = make_server("--trainer", "mock", "--set", "trainer.seconds_per_run=2").start()
    trainer = ApiTrainer({"base_url": server.url, "token": server.token, "poll_s": 0.2})
    spec = tiny_specs(1)[0]
    cancel = threading.Event()
    context = TrainerContext(tmp_path / "run", tmp_path / "ck", cancel_event=cancel)
    threading.Timer(1.0, cancel.set).start()
    with pytest.raises(TrainingCancelled):
        trainer.train(spec, context)
    with server.client() as client:
        deadline = time.monotonic() + 30
        while (state := client.get(f"/v1/runs/{spec.id}").json()["state"]) != "cancelled":
            assert time.monotonic() < deadline, state
            time.sleep(0.1)
    again = trainer.train(spec, TrainerContext(tmp_path / "run", tmp_path / "ck"))
    assert again.status == "ok"
    with server.client() as client:
        assert client.get(f"/v1/runs/{spec.id}").json()["attempt"] == 2


def _running(server, run_id: str) -> bool:
    import httpx

    try:
        with server.client() as client:
            return client.get(f"/v1/runs/{run_id}").json().get("state") == "running"
    except httpx.HTTPError:
        return False
