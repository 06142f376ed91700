"""The `api` trainer: train each experiment on a remote `flops-fit serve`, over HTTP.

`train(spec, context)` asks the server which API it speaks (once per process), submits the
spec with `PUT /v1/runs/{spec.id}` (safe to retry: the id is the spec's content hash, so a
lost reply never makes a second run), long-polls `GET /v1/runs/{id}?wait=poll_s` until the
run is terminal, forwarding its progress to the context, and returns the server's result:
the same losses, tokens, FLOPs, curve and metrics as a local run of the server's trainer,
stamped with this trainer's `info` and with what the server reported under
`details["remote"]` (its URL, flops-fit version, the attempt, and the server-side trainer
and options that made the result).

What becomes of each ending:

- `succeeded`: the result.
- `failed` with cause `trainer_error`: `TrainingError` with the server's error (recorded as a
  failed result, like a local run that raised; training is deterministic, so a rerun leaves
  it alone unless `--retry-failed`).
- `failed` for an infrastructure fault (`worker_crashed`, `server_restart` past the server's
  retry budget), `cancelled` on the server by someone else, and every case where the run
  was never tried because of the setup (no server within `deadline_s`, a refused token, an
  incompatible server, an unreadable token file): a failed result with cause `worker_died`,
  which a plain rerun submits again once the machine or the setup is fixed.
- the sweep's cancel (Ctrl-C): `POST /v1/runs/{id}/cancel` unless `detach`, then
  `TrainingCancelled` (nothing is recorded; the next run submits the spec again and, with
  `detach`, finds the run finished or still going).

The token comes from `token`, else `token_file`, else the environment (`FLOPS_FIT_TOKEN`),
and is never recorded: the field is excluded from every dump of the config (so from
`config.toml`, `config show` and the results' trainer options), hidden from its repr, and left
out of `outcome_options`.

Nothing here imports httpx at module level: plugin modules are imported at every CLI start.
`client.py` (which does) is imported when the first run starts.
"""

from __future__ import annotations

import ipaddress
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from flops_fit_core import (
    ConfigError,
    ExperimentSpec,
    PluginConfig,
    RunResult,
    Trainer,
    TrainerContext,
    TrainingCancelled,
    TrainingError,
)

from .protocol import API_VERSION, MAX_WAIT_S, TOKEN_ENV, RunView, VersionInfo

if TYPE_CHECKING:  # pragma: no cover
    import httpx

    from .client import Client

__all__ = ["TOKEN_ENV", "ApiConfig", "ApiTrainer", "resolve_token", "token_from_file_or_env"]

