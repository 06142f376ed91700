"""The stand-in Slurm on PATH (`fake_slurm`): `sbatch`, `srun`, `sacct`, `scancel` and
`scontrol` that record their calls and run each array task on this machine; every process
they start is stopped, by pid, when the test ends."""

from __future__ import annotations

import json
import os
import random
import signal
import sys
from pathlib import Path

import pytest

STANDIN = Path(__file__).parent / "standin" / "fake_slurm.py"
COMMANDS = ("sbatch", "srun", "sacct", "scancel", "scontrol")


class FakeSlurm:
    def __init__(self, state: Path, bin_dir: Path):
        self.state, self.bin = state, bin_dir

    def calls(self, command: str | None = None) -> list[list[str]]:
        path = self.state / "calls.jsonl"
        if not path.exists():
            return []
        calls = [json.loads(line) for line in path.read_text().splitlines()]
        return [c["args"] for c in calls if command is None or c["command"] == command]

    def jobs(self) -> dict[str, dict]:
        folder = self.state / "jobs"
        return {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}

    def tasks(self, state: str) -> list[str]:
        """`ARRAY_INDEX` of every task in `state`."""
        return [
            f"{array_id}_{index}"
            for array_id, job in self.jobs().items()
            for index, task in job["tasks"].items()
            if task["state"] == state
        ]

    def run(self, *args: str) -> None:
        import subprocess

        subprocess.run([sys.executable, str(STANDIN), *args], check=True, env=self.env())

    def env(self) -> dict[str, str]:
        return {**os.environ, "FAKE_SLURM_DIR": str(self.state)}

    def stop_everything(self) -> None:
        """SIGKILL every process this stand-in started (schedulers, tasks, their children):
        each has this state folder in the environment it was started with."""
        needle = f"FAKE_SLURM_DIR={self.state}\0".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if needle in (entry / "environ").read_bytes():
                    os.kill(int(entry.name), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                continue


@pytest.fixture
def fake_slurm(tmp_path_factory, monkeypatch):
    state = tmp_path_factory.mktemp("fake-slurm")
    (state / "jobs").mkdir()
    # job ids unique across tests: submitit caches finished jobs' states by id per process
    (state / "next_id").write_text(str(random.randrange(10**5, 10**6) * 100))
    bin_dir = state / "bin"
    bin_dir.mkdir()
    for command in COMMANDS:
        wrapper = bin_dir / command
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STANDIN}" {command} "$@"\n')
        wrapper.chmod(0o755)
    monkeypatch.setenv("FAKE_SLURM_DIR", str(state))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    slurm = FakeSlurm(state, bin_dir)
    try:
        yield slurm
    finally:
        slurm.stop_everything()


@pytest.fixture(autouse=True)
def _test_module_by_value(request):
    """The test modules' trainers travel by value: a job's process cannot import a test
    module (pytest imports them with importlib)."""
    import cloudpickle

    module = sys.modules[request.module.__name__]
    cloudpickle.register_pickle_by_value(module)
    try:
        yield
    finally:
        cloudpickle.unregister_pickle_by_value(module)
