"""`flops-fit serve` as a client meets it: a real uvicorn server in a subprocess on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from flops_fit_core.testing import tiny_specs


def _wait_state(client: httpx.Client, run_id: str, states: set[str], timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        run = client.get(f"/v1/runs/{run_id}", params={"wait": 2}).json()
        if run["state"] in states:
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run['state']}"


def _put(client: httpx.Client, spec) -> httpx.Response:
    return client.put(f"/v1/runs/{spec.id}", content=spec.model_dump_json())


def test_only_a_valid_token_gets_in_and_health_is_open(make_server):
    server = make_server("--trainer", "mock").start()
    spec = tiny_specs(1)[0]
    for wrong in (None, "wrong-token-0123456789"):
        with server.client(wrong) as client:
            for request in (client.get("/v1/version"), _put(client, spec)):
                assert request.status_code == 401
                assert request.headers["www-authenticate"] == "Bearer"
    with server.client(None) as client:
        assert client.get("/v1/health").json() == {"ok": True}
    with server.client() as client:
        version = client.get("/v1/version").json()
    assert version["api"] == 1 and version["trainer"]["name"] == "mock"
    assert server.token not in server.log.read_text()


def test_bad_bodies_are_refused_with_the_reason(make_server):
    server = make_server("--trainer", "mock").start()
    spec = tiny_specs(1)[0]
    with server.client() as client:
        not_json = client.put(f"/v1/runs/{spec.id}", content=b"{nope")
        assert not_json.status_code == 422 and "not JSON" in not_json.json()["detail"]
        bad = json.loads(spec.model_dump_json())
        bad["tokens"] = -5
        invalid = client.put(f"/v1/runs/{spec.id}", json=bad)
        assert invalid.status_code == 422
        assert "tokens" in invalid.json()["detail"]
        huge = client.put(f"/v1/runs/{spec.id}", content=b" " * (65 * 1024))
        assert huge.status_code == 413
        wrong = client.put("/v1/runs/0123456789ab", content=spec.model_dump_json())
        assert wrong.status_code == 422 and "digest" in wrong.json()["detail"]
        odd = client.get("/v1/runs/..%2F..%2Fetc")
        assert odd.status_code in (404, 422)
        assert client.get("/v1/runs", params={"state": "queued"}).json() == []
        unknown = client.get("/v1/runs", params={"state": "sleeping"})
        assert unknown.status_code == 422 and "queued" in unknown.json()["detail"]
        assert client.get("/v1/runs/0123456789ab").status_code == 404


def test_a_run_is_created_once_and_another_spec_under_its_id_conflicts(make_server):
    server = make_server("--trainer", "mock").start()
    first, other = tiny_specs(2)
    with server.client() as client:
        assert _put(client, first).status_code == 201
        again = _put(client, first)
        assert again.status_code == 200 and again.json()["id"] == first.id
        conflict = client.put(f"/v1/runs/{first.id}", content=other.model_dump_json())
        assert conflict.status_code == 409
        done = _wait_state(client, first.id, {"succeeded"})
        assert done["attempt"] == 1 and done["result"]["experiment_id"] == first.id
        assert [r["id"] for r in client.get("/v1/runs").json()] == [first.id]


def test_100_concurrent_puts_of_20_specs_make_20_runs_each_trained_once(make_server):
    server = make_server("--trainer", "mock", "--workers", "2").start()
    specs = tiny_specs(20)
    with server.client() as client, ThreadPoolExecutor(25) as pool:
        codes = list(pool.map(lambda i: _put(client, specs[i % 20]).status_code, range(100)))
        assert codes.count(201) == 20 and codes.count(200) == 80
        runs = [_wait_state(client, s.id, {"succeeded"}) for s in specs]
    assert sorted(r["id"] for r in runs) == sorted(s.id for s in specs)
    assert all(r["attempt"] == 1 for r in runs)
    assert len(list((server.data_dir / "runs").iterdir())) == 20


def test_a_server_killed_mid_run_requeues_it_and_finishes_it_once(make_server):
    server = make_server("--trainer", "mock", "--set", "trainer.seconds_per_run=3").start()
    spec = tiny_specs(1)[0]
    with server.client() as client:
        assert _put(client, spec).status_code == 201
        running = _wait_state(client, spec.id, {"running"})
    assert running["attempt"] == 1
    orphan = _child_pid(server, spec.id)  # in a session of its own: SIGKILL misses it
    server.kill(signal.SIGKILL)
    server.start()
    with server.client() as client:
        done = _wait_state(client, spec.id, {"succeeded"})
    assert done["attempt"] == 2 and done["cause"] == "server_restart"
    assert done["result"]["experiment_id"] == spec.id
    assert not _alive(orphan), "the dead server's child trained on beside the new one"


def test_a_cancel_stops_the_child_and_ends_the_run_cancelled(make_server):
    server = make_server("--trainer", "mock", "--set", "trainer.seconds_per_run=60").start()
    spec = tiny_specs(1)[0]
    with server.client() as client:
        _put(client, spec)
        _wait_state(client, spec.id, {"running"})
        pid = _child_pid(server, spec.id)
        assert client.post(f"/v1/runs/{spec.id}/cancel").json()["state"] == "cancelling"
        done = _wait_state(client, spec.id, {"cancelled"}, timeout=30)
    assert done["cause"] == "cancelled"
    deadline = time.monotonic() + 10
    while _alive(pid):
        assert time.monotonic() < deadline, f"child {pid} still alive"
        time.sleep(0.05)


def _child_pid(server, run_id: str) -> int:
    import sqlite3

    with sqlite3.connect(server.data_dir / "runs.sqlite3") as db:
        (pid,) = db.execute("SELECT pid FROM runs WHERE id = ?", (run_id,)).fetchone()
    return int(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is as good as gone
        return fh.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        ([], {"FLOPS_FIT_TOKEN": ""}, "no token"),
        (["--insecure", "--host", "0.0.0.0"], {"FLOPS_FIT_TOKEN": ""}, "loopback"),
        ([], {"FLOPS_FIT_TOKEN": "short"}, "too short"),
        (["--set", "trainer.nope=1"], {}, "nope"),
    ],
)
def test_the_server_refuses_to_start_unsafe_or_misconfigured(tmp_path, token, args, env, needle):
    done = subprocess.run(
        [sys.executable, "-m", "flops_fit_core", "serve", "--trainer", "mock", "--port", "1",
         "--data-dir", str(tmp_path / "d"), *args],
        env={**os.environ, "FLOPS_FIT_TOKEN": token, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and needle in lines[0], lines


def test_a_full_queue_is_429_with_retry_after_and_known_runs_still_answer(make_server):
    args = ("--trainer", "mock", "--set", "trainer.seconds_per_run=30", "--workers", "1")
    server = make_server(*args, "--max-queue", "1").start()
    first, second, third = tiny_specs(3)
    with server.client() as client:
        assert _put(client, first).status_code == 201
        _wait_state(client, first.id, {"running"})
        assert _put(client, second).status_code == 201  # queued: the queue is now full
        full = _put(client, third)
        assert full.status_code == 429 and int(full.headers["retry-after"]) > 0
        assert _put(client, second).status_code == 200  # a known run is no new load


def _devices_of_two_running_runs(server) -> set[bytes]:
    """Start two long runs on `server` and read the CUDA_VISIBLE_DEVICES their children got."""
    specs = tiny_specs(2)
    with server.client() as client:
        for spec in specs:
            _put(client, spec)
        for spec in specs:
            _wait_state(client, spec.id, {"running"})
    devices = set()
    for spec in specs:
        path = Path(f"/proc/{_child_pid(server, spec.id)}/environ")
        environ = path.read_bytes().split(b"\0")
        devices |= {v for v in environ if v.startswith(b"CUDA_VISIBLE_DEVICES=")}
    return devices


def test_each_worker_gets_its_own_gpu(make_server, tmp_path):
    """With a (stand-in) `nvidia-smi` listing two GPUs, two runs train at once, one per GPU."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "nvidia-smi"
    fake.write_text(
        "#!/bin/sh\necho 'GPU 0: Stand-in (UUID: GPU-a)'\necho 'GPU 1: Stand-in (UUID: GPU-b)'\n"
    )
    fake.chmod(0o755)
    server = make_server("--trainer", "mock", "--set", "trainer.seconds_per_run=30")
    server.env.pop("CUDA_VISIBLE_DEVICES", None)
    server.env["PATH"] = f"{bin_dir}:{server.env['PATH']}"
    server.start()
    devices = _devices_of_two_running_runs(server)
    assert devices == {b"CUDA_VISIBLE_DEVICES=0", b"CUDA_VISIBLE_DEVICES=1"}


def test_workers_get_the_gpus_the_server_was_given_by_name(make_server):
    """A server started with CUDA_VISIBLE_DEVICES=5,7 hands its children 5 and 7 (what that
    names), not 0 and 1 (which would be other GPUs of the machine)."""
    server = make_server("--trainer", "mock", "--set", "trainer.seconds_per_run=30")
    server.env["CUDA_VISIBLE_DEVICES"] = "5,7"
    server.start()
    devices = _devices_of_two_running_runs(server)
    assert devices == {b"CUDA_VISIBLE_DEVICES=5", b"CUDA_VISIBLE_DEVICES=7"}
