"""The `api` client and trainer against a fake server in an `httpx.MockTransport` (no network).

`FakeServer` speaks `protocol` in memory: runs keyed by spec id, a bearer token, runs that
advance one step per poll (queued -> running -> succeeded, trained by the `mock` trainer)
or hold at `running` until cancelled, and faults injected per method (a status, a
`Retry-After`, a read error before or after the request took effect). Tests against a real
`flops-fit serve` live beside the server.
"""

from __future__ import annotations

import json
import pickle
import sys
import threading
import time
from collections import defaultdict, deque
from pathlib import Path

import httpx
import pytest

from flops_fit_api import ApiConfig, ApiTrainer, resolve_token
from flops_fit_api.client import ApiError, Client, NotFound, ServerUnavailable
from flops_fit_api.protocol import API_VERSION, RunView, VersionInfo
from flops_fit_core import (
    ConfigError,
    ResultsStore,
    TrainerContext,
    TrainingCancelled,
    run_one,
)
from flops_fit_core.testing import CancelAfter, TrainerContract, tiny_specs
from flops_fit_mock import MockTrainer

TOKEN = "tok-Secret-0123456789abcdef"
URL = "http://127.0.0.1:8765"
#: Small waits keep the file fast; the retry logic is the same at any scale.
FAST = {"backoff_base_s": 0.01, "backoff_cap_s": 0.05}


class LostReply(Exception):
    """Marks a fault that takes effect on the server, then loses the reply (a read error)."""


