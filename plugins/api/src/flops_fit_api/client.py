"""The HTTP client of `flops-fit serve`: bearer auth, timeouts, retries within a deadline.

One `Client` wraps one `httpx.Client` (a connection pool; safe to share between threads).
Every request is retried on what a restarting or overloaded server looks like from outside:
connection and read errors, timeouts, a reply cut short, and HTTP 429/502/503/504. Waits
grow exponentially with full jitter (a uniform draw in `[0, min(cap, base * 2**n)]`, so many
clients kept out by one outage do not come back in step) and are never shorter than the
server's `Retry-After`. A server that keeps failing for `deadline_s` gives `ServerUnavailable`;
a 429 (the server is up, its queue is full) does not spend that deadline, only its own
`busy_deadline_s` (None: wait for room as long as it takes). Every request is safe to retry:
`PUT /v1/runs/{id}` is keyed by the spec's content hash, and a cancel of a cancelled run is
a no-op. Any other error status is answered at once with one `ApiError` line carrying the
server's `detail`.

The token is sent as `Authorization: Bearer ...` and nowhere else: no message, repr or
exception of this module contains it (messages are also scrubbed of it, in case a server or a
proxy echoes it back).

This module imports httpx at its top: it is imported only when a run starts (by
`ApiTrainer.train`), never when flops-fit loads its plugins.
"""

from __future__ import annotations

import json
import math
import random
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from flops_fit_core import ExperimentSpec, TrainingCancelled, TrainingError

from .protocol import MAX_WAIT_S, RunView, VersionInfo

__all__ = [
    "BACKOFF_BASE_S",
    "BACKOFF_CAP_S",
    "RETRY_STATUSES",
    "ApiError",
    "Client",
    "NotFound",
    "ServerUnavailable",
]

#: Statuses that mean "come back later": too many requests, and a proxy whose server is down.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: The first retry waits up to this long; each further one up to twice as long...
BACKOFF_BASE_S = 0.25
#: ... but never more than this (before `Retry-After`, which may ask for longer).
BACKOFF_CAP_S = 10.0
#: A `Retry-After` longer than this is taken as this: a typo must not park a sweep for a day.
MAX_RETRY_AFTER_S = 300.0
#: Waits are slept in slices this long, so a cancel stops them at once.
SLICE_S = 0.1
#: The longest `detail` an error message quotes.
MAX_DETAIL_CHARS = 400

#: Transport errors a retry can cure: the server is restarting, overloaded, or cut a reply
#: short. (Not: a malformed URL, a bad header, a redirect loop, a TLS certificate refused.)
_TRANSIENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


class ApiError(TrainingError):
    """A request the server refused or could not answer, in one line (never the token).

    `status` is the HTTP status (None for a transport failure). `retry_on_rerun` says
    whether the run was never tried because of the setup or the machine (no server, wrong
    token, wrong version): a rerun should submit it again. It is False only for refusals of
    the spec itself (400, 409, 422), which a rerun would meet again.
    """

    def __init__(self, message: str, *, status: int | None = None, retry_on_rerun: bool = True):
        super().__init__(" ".join(message.split()))
        self.status = status
        self.retry_on_rerun = retry_on_rerun


class ServerUnavailable(ApiError):
    """The server kept failing (no answer, 5xx, a full queue) past the deadline."""


class NotFound(ApiError):
    """404: the server has no such run (or is not a flops-fit server)."""


def _package_version() -> str:
    try:
        return version("flops-fit-api")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


