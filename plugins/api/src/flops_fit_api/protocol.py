"""The wire protocol between `flops-fit serve` and the `api` trainer: paths, states, payloads.

One module both sides import, so the client and the server can never disagree on a state
name, a legal transition or the shape of a run. A run is keyed by its `ExperimentSpec.id`, a
hash of the spec's content: `PUT /v1/runs/{id}` is idempotent by construction.

    PUT  /v1/runs/{id}           body: the spec -> 201 created, 200 exists (same spec), 409 other
                                 spec under that id, 422 bad spec or id not its digest
    GET  /v1/runs/{id}[?wait=S]  the run; `wait` long-polls until its state or progress changes
    GET  /v1/runs[?state=S]      the runs, oldest first
    POST /v1/runs/{id}/cancel    ask a run to stop (a terminal run is left as it is)
    GET  /v1/runs/{id}/log       its training log (JSON lines), when its trainer writes one
    GET  /v1/health              open: {"ok": true}
    GET  /v1/version             API version, flops-fit version, the server's trainer
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from flops_fit_core import RunResult, TrainerInfo

__all__ = [
    "API_VERSION",
    "FAILURE_CAUSES",
    "MAX_BODY_BYTES",
    "MAX_WAIT_S",
    "RESUBMITTABLE",
    "TERMINAL",
    "TOKEN_ENV",
    "TRANSITIONS",
    "FailureCause",
    "RunState",
    "RunView",
    "VersionInfo",
    "can_move",
]

#: Raised with any change a client of the previous version would misread.
API_VERSION = 1
#: The environment variable holding the bearer token, for the server and the client alike.
TOKEN_ENV = "FLOPS_FIT_TOKEN"
#: Request bodies larger than this are refused (413): a spec is well under 2 KiB.
MAX_BODY_BYTES = 64 * 1024
#: The longest `?wait=` a request may ask for, in seconds.
MAX_WAIT_S = 60.0

RunState = Literal["queued", "running", "cancelling", "succeeded", "failed", "cancelled"]
#: A run in one of these states is over: nothing the server does changes it again. Only a
#: client's PUT of its spec does, for a run that did not end on its own merits (see below).
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
#: Why a terminal run may be queued again by a PUT of its spec (attempt + 1): it was cancelled
#: (a Ctrl-C of the sweep: its rerun resumes it), or its machine failed it past its retries.
RESUBMITTABLE: frozenset[str] = frozenset({"cancelled", "worker_crashed", "server_restart"})
#: state -> the states it may move to; every other move is refused (`can_move`).
TRANSITIONS: dict[str, frozenset[str]] = {
    # failed: past its retry budget when requeued; cancelled: cancelled before it started
    "queued": frozenset({"running", "cancelled", "failed"}),
    # queued: its worker or the server died and a retry is left
    "running": frozenset({"succeeded", "failed", "cancelling", "queued"}),
    # the run may finish (or fail) before it sees the cancel
    "cancelling": frozenset({"cancelled", "succeeded", "failed"}),
    "succeeded": frozenset(),
    # queued: only by a resubmission (`RESUBMITTABLE`), never by the server itself
    "failed": frozenset({"queued"}),
    "cancelled": frozenset({"queued"}),
}

FailureCause = Literal["trainer_error", "worker_crashed", "server_restart", "cancelled"]
FAILURE_CAUSES: tuple[str, ...] = ("trainer_error", "worker_crashed", "server_restart", "cancelled")


def can_move(current: str, new: str) -> bool:
    """Whether a run in state `current` may move to `new`."""
    return new in TRANSITIONS.get(current, frozenset())


class RunView(BaseModel):
    """A run as the server reports it."""

    model_config = ConfigDict(extra="forbid")

    id: str
    state: RunState
    #: 1 for the first try; +1 each time the run is requeued after an infrastructure fault
    attempt: int
    #: why the run was requeued last, or why it failed or was cancelled
    cause: FailureCause | None = None
    error: str | None = None
    progress: float = 0.0
    message: str | None = None
    created_at: float
    updated_at: float
    started_at: float | None = None
    finished_at: float | None = None
    #: the trainer's result once the run is terminal (a failed result for a failure)
    result: RunResult | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


class VersionInfo(BaseModel):
    """`GET /v1/version`: what a client checks before it submits anything."""

    model_config = ConfigDict(extra="forbid")

    api: int
    flops_fit: str
    trainer: TrainerInfo