class FakeServer:
    """An in-memory `flops-fit serve`: `handler` is the MockTransport's function."""

    def __init__(self, *, token: str | None = TOKEN, api: int = API_VERSION, hold: bool = False):
        self.token = token
        self.api = api
        self.hold = hold  # runs stay `running` until cancelled
        self.backend = MockTrainer({"noise": 0.01, "seed": 1, "curve_points": 3})
        self.runs: dict[str, dict] = {}
        self.created = 0
        self.requests: list[tuple[float, str, str, httpx.Request]] = []
        self.faults: dict[str, deque] = defaultdict(deque)
        self.fail_with: tuple[str, str] | None = None  # (cause, error) for every run

    def fault(self, method: str, *faults) -> None:
        """Next requests of `method` meet these, in order: an int status, an
        `httpx.Response`, an exception class (raised before anything happens), or
        `LostReply` (the request takes effect, then a read error)."""
        self.faults[method].extend(faults)

    def count(self, method: str, path_part: str = "") -> int:
        return sum(1 for _, m, p, _ in self.requests if m == method and path_part in p)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)

    def handler(self, request: httpx.Request) -> httpx.Response:
        method, path = request.method, request.url.path
        self.requests.append((time.monotonic(), method, path, request))
        lose = False
        if self.faults[method]:
            fault = self.faults[method].popleft()
            if isinstance(fault, int):
                return httpx.Response(fault, json={"detail": f"injected {fault}"})
            if isinstance(fault, httpx.Response):
                return fault
            if fault is LostReply:
                lose = True
            else:
                raise fault("injected", request=request)
        response = self.route(request, method, path)
        if lose:
            raise httpx.ReadError("connection reset by peer (injected)", request=request)
        return response

    def route(self, request: httpx.Request, method: str, path: str) -> httpx.Response:
        if path == "/v1/health":
            return httpx.Response(200, json={"ok": True})
        if (
            self.token is not None
            and request.headers.get("authorization") != f"Bearer {self.token}"
        ):
            return httpx.Response(
                401,
                json={"detail": "missing or wrong bearer token"},
                headers={"WWW-Authenticate": "Bearer"},
            )
        if path == "/v1/version" and method == "GET":
            info = VersionInfo(api=self.api, flops_fit="0.1.0", trainer=self.backend.info)
            return httpx.Response(200, json=info.model_dump(mode="json"))
        parts = path.strip("/").split("/")
        if parts[:2] != ["v1", "runs"] or len(parts) < 3:
            return httpx.Response(404, json={"detail": "Not Found"})
        run_id = parts[2]
        if method == "PUT" and len(parts) == 3:
            return self.put(run_id, json.loads(request.content))
        run = self.runs.get(run_id)
        if run is None:
            return httpx.Response(404, json={"detail": f"no run {run_id}"})
        if method == "GET" and len(parts) == 3:
            if not self.hold:
                self.advance(run)
            return self.view(run)
        if method == "POST" and parts[3:] == ["cancel"]:
            if run["state"] not in ("succeeded", "failed", "cancelled"):
                run.update(state="cancelled", cause="cancelled", updated_at=time.time())
            return self.view(run)
        return httpx.Response(405, json={"detail": "Method Not Allowed"})

    def put(self, run_id: str, body: dict) -> httpx.Response:
        from flops_fit_core import ExperimentSpec

        try:
            spec = ExperimentSpec.model_validate(body)
        except Exception as exc:
            return httpx.Response(422, json={"detail": str(exc).splitlines()[0]})
        if spec.id != run_id:
            return httpx.Response(422, json={"detail": f"id {run_id} is not the spec's digest"})
        run = self.runs.get(run_id)
        if run is not None and run["state"] != "cancelled":
            return self.view(run, 200)
        # a cancelled run is submitted again (what the contract's resume after a cancel needs)
        attempt = run["attempt"] + 1 if run is not None else 1
        now = time.time()
        self.runs[run_id] = {
            "spec": spec,
            "state": "queued",
            "attempt": attempt,
            "cause": None,
            "progress": 0.0,
            "message": None,
            "created_at": now,
            "updated_at": now,
            "result": None,
            "error": None,
        }
        self.created += 1
        if self.hold:
            self.runs[run_id].update(state="running", progress=0.5, message="step 1 of 2")
        return self.view(self.runs[run_id], 201)

    def advance(self, run: dict) -> None:
        if run["state"] == "queued":
            run.update(state="running", progress=0.5, message="step 1 of 2")
        elif run["state"] == "running":
            if self.fail_with is not None:
                cause, error = self.fail_with
                run.update(state="failed", cause=cause, error=error, progress=1.0)
            else:
                context = TrainerContext(run_dir=Path("unused"), checkpoint_dir=Path("unused"))
                result = self.backend.train(run["spec"], context)
                run.update(state="succeeded", progress=1.0, message="done", result=result)
        run["updated_at"] = time.time()

    def view(self, run: dict, status: int = 200) -> httpx.Response:
        fields = {k: v for k, v in run.items() if k != "spec"}
        view = RunView(id=run["spec"].id, **fields)
        return httpx.Response(status, json=view.model_dump(mode="json"))


@pytest.fixture
def server():
    return FakeServer()


@pytest.fixture
def spec():
    return tiny_specs(1)[0]


@pytest.fixture
def context(tmp_path):
    return TrainerContext(run_dir=tmp_path, checkpoint_dir=tmp_path / "checkpoints" / "x")


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    """The trainer's clients back off in milliseconds here."""
    import flops_fit_api.client as client_module

    monkeypatch.setattr(client_module, "BACKOFF_BASE_S", FAST["backoff_base_s"])
    monkeypatch.setattr(client_module, "BACKOFF_CAP_S", FAST["backoff_cap_s"])
    monkeypatch.delenv("FLOPS_FIT_TOKEN", raising=False)


def make_client(server: FakeServer, token: str | None = TOKEN, **options) -> Client:
    options = {"deadline_s": 5.0, **FAST, **options}
    return Client(URL, token, transport=server.transport(), **options)


def make_trainer(server: FakeServer, **config) -> ApiTrainer:
    config = {"token": TOKEN, "poll_s": 0.02, "deadline_s": 5.0, **config}
    return ApiTrainer(config, transport=server.transport())


def one_line_without_token(text: str) -> None:
    assert "\n" not in text
    assert TOKEN not in text


# -- the client ----------------------------------------------------------------------------