#: The environment variable the token is read from when neither `token` nor `token_file` is set.
#: How long a cancel (Ctrl-C) keeps trying to reach the server before it gives up.
CANCEL_DEADLINE_S = 5.0
#: How many times a run the server no longer knows (404: its data directory was replaced) is
#: submitted again while it is being waited for.
MAX_RESUBMITS = 3
#: Where `details` of a result keep what the server reported.
REMOTE_KEY = "remote"


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ApiConfig(PluginConfig):
    """Options of the `api` trainer: where the server is, how to authenticate, how to wait.

    Only `base_url` can change a result (it picks the server, hence the trainer that trains);
    the rest say how to reach and wait for it.
    """

    base_url: str = Field(
        "http://127.0.0.1:8765",
        description="the `flops-fit serve` to train on: http(s)://host:port[/prefix] (https "
        "through a TLS proxy, or http://127.0.0.1 through an SSH tunnel)",
    )
    token: SecretStr | None = Field(
        None,
        exclude=True,
        repr=False,
        description=f"the server's bearer token; never recorded or printed. Prefer "
        f"token_file or the {TOKEN_ENV} environment variable, which are used when this is unset",
    )
    token_file: str | None = Field(
        None,
        description=f"a file holding the token (its first line); used when token is unset, "
        f"before {TOKEN_ENV}",
    )
    connect_timeout_s: float = Field(
        10.0, gt=0, le=600, description="seconds to wait for a connection to the server"
    )
    read_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="seconds to wait for a reply (a long poll waits poll_s on top of this)",
    )
    verify: bool = Field(
        True, description="verify the server's TLS certificate (https); false only for a test"
    )
    ca_file: str | None = Field(
        None,
        description="a PEM file of the CA that signed the server's certificate (a private "
        "or self-signed proxy); default: the system's CAs",
    )
    insecure_http: bool = Field(
        False,
        description="allow plain http to a host that is not this machine (a private network "
        "or VPN you trust): the token then crosses the network unencrypted",
    )
    deadline_s: float = Field(
        300.0,
        gt=0,
        le=7 * 86400,
        description="how long each request keeps retrying a failing server (no answer, "
        "502/503/504, cut replies) before the run is failed, to be submitted again by a rerun",
    )
    queue_wait_s: float | None = Field(
        None,
        gt=0,
        description="how long to wait for room when the server's queue is full (429); "
        "unset: as long as it takes (Ctrl-C still stops it)",
    )
    poll_s: float = Field(
        1.0,
        gt=0,
        le=MAX_WAIT_S,
        description="seconds each long poll of a run waits for news; also how soon a Ctrl-C "
        "is acted on",
    )
    detach: bool = Field(
        False,
        description="on Ctrl-C leave the remote runs going (a later `flops-fit train` "
        "collects their results) instead of cancelling them",
    )

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        text = value.strip()
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a URL ({exc})") from None
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{text!r} is not an http(s)://host[:port] URL")
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                "put no credentials in the URL (it is recorded with every result): give the "
                f"token with token_file or {TOKEN_ENV}"
            )
        if parts.query or parts.fragment:
            raise ValueError(f"{text!r}: a base URL has no query or fragment")
        host = parts.hostname.lower()
        netloc = f"[{host}]" if ":" in host else host
        if port is not None:
            netloc += f":{port}"
        return urlunsplit((parts.scheme.lower(), netloc, parts.path.rstrip("/"), "", ""))

    @model_validator(mode="after")
    def _safe(self) -> ApiConfig:
        parts = urlsplit(self.base_url)
        remote = not _is_loopback(parts.hostname or "")
        if parts.scheme == "http" and remote and not self.insecure_http:
            raise ValueError(
                f"base_url {self.base_url}: plain http to another machine would send the token "
                "unencrypted; use https (a TLS proxy), an SSH tunnel to 127.0.0.1, or set "
                "insecure_http = true on a network you trust"
            )
        if self.ca_file is not None and not self.verify:
            raise ValueError("ca_file is set but verify = false: choose one")
        return self


def _valid_token(token: str, where: str) -> str:
    # RFC 6750 b64token is narrower; any visible ASCII is let through, nothing that could
    # split or corrupt a header (the message never quotes the token)
    if not token or any(not (0x21 <= ord(c) <= 0x7E) for c in token):
        raise ConfigError(
            f"the token from {where} is empty or has a character a bearer token cannot "
            "carry (whitespace, control or non-ASCII)"
        )
    return token


def resolve_token(config: ApiConfig, environ: dict[str, str] | None = None) -> str | None:
    """The bearer token: `token`, else `token_file`'s first line, else `$FLOPS_FIT_TOKEN`,
    else None (a server on loopback started with `--insecure`). `ConfigError` for an
    unreadable or empty token file, or a token with characters no header can carry."""
    if config.token is not None:
        return _valid_token(config.token.get_secret_value().strip(), "trainer.token")
    return token_from_file_or_env(config.token_file, "trainer.token_file", environ)


def token_from_file_or_env(
    token_file: str | Path | None, what: str, environ: Mapping[str, str] | None = None
) -> str | None:
    """The first line of `token_file` (named `what` in errors) when given, else
    `$FLOPS_FIT_TOKEN`, else None: the one reading of a token for the client and `serve`."""
    if token_file is not None:
        path = Path(token_file).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise ConfigError(f"{what} {path}: cannot read it ({why})") from None
        lines = text.strip().splitlines()
        return _valid_token(lines[0].strip() if lines else "", f"{what} {path}")
    environ = os.environ if environ is None else environ
    if token := environ.get(TOKEN_ENV, "").strip():
        return _valid_token(token, TOKEN_ENV)
    return None


