"""A real `flops-fit serve` on a free loopback port, in its own process group, for each test
that asks for one; stopped (SIGTERM, then SIGKILL) and reaped by pid when the test ends."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

TOKEN = "test-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    data_dir: Path
    port: int
    args: list[str]
    env: dict[str, str]
    log: Path
    token: str = TOKEN
    process: subprocess.Popen | None = None
    _logs: list = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, token: str | None = TOKEN) -> httpx.Client:
        """A plain httpx client of this server, with `token` (None: without one)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def start(self, timeout: float = 60.0) -> Server:
        out = self.log.open("a")
        self._logs.append(out)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flops_fit_core", "serve", *self.args],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not start: " + self.log.read_text()
            time.sleep(0.1)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the server's whole process group (children included) and reap it."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
        self.process = None

    def stop(self) -> None:
        self.kill(signal.SIGTERM)
        for out in self._logs:
            out.close()


@pytest.fixture
def token() -> str:
    """The bearer token the test servers are started with (`FLOPS_FIT_TOKEN`)."""
    return TOKEN


def _factory(folder: Path):
    made: list[Server] = []

    def make(*args: str, data_dir: Path | None = None) -> Server:
        tmp_path = folder
        data_dir = data_dir or tmp_path / f"server-{len(made)}"
        port = free_port()
        env = {**os.environ, "FLOPS_FIT_TOKEN": TOKEN}
        server = Server(
            data_dir,
            port,
            ["--port", str(port), "--data-dir", str(data_dir), *args],
            env,
            tmp_path / f"server-{len(made)}.log",
        )
        made.append(server)
        return server

    return make, made


@pytest.fixture
def make_server(tmp_path):
    """`make_server(*serve_args)`: a stopped `Server` on a free port (call `.start()`)."""
    make, made = _factory(tmp_path)
    yield make
    for server in made:
        server.stop()


@pytest.fixture(scope="module")
def mock_server(tmp_path_factory):
    """One running server with the `mock` backend (the mock preset's options), per module."""
    make, made = _factory(tmp_path_factory.mktemp("mock-server"))
    yield make("--trainer", "mock", "--set", "trainer.noise=0.002", "--workers", "2").start()
    for server in made:
        server.stop()