def test_sends_the_bearer_token(server):
    with make_client(server) as client:
        info = client.version()
    assert info.api == API_VERSION
    request = server.requests[-1][3]
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["user-agent"].startswith("flops-fit-api/")
    assert TOKEN not in repr(client)


def test_a_503_and_a_lost_reply_make_one_run_and_return_its_result(server, spec, context):
    """The PUT meets a 503, then takes effect but loses its reply (a read error): sent again,
    it finds the run the lost one made, so exactly one run exists and trains."""
    server.fault("PUT", 503, LostReply)
    trainer = make_trainer(server, deadline_s=3.0)
    started = time.monotonic()
    result = trainer.train(spec, context)
    assert time.monotonic() - started < 3.0
    assert server.count("PUT") == 3
    assert server.created == 1 and len(server.runs) == 1
    local = server.backend.train(spec, context)
    assert result.status == "ok"
    assert result.loss == local.loss and result.train_loss == local.train_loss
    assert result.curve == local.curve and result.metrics == local.metrics
    assert (result.tokens_trained, result.flops) == (local.tokens_trained, local.flops)
    assert result.trainer == trainer.info
    assert result.details["remote"]["trainer"]["name"] == "mock"
    assert result.details["remote"]["attempt"] == 1


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(server, status):
    server.fault("GET", httpx.Response(status, headers={"Retry-After": "0.2"}))
    with make_client(server) as client:
        client.version()
    first, second = (t for t, m, _, _ in server.requests if m == "GET")
    assert second - first >= 0.2


def test_connection_errors_and_gateway_errors_are_retried(server):
    server.fault("GET", httpx.ConnectError, 502, httpx.ReadTimeout, 504, httpx.RemoteProtocolError)
    with make_client(server) as client:
        assert client.version().api == API_VERSION
    assert server.count("GET") == 6


def test_a_401_is_not_retried_and_is_one_line_without_the_token(server):
    server.token = "the-server-wants-another"
    with make_client(server) as client, pytest.raises(ApiError) as caught:
        client.version()
    assert server.count("GET") == 1
    message = str(caught.value)
    one_line_without_token(message)
    one_line_without_token(repr(caught.value))
    assert "401" in message and "missing or wrong bearer token" in message
    assert "FLOPS_FIT_TOKEN" in message
    assert caught.value.status == 401 and caught.value.retry_on_rerun


def test_a_422_detail_reaches_the_message_and_is_not_retried(server, spec):
    detail = [
        {"type": "missing", "loc": ["body", "tokens"], "msg": "Field required", "input": {}},
        {"type": "int_parsing", "loc": ["body", "seed"], "msg": "Input should be an integer"},
    ]
    server.fault("PUT", httpx.Response(422, json={"detail": detail}))
    with make_client(server) as client, pytest.raises(ApiError) as caught:
        client.put_run(spec)
    assert server.count("PUT") == 1
    message = str(caught.value)
    assert "422" in message
    assert "tokens: Field required; seed: Input should be an integer" in message
    assert not caught.value.retry_on_rerun


def test_a_failing_server_past_the_deadline_is_one_line(server):
    server.fault("GET", *[503] * 1000)
    with make_client(server, deadline_s=0.3) as client:
        started = time.monotonic()
        with pytest.raises(ServerUnavailable) as caught:
            client.version()
        spent = time.monotonic() - started
    assert spent < 1.0
    message = str(caught.value)
    one_line_without_token(message)
    assert "HTTP 503" in message and "injected 503" in message and "tries" in message


def test_a_full_queue_does_not_spend_the_deadline(server):
    """429 means the server is up and busy: waited out past `deadline_s`, within
    `busy_deadline_s` only."""
    server.fault("GET", *[httpx.Response(429, headers={"Retry-After": "0.05"})] * 4)
    with make_client(server, deadline_s=0.1) as client:
        assert client.version().api == API_VERSION
    server.fault("GET", *[429] * 1000)
    with make_client(server, busy_deadline_s=0.2) as client, pytest.raises(ServerUnavailable) as e:
        client.version()
    assert "queue stayed full" in str(e.value) and e.value.status == 429