class Client:
    """A client of one `flops-fit serve`, over `httpx.Client`.

    `transport` replaces the network (an `httpx.MockTransport` in tests), as in httpx;
    `verify` is httpx's: True, False, or an `ssl.SSLContext` (a private CA). `deadline_s`
    bounds how long a request keeps retrying a failing server; `busy_deadline_s` how long
    it waits for room in a full queue (429), None for as long as it takes.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 30.0,
        verify: bool | ssl.SSLContext = True,
        deadline_s: float = 300.0,
        busy_deadline_s: float | None = None,
        transport: httpx.BaseTransport | None = None,
        backoff_base_s: float | None = None,
        backoff_cap_s: float | None = None,
        rng: random.Random | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.deadline_s = deadline_s
        self.busy_deadline_s = busy_deadline_s
        self.backoff_base_s = BACKOFF_BASE_S if backoff_base_s is None else backoff_base_s
        self.backoff_cap_s = BACKOFF_CAP_S if backoff_cap_s is None else backoff_cap_s
        self._rng = rng or random.Random()
        self._secret = token or None  # only for scrubbing messages; sent in the header below
        headers = {
            "User-Agent": f"flops-fit-api/{_package_version()}",
            "Accept": "application/json",
        }
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=self._timeout(0.0),
            verify=verify,
            transport=transport,
            follow_redirects=False,  # a redirect elsewhere would carry the token with it
        )

    def __repr__(self) -> str:
        return f"Client({self.base_url!r}, token={'set' if self._secret else 'none'})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- the endpoints ------------------------------------------------------------------

    def version(self, *, interrupt: Callable[[], bool] | None = None) -> VersionInfo:
        """`GET /v1/version`: the server's API version, flops-fit version and trainer."""
        response = self.request("GET", "/v1/version", interrupt=interrupt)
        return self._parse(response, VersionInfo)

    def put_run(
        self, spec: ExperimentSpec, *, interrupt: Callable[[], bool] | None = None
    ) -> tuple[RunView, bool]:
        """`PUT /v1/runs/{id}`: submit `spec`; (its run, whether this call created it).

        Safe to retry: the id is the spec's content hash, so a PUT whose reply was lost and
        is sent again finds the run the first one made (200) instead of making a second.
        """
        path = f"/v1/runs/{quote(spec.id, safe='')}"
        response = self.request("PUT", path, body=spec.model_dump(mode="json"), interrupt=interrupt)
        return self._parse(response, RunView), response.status_code == 201

    def get_run(
        self,
        run_id: str,
        wait: float | None = None,
        *,
        interrupt: Callable[[], bool] | None = None,
    ) -> RunView:
        """`GET /v1/runs/{id}`; with `wait`, a long poll that returns once the run's state or
        progress changes, or after `wait` seconds (at most `MAX_WAIT_S`)."""
        path = f"/v1/runs/{quote(run_id, safe='')}"
        params = None
        extra = 0.0
        if wait is not None and wait > 0:
            extra = min(float(wait), MAX_WAIT_S)
            params = {"wait": f"{extra:g}"}
        response = self.request("GET", path, params=params, interrupt=interrupt, extra_read_s=extra)
        return self._parse(response, RunView)

    def cancel(self, run_id: str, *, deadline_s: float | None = None) -> RunView:
        """`POST /v1/runs/{id}/cancel`: ask the run to stop (a terminal run stays as it is)."""
        path = f"/v1/runs/{quote(run_id, safe='')}/cancel"
        response = self.request("POST", path, deadline_s=deadline_s)
        return self._parse(response, RunView)

    # -- the machinery ------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        interrupt: Callable[[], bool] | None = None,
        deadline_s: float | None = None,
        extra_read_s: float = 0.0,
    ) -> httpx.Response:
        """Send one request, retrying what a retry can cure; the first other answer.

        `interrupt` is looked at before each try and during each wait: once it answers
        True, `TrainingCancelled` is raised. A status outside `RETRY_STATUSES` is returned
        as it is (see `_parse` for what becomes an error).
        """
        what = f"{method} {self.base_url}{path}"
        start = time.monotonic()
        budget = self.deadline_s if deadline_s is None else deadline_s
        deadline = start + budget
        busy_until = None if self.busy_deadline_s is None else start + self.busy_deadline_s
        tries = 0
        while True:
            _check(interrupt)
            tries += 1
            retry_after: float | None = None
            busy = False
            status: int | None = None
            try:
                response = self._http.request(
                    method, path, json=body, params=params, timeout=self._timeout(extra_read_s)
                )
            except _TRANSIENT as exc:
                if _tls_refused(exc):
                    raise ApiError(
                        self._scrub(
                            f"{what}: TLS: {_one_line(exc)} (set trainer.ca_file to the CA "
                            "that signed the server's certificate, or trainer.verify = false "
                            "for a test)"
                        )
                    ) from None
                last = f"{type(exc).__name__}: {_one_line(exc) or 'no detail'}"
            except httpx.HTTPError as exc:
                raise ApiError(
                    self._scrub(f"{what}: {type(exc).__name__}: {_one_line(exc)}")
                ) from None
            else:
                if response.status_code not in RETRY_STATUSES:
                    return response
                status = response.status_code
                retry_after = _retry_after(response.headers.get("Retry-After"))
                busy = status == 429
                last = f"HTTP {status}"
                if detail := _detail(response):
                    last += f": {detail}"
            now = time.monotonic()
            growth = 2.0 ** min(tries - 1, 60)  # bounded: a queue waited out for days
            wait = self._rng.uniform(0.0, min(self.backoff_cap_s, self.backoff_base_s * growth))
            if retry_after is not None:
                wait = max(wait, retry_after)
            if busy:
                # the server is up and said when to come back: not a failing server
                deadline = max(deadline, now + budget)
                limit = busy_until
                why = f"the server's queue stayed full (over {now - start:.1f} s"
            else:
                limit = deadline
                why = f"no usable answer within {budget:g} s (over {now - start:.1f} s"
            if limit is not None and now + wait > limit:
                raise ServerUnavailable(
                    self._scrub(
                        f"{what}: {why}, {tries} {'try' if tries == 1 else 'tries'}; last: "
                        f"{last}); is `flops-fit serve` running there?"
                    ),
                    status=status,
                )
            _sleep(wait, interrupt)

    def _timeout(self, extra_read_s: float) -> httpx.Timeout:
        read = self.read_timeout_s + extra_read_s
        return httpx.Timeout(connect=self.connect_timeout_s, read=read, write=read, pool=read)

    def _parse(self, response: httpx.Response, model: type[BaseModel]) -> Any:
        """The reply as `model`, or one `ApiError` line for an error status or a bad body."""
        what = f"{response.request.method} {response.request.url.copy_with(query=None)}"
        status = response.status_code
        if status >= 300:
            raise self._status_error(response, what)
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(top level)"
            kind = response.headers.get("content-type", "no content type")
            raise ApiError(
                self._scrub(
                    f"{what}: the reply is not a flops-fit {model.__name__} "
                    f"({kind}; {where}: {first['msg']}); is base_url a `flops-fit serve` of "
                    "the same version?"
                ),
                status=status,
            ) from None

    def _status_error(self, response: httpx.Response, what: str) -> ApiError:
        status = response.status_code
        reason = response.reason_phrase or ""
        detail = _detail(response)
        message = f"{what}: HTTP {status} {reason}".rstrip()
        if detail:
            message += f": {detail}"
        hint = {
            401: "the server wants its token: set FLOPS_FIT_TOKEN or trainer.token_file",
            403: "the server refused this token",
            413: "the request is larger than the server accepts",
        }.get(status)
        if 300 <= status < 400:
            where = response.headers.get("location", "?")
            hint = f"the server redirects to {where}: set base_url to it"
        if hint:
            message += f" ({hint})"
        cls = NotFound if status == 404 else ApiError
        return cls(
            self._scrub(message), status=status, retry_on_rerun=status not in (400, 409, 422)
        )

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text