class ApiTrainer(Trainer):
    """Trains each spec on a remote `flops-fit serve` and returns the server's result.

    `deterministic = True`: the server keys runs by the spec's content hash and keeps each
    result, so the same spec asked of the same server twice gets the same stored result, bit
    for bit (JSON floats round-trip exactly); and the servers' trainers (`mock`, `local`)
    are deterministic themselves, so even a server that lost its data trains the same loss.
    A server running a nondeterministic trainer would still answer a repeat with its stored
    result; only a run it has to train anew could differ.

    Picklable (the `process` executor ships trainers to its workers): the HTTP client, made
    at the first `train`, is left out of the pickle and made again in the worker, as is
    `transport` (a test seam, an `httpx.BaseTransport` that replaces the network).
    """

    name = "api"
    deterministic = True
    Config = ApiConfig
    config: ApiConfig

    def __init__(
        self,
        config: ApiConfig | dict[str, Any] | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
    ):
        super().__init__(config)
        self._transport = transport
        self._fresh()

    def _fresh(self) -> None:
        self._lock = threading.Lock()
        self._version_lock = threading.Lock()
        self._client: Client | None = None
        self._server: VersionInfo | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.config = state["config"]
        self._transport = None
        self._fresh()

    def outcome_options(self) -> dict[str, Any]:
        """Only `base_url`: it picks the server, hence the trainer and options that make the
        result (recorded per result under `details["remote"]`). Timeouts, retries, polling,
        TLS settings, `detach` and the token cannot change a loss."""
        return {"base_url": self.config.base_url}

    def validate_study(self, study: Any) -> None:
        """The local half of the setup, before anything trains: the token can be read and
        sent, the CA file exists. (The server itself is asked only when a run starts, so
        that planning needs no network.)"""
        resolve_token(self.config)
        if self.config.ca_file is not None and not Path(self.config.ca_file).expanduser().is_file():
            raise ConfigError(f"trainer.ca_file {self.config.ca_file}: no such file")

    # -- training -----------------------------------------------------------------------

    def train(self, spec: ExperimentSpec, context: TrainerContext) -> RunResult:
        context.check_cancelled()
        started = time.monotonic()
        interrupt = context.cancelled
        client: Client | None = None
        submitted = False
        try:
            client = self._connect()
            server = self._check_server(client, interrupt)
            submitted = True  # from here the run may exist on the server, even if the reply is lost
            view, _created = client.put_run(spec, interrupt=interrupt)
            self._check_view(view, spec)
            context.progress(_fraction(view), self._say(view))
            view = self._follow(client, spec, view, context)
            return self._finish(spec, view, server, started)
        except TrainingCancelled:
            note = self._stop_remote(client, spec.id) if submitted else "cancelled"
            raise TrainingCancelled(note) from None
        except ConfigError as exc:
            return self._not_trained(spec, str(exc), started)
        except TrainingError as exc:
            if getattr(exc, "retry_on_rerun", False):
                return self._not_trained(spec, str(exc), started)
            raise

    def _connect(self) -> Client:
        """The HTTP client, made on first use (so the trainer pickles, and httpx is imported
        only when a run starts)."""
        with self._lock:
            if self._client is None:
                from .client import Client

                cfg = self.config
                self._client = Client(
                    cfg.base_url,
                    resolve_token(cfg),
                    connect_timeout_s=cfg.connect_timeout_s,
                    read_timeout_s=cfg.read_timeout_s,
                    verify=self._verify(),
                    deadline_s=cfg.deadline_s,
                    busy_deadline_s=cfg.queue_wait_s,
                    transport=self._transport,
                )
            return self._client

    def _verify(self) -> Any:
        if self.config.ca_file is None:
            return self.config.verify
        import ssl

        path = Path(self.config.ca_file).expanduser()
        try:
            return ssl.create_default_context(cafile=str(path))
        except (OSError, ssl.SSLError) as exc:
            why = getattr(exc, "strerror", None) or " ".join(str(exc).split())
            raise ConfigError(f"trainer.ca_file {path}: cannot use it ({why})") from None

    def _check_server(self, client: Client, interrupt: Any) -> VersionInfo:
        """The server's `/v1/version`, asked once per trainer (so once per process); one
        line naming both versions when it speaks another API."""
        with self._version_lock:  # one question however many threads start at once
            if self._server is None:
                self._server = client.version(interrupt=interrupt)
            server = self._server
        if server.api != API_VERSION:
            from .client import ApiError

            raise ApiError(
                f"the server at {self.config.base_url} speaks flops-fit API version "
                f"{server.api} (flops-fit {server.flops_fit}), this client API version "
                f"{API_VERSION}: install the same flops-fit-api version on both machines"
            )
        return server

    def _follow(
        self, client: Client, spec: ExperimentSpec, view: RunView, context: TrainerContext
    ) -> RunView:
        """Long-poll the run until it is terminal, forwarding each change to the context."""
        from .client import NotFound

        poll = self.config.poll_s
        resubmits = 0
        while not view.terminal:
            context.check_cancelled()
            asked = time.monotonic()
            try:
                new = client.get_run(spec.id, wait=poll, interrupt=context.cancelled)
            except NotFound:
                # the server lost the run (a new data directory): submitting again is safe
                if resubmits >= MAX_RESUBMITS:
                    raise
                resubmits += 1
                new, _ = client.put_run(spec, interrupt=context.cancelled)
            self._check_view(new, spec)
            if _news(view, new):
                context.progress(_fraction(new), self._say(new))
            elif (spent := time.monotonic() - asked) < poll / 2:
                # a server that answers at once without news (a proxy that cuts long
                # polls short): do not hammer it
                _pause(poll - spent, context)
            view = new
        return view

    def _finish(
        self, spec: ExperimentSpec, view: RunView, server: VersionInfo, started: float
    ) -> RunResult:
        where = f"run {spec.id} on {self.config.base_url}"
        if view.state == "succeeded":
            result = view.result
            if result is None or result.status != "ok" or result.experiment_id != spec.id:
                raise TrainingError(f"{where} succeeded, but the server sent no ok result for it")
            remote = {
                "url": self.config.base_url,
                "attempt": view.attempt,
                "api": server.api,
                "flops_fit": server.flops_fit,
                "trainer": result.trainer.model_dump(mode="json"),
            }
            details = {**result.details, REMOTE_KEY: remote}
            return result.model_copy(
                update={"spec": spec, "trainer": self.info, "details": details}
            )
        error = view.error or (view.result.error if view.result is not None else None)
        error = error or "no error message"
        if view.state == "cancelled":
            # someone cancelled it there (another client, or an earlier Ctrl-C that a server
            # not submitting cancelled runs again still answers with)
            why = f": {view.error}" if view.error else ""
            return self._not_trained(
                spec, f"{where} was cancelled on the server before it finished{why}", started
            )
        message = f"{where} failed ({view.cause or 'no cause given'}, attempt {view.attempt}): "
        message += error
        if view.cause in ("worker_crashed", "server_restart"):
            return self._not_trained(spec, message, started)
        raise TrainingError(" ".join(message.split()))

    def _not_trained(self, spec: ExperimentSpec, error: str, started: float) -> RunResult:
        """A failed result for a run that was not tried, or died with its machine: cause
        `worker_died`, so a plain rerun submits it again."""
        message = " ".join(f"{error}; a rerun submits it again".split())
        return RunResult.failure(
            spec,
            self.info,
            message,
            cause="worker_died",
            wall_time_s=time.monotonic() - started,
        )

    def _stop_remote(self, client: Client | None, run_id: str) -> str:
        """After the sweep's cancel: ask the server to stop the run unless `detach`; what
        became of it, in words, for `TrainingCancelled`."""
        url = self.config.base_url
        if self.config.detach:
            return (
                f"cancelled here; run {run_id} goes on at {url} (detach = true): a rerun "
                "collects its result"
            )
        if client is None:
            return "cancelled"
        from .client import ApiError, NotFound

        try:
            client.cancel(run_id, deadline_s=min(self.config.deadline_s, CANCEL_DEADLINE_S))
        except NotFound:
            return "cancelled before the server had the run"
        except ApiError as exc:
            return f"cancelled; could not ask {url} to stop run {run_id} ({exc}): it may go on"
        return f"cancelled; asked {url} to stop run {run_id}"

    def _check_view(self, view: RunView, spec: ExperimentSpec) -> None:
        if view.id != spec.id:
            raise TrainingError(
                f"{self.config.base_url} answered for run {view.id}, asked for {spec.id}"
            )

    def _say(self, view: RunView) -> str:
        where = urlsplit(self.config.base_url).netloc
        if view.state == "queued":
            text = f"queued at {where}"
        elif view.state == "running":
            text = view.message or f"running at {where}"
        elif view.state == "cancelling":
            text = f"cancelling at {where}"
        else:
            text = view.message or f"{view.state} at {where}"
        if view.attempt > 1:
            after = f" after {view.cause.replace('_', ' ')}" if view.cause else ""
            text += f" (attempt {view.attempt}{after})"
        return text


def _fraction(view: RunView) -> float:
    value = float(view.progress)
    return min(max(value, 0.0), 1.0) if value == value else 0.0


def _news(old: RunView, new: RunView) -> bool:
    return (old.state, old.attempt, old.progress, old.message) != (
        new.state,
        new.attempt,
        new.progress,
        new.message,
    )


def _pause(seconds: float, context: TrainerContext) -> None:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        context.check_cancelled()
        time.sleep(min(left, 0.1))