def test_a_refused_certificate_is_not_retried(server):
    import ssl

    def handler(request):
        try:
            raise ssl.SSLCertVerificationError("certificate verify failed: self-signed")
        except ssl.SSLError as exc:
            raise httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED]", request=request) from exc

    with Client(URL, TOKEN, transport=httpx.MockTransport(handler), **FAST) as client:
        started = time.monotonic()
        with pytest.raises(ApiError, match="ca_file"):
            client.version()
    assert time.monotonic() - started < 0.5


def test_a_404_is_not_found(server):
    with make_client(server) as client, pytest.raises(NotFound):
        client.get_run("0123456789ab")


def test_an_unexpected_reply_is_one_line(server):
    server.fault("GET", httpx.Response(200, text="<html>login</html>"))
    with make_client(server) as client, pytest.raises(ApiError) as caught:
        client.version()
    assert "not a flops-fit VersionInfo" in str(caught.value)
    one_line_without_token(str(caught.value))


def test_an_echoed_token_is_scrubbed(server):
    server.fault("GET", httpx.Response(400, json={"detail": f"bad token {TOKEN}"}))
    with make_client(server) as client, pytest.raises(ApiError) as caught:
        client.version()
    one_line_without_token(str(caught.value))


# -- the trainer ---------------------------------------------------------------------------


def test_progress_is_forwarded(server, spec, context):
    seen = []
    context.progress = lambda fraction, message=None: seen.append((fraction, message))
    make_trainer(server).train(spec, context)
    assert seen[0] == (0.0, "queued at 127.0.0.1:8765")
    assert (0.5, "step 1 of 2") in seen
    assert seen[-1] == (1.0, "done")


def test_cancel_stops_the_remote_run(server, spec, context):
    server.hold = True
    context.cancel_event = CancelAfter(checks=6)
    with pytest.raises(TrainingCancelled, match=r"asked .* to stop"):
        make_trainer(server).train(spec, context)
    assert server.count("POST", "/cancel") == 1
    assert server.runs[spec.id]["state"] == "cancelled"


def test_detach_leaves_the_remote_run_going(server, spec, context):
    server.hold = True
    context.cancel_event = CancelAfter(checks=6)
    with pytest.raises(TrainingCancelled, match="detach"):
        make_trainer(server, detach=True).train(spec, context)
    assert server.count("POST") == 0
    assert server.runs[spec.id]["state"] == "running"
    server.hold = False  # the run finishes; the next train collects it without a new run
    result = make_trainer(server).train(spec, TrainerContext(context.run_dir, context.run_dir))
    assert result.status == "ok" and server.created == 1


def test_a_run_cancelled_mid_way_resumes_when_trained_again(server, spec, context, tmp_path):
    """What a rerun after Ctrl-C needs of the server: a PUT of a `cancelled` run submits it
    again (the fake does; `attempt` goes up) instead of answering the cancelled run."""
    server.hold = True
    context.cancel_event = CancelAfter(checks=6)
    with pytest.raises(TrainingCancelled):
        make_trainer(server).train(spec, context)
    assert server.runs[spec.id]["state"] == "cancelled"
    server.hold = False
    again = TrainerContext(run_dir=tmp_path, checkpoint_dir=tmp_path / "c")
    result = make_trainer(server).train(spec, again)
    assert result.status == "ok" and result.details["remote"]["attempt"] == 2


def test_a_cancel_before_the_start_sends_nothing(server, spec, context):
    context.cancel_event.set()
    with pytest.raises(TrainingCancelled):
        make_trainer(server).train(spec, context)
    assert server.requests == []


def test_an_incompatible_server_is_refused_once_per_trainer(server, spec, context):
    server.api = API_VERSION + 1
    trainer = make_trainer(server)
    results = [run_one(trainer, s, context) for s in tiny_specs(2)]
    for result in results:
        assert result.status == "failed" and result.cause == "worker_died"
        assert f"API version {API_VERSION + 1}" in result.error
        assert f"client API version {API_VERSION}" in result.error
        one_line_without_token(result.error)
    assert server.count("GET", "/v1/version") == 1
    assert server.count("PUT") == 0