def _check(interrupt: Callable[[], bool] | None) -> None:
    if interrupt is not None and interrupt():
        raise TrainingCancelled("cancelled")


def _sleep(seconds: float, interrupt: Callable[[], bool] | None) -> None:
    """Sleep `seconds` in slices, raising `TrainingCancelled` as soon as `interrupt` says so."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        _check(interrupt)
        time.sleep(min(left, SLICE_S))
    _check(interrupt)


def _retry_after(value: str | None) -> float | None:
    """`Retry-After` in seconds: a number of seconds or an HTTP date; None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _detail(response: httpx.Response) -> str:
    """The server's explanation, one line: FastAPI's `{"detail": ...}` (a string, or a
    validation error list), else a short plain-text body."""
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        kind = response.headers.get("content-type", "")
        text = response.text if kind.startswith("text/plain") else ""
        return _clip(text)
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, str):
        return _clip(detail)
    if isinstance(detail, list) and all(isinstance(d, dict) for d in detail):
        parts = []
        for d in detail:
            loc = [str(p) for p in d.get("loc", ())]
            if loc[:1] in (["body"], ["query"], ["path"]):
                loc = loc[1:]
            msg = str(d.get("msg", d))
            parts.append(f"{'.'.join(loc)}: {msg}" if loc else msg)
        return _clip("; ".join(parts))
    return _clip(json.dumps(detail, default=str))


def _clip(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 3] + "..."


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _tls_refused(exc: BaseException) -> bool:
    """Whether a connect error is a refused certificate (or another TLS failure): a retry
    cannot cure it, so it is reported at once."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return isinstance(exc, httpx.ConnectError) and "CERTIFICATE_VERIFY_FAILED" in str(exc)
