"""The HTTP side of `flops-fit serve`: a FastAPI app over the run store, behind a bearer token.

Every route but `/v1/health` needs `Authorization: Bearer <token>`, compared in constant time
on bytes; the token is never logged. Bodies over `protocol.MAX_BODY_BYTES` are refused (413)
while they are read, a full queue is 429 with `Retry-After`, and a bad spec is 422 with the
validation message. Nothing in a request names a file: a run's files live under the data
directory at paths made from its id, which is a hex digest checked against the spec.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import ValidationError

from flops_fit_core import ExperimentSpec, TrainerInfo, __version__

from .child import run_dir
from .db import RunStore, SpecConflict
from .protocol import (
    API_VERSION,
    MAX_BODY_BYTES,
    MAX_WAIT_S,
    TERMINAL,
    TRANSITIONS,
    RunView,
    VersionInfo,
)

__all__ = ["create_app"]

#: A run id: the spec's digest, 12 hex digits (anything else is refused before any lookup).
_RUN_ID = re.compile(r"[0-9a-f]{12}")
#: Seconds between a long-poll's looks at its run.
_POLL_S = 0.1


def create_app(
    store: RunStore,
    data_dir: Path,
    token: bytes | None,
    trainer: TrainerInfo,
    max_queue: int = 10_000,
) -> FastAPI:
    """The app of one server. `token=None` serves without authentication (`--insecure`)."""
    app = FastAPI(title="flops-fit serve", version=str(API_VERSION), docs_url=None, redoc_url=None)

    @app.middleware("http")
    async def authenticate(request: Request, call_next):
        if request.url.path != "/v1/health" and token is not None:
            given = request.headers.get("authorization", "")
            scheme, _, value = given.partition(" ")
            ok = scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token)
            if not ok:
                return JSONResponse(
                    {"detail": "a valid bearer token is required"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        return await call_next(request)

    @app.get("/v1/health")
    async def health() -> dict[str, Any]:
        return {"ok": True}

    @app.get("/v1/version")
    async def version() -> dict[str, Any]:
        info = VersionInfo(api=API_VERSION, flops_fit=__version__, trainer=trainer)
        return info.model_dump(mode="json")

    @app.put("/v1/runs/{run_id}")
    async def put_run(run_id: str, request: Request):
        _check_id(run_id)
        body = await _read_body(request)
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise HTTPException(422, f"the body is not JSON: {exc}") from None
        existing = await asyncio.to_thread(store.get, run_id)
        if existing is None and await asyncio.to_thread(store.count, "queued") >= max_queue:
            raise HTTPException(
                429, f"the queue is full ({max_queue} runs)", headers={"Retry-After": "30"}
            )
        try:
            spec = ExperimentSpec.model_validate(data)
        except ValidationError as exc:
            if existing is not None:
                raise HTTPException(409, f"run {run_id} exists with another spec") from None
            raise HTTPException(422, _validation_message(exc)) from None
        if spec.id != run_id:
            if existing is not None:
                raise HTTPException(409, f"run {run_id} exists with another spec")
            raise HTTPException(
                422, f"the path's id {run_id!r} is not the spec's digest {spec.id!r}"
            )
        try:
            view, created = await asyncio.to_thread(store.create, spec)
        except SpecConflict:
            raise HTTPException(409, f"run {run_id} exists with another spec") from None
        return JSONResponse(view.model_dump(mode="json"), status_code=201 if created else 200)

    @app.get("/v1/runs/{run_id}")
    async def get_run(run_id: str, wait: float | None = None):
        _check_id(run_id)
        view = await _found(store, run_id)
        if wait is None or view.state in TERMINAL:
            return view.model_dump(mode="json")
        wait = min(max(wait, 0.0), MAX_WAIT_S)
        seen = await asyncio.to_thread(store.version_of, run_id)
        deadline = asyncio.get_running_loop().time() + wait
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(_POLL_S)
            if await asyncio.to_thread(store.version_of, run_id) != seen:
                break
        return (await _found(store, run_id)).model_dump(mode="json")

    @app.get("/v1/runs")
    async def list_runs(state: str | None = None):
        if state is not None and state not in TRANSITIONS:
            known = ", ".join(TRANSITIONS)
            raise HTTPException(422, f"unknown state {state!r}; the states are {known}")
        views = await asyncio.to_thread(store.list, state)
        return [v.model_dump(mode="json") for v in views]

    @app.post("/v1/runs/{run_id}/cancel")
    async def cancel(run_id: str):
        _check_id(run_id)
        await _found(store, run_id)
        view = await asyncio.to_thread(store.request_cancel, run_id)
        return view.model_dump(mode="json")

    @app.get("/v1/runs/{run_id}/log")
    async def log(run_id: str):
        _check_id(run_id)
        await _found(store, run_id)
        path = run_dir(data_dir, run_id) / "logs" / f"{run_id}.jsonl"
        text = path.read_text() if path.is_file() else ""
        return PlainTextResponse(text, media_type="application/x-ndjson")

    return app


def _check_id(run_id: str) -> None:
    if not _RUN_ID.fullmatch(run_id):
        raise HTTPException(422, f"{run_id!r} is not a run id (12 hex digits, the spec's digest)")


async def _found(store: RunStore, run_id: str) -> RunView:
    view = await asyncio.to_thread(store.get, run_id)
    if view is None:
        raise HTTPException(404, f"no run {run_id}")
    return view


async def _read_body(request: Request) -> bytes:
    """The body, refused (413) as soon as it passes the limit, whatever Content-Length says."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HTTPException(413, f"the body is over {MAX_BODY_BYTES} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise HTTPException(413, f"the body is over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _validation_message(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"not a valid spec: {loc + ': ' if loc else ''}{err['msg']}{more}"