def test_an_unreachable_server_fails_the_run_for_a_rerun(server, spec, context):
    server.fault("GET", *[httpx.ConnectError] * 1000)
    result = make_trainer(server, deadline_s=0.2).train(spec, context)
    assert result.status == "failed" and result.cause == "worker_died"
    assert result.retried_on_rerun
    assert "ConnectError" in result.error
    one_line_without_token(result.error)


def test_a_wrong_token_fails_the_run_without_retrying(server, spec, context):
    server.token = "another"
    result = make_trainer(server).train(spec, context)
    assert result.status == "failed" and result.retried_on_rerun
    assert server.count("GET") == 1
    one_line_without_token(result.error)
    one_line_without_token(result.model_dump_json())


def test_a_refused_spec_is_a_training_failure(server, spec, context):
    server.fault("PUT", httpx.Response(409, json={"detail": "another spec has this id"}))
    result = run_one(make_trainer(server), spec, context)
    assert result.status == "failed" and result.cause == "trainer_error"
    assert "409" in result.error and "another spec has this id" in result.error


def test_a_failed_remote_run_raises_its_error_and_cause(server, spec, context):
    server.fail_with = ("trainer_error", "ValueError: loss is nan\n(at loop.py:3)")
    trainer = make_trainer(server)
    with pytest.raises(Exception) as caught:
        trainer.train(spec, context)
    assert type(caught.value).__name__ == "TrainingError"
    message = str(caught.value)
    assert "\n" not in message
    assert "trainer_error" in message and "ValueError: loss is nan" in message
    result = run_one(trainer, spec, context)
    assert result.status == "failed" and result.cause == "trainer_error"


def test_a_remote_run_lost_to_its_machine_is_retried_on_rerun(server, spec, context):
    server.fail_with = ("worker_crashed", "killed by SIGKILL")
    result = make_trainer(server).train(spec, context)
    assert result.status == "failed" and result.retried_on_rerun
    assert "worker_crashed" in result.error and "killed by SIGKILL" in result.error


def test_a_run_the_server_lost_is_submitted_again(server, spec, context):
    trainer = make_trainer(server)
    real = server.route

    def forget_once(request, method, path, _done=[]):  # noqa: B006 - a one-shot flag
        if method == "GET" and "/v1/runs/" in path and not _done:
            _done.append(True)
            server.runs.clear()
        return real(request, method, path)

    server.route = forget_once
    result = trainer.train(spec, context)
    assert result.status == "ok"
    assert server.count("PUT") == 2 and server.created == 2


# -- secrets and pickling --------------------------------------------------------------------


def _outputs(trainer: ApiTrainer, result) -> list[str]:
    config = trainer.config
    return [
        repr(trainer),
        str(trainer.config),
        repr(config),
        json.dumps(config.model_dump(mode="json")),
        config.model_dump_json(),
        json.dumps(config.model_dump(mode="json", exclude_none=True)),  # config.toml's section
        trainer.info.model_dump_json(),
        json.dumps(trainer.outcome_options()),
        result.model_dump_json(),
    ]


@pytest.mark.parametrize("source", ["config", "file", "env"])
def test_the_token_is_never_recorded(server, spec, context, tmp_path, monkeypatch, source):
    config: dict = {"poll_s": 0.02}
    if source == "config":
        config["token"] = TOKEN
    elif source == "file":
        (tmp_path / "token").write_text(TOKEN + "\n")
        config["token_file"] = str(tmp_path / "token")
    else:
        monkeypatch.setenv("FLOPS_FIT_TOKEN", TOKEN)
    trainer = ApiTrainer(config, transport=server.transport())
    result = trainer.train(spec, context)
    assert result.status == "ok"
    assert server.requests[-1][3].headers["authorization"] == f"Bearer {TOKEN}"
    for text in _outputs(trainer, result):
        assert TOKEN not in text
    store = ResultsStore(tmp_path / "results.jsonl")
    with store.writer():
        store.append(result.model_copy(update={"trainer": trainer.info}))
    assert TOKEN not in (tmp_path / "results.jsonl").read_text()


def test_token_sources_in_order(tmp_path):
    (tmp_path / "token").write_text("from-file\n")
    env = {"FLOPS_FIT_TOKEN": "from-env"}
    both = ApiConfig(token="from-config", token_file=str(tmp_path / "token"))
    assert resolve_token(both, env) == "from-config"
    assert resolve_token(ApiConfig(token_file=str(tmp_path / "token")), env) == "from-file"
    assert resolve_token(ApiConfig(), env) == "from-env"
    assert resolve_token(ApiConfig(), {}) is None
    with pytest.raises(ConfigError, match="cannot read"):
        resolve_token(ApiConfig(token_file=str(tmp_path / "missing")), env)
    (tmp_path / "bad").write_text("two words\n")
    with pytest.raises(ConfigError) as caught:
        resolve_token(ApiConfig(token_file=str(tmp_path / "bad")), env)
    assert "two words" not in str(caught.value)


def test_the_trainer_pickles_after_training(server, spec, context):
    trainer = make_trainer(server)
    trainer.train(spec, context)  # it now holds a live HTTP client
    clone = pickle.loads(pickle.dumps(trainer))
    assert clone.config == trainer.config
    assert clone.config.token.get_secret_value() == TOKEN  # the worker can still authenticate
    assert clone._client is None and clone._transport is None
    assert clone.info == trainer.info


def test_the_config_refuses_unsafe_urls():
    with pytest.raises(ValueError, match="no credentials"):
        ApiConfig(base_url="https://user:pw@gpu-box:8443")
    with pytest.raises(ValueError, match="unencrypted"):
        ApiConfig(base_url="http://gpu-box:8765")
    assert ApiConfig(base_url="http://gpu-box:8765", insecure_http=True).insecure_http
    assert ApiConfig(base_url="HTTPS://GPU-box:8443/ff/").base_url == "https://gpu-box:8443/ff"
    assert ApiConfig(base_url="http://localhost:1").base_url == "http://localhost:1"
    assert ApiConfig(base_url="http://[::1]:8765").base_url == "http://[::1]:8765"


def test_import_pulls_in_no_http_or_server_library():
    import subprocess

    code = (
        "import sys, flops_fit_api\n"
        "print([m for m in ('httpx', 'fastapi', 'uvicorn', 'starlette') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- the trainer contract, against the fake server -------------------------------------------


class _FakeServed(ApiTrainer):
    """`ApiTrainer` wired to one shared fake server (the contract builds trainers itself)."""

    server: FakeServer | None = None

    def __init__(self, config=None):
        super().__init__(config, transport=self.server.transport())


class TestApiTrainerContract(TrainerContract):
    @pytest.fixture
    def plugin(self):
        _FakeServed.server = FakeServer()
        yield _FakeServed
        _FakeServed.server = None

    @pytest.fixture
    def plugin_config(self):
        return {"token": TOKEN, "poll_s": 0.02, "deadline_s": 5.0}


def test_the_contract_server_saw_one_run_per_spec():
    """A guard on the fake: the contract's repeats reuse the server's run."""
    server = FakeServer()
    _FakeServed.server = server
    try:
        spec = tiny_specs(1)[0]
        for _ in range(3):
            _FakeServed({"token": TOKEN, "poll_s": 0.02}).train(
                spec, TrainerContext(Path("unused"), Path("unused"))
            )
    finally:
        _FakeServed.server = None
    assert server.created == 1


def test_parallel_trains_share_one_client(server, context):
    trainer = make_trainer(server)
    specs = tiny_specs(4)
    results = {}

    def work(s):
        results[s.id] = trainer.train(s, context)

    threads = [threading.Thread(target=work, args=(s,)) for s in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.status == "ok" for r in results.values()) and len(results) == 4
    assert server.created == 4
    assert server.count("GET", "/v1/version") == 1
