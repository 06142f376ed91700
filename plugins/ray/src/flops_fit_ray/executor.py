"""`RayExecutor`: the sweep as Ray tasks, results handled by the driver as they complete.

Only the driver calls `on_result` (so only it appends to `results.jsonl`), at most
`max_in_flight` tasks are submitted at once, and each result is handled as soon as its task
completes, whatever the order. Ray retries a task whose worker process or node died, up to
`infra_retries` times (from the run's checkpoint: the checkpoint folder is shared); a
trainer's own exception is a `failed` result and is never retried. A cancel (the first
Ctrl-C, or the Python API's event) reaches the runs in flight through a `CancelFlag` file:
they checkpoint and stop; whatever is left after `grace_s` is force-cancelled, and nothing
more is delivered.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import sys
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flops_fit_core import (
    CancelFlag,
    ClusterError,
    Executor,
    ExperimentSpec,
    RunResult,
    Trainer,
    check_versions,
    in_flight_for,
    shared_folder,
)

from .config import RayConfig

__all__ = ["RayExecutor"]

#: Seconds between two looks at the driver's cancel event while tasks run.
TICK_S = 0.2


#: Ray's hook for drivers started by `uv run` ships the working directory to every worker and
#: starts each through `uv run`, building a second environment at run time: off, unless the
#: user turned it on. The environment must already be installed on every node.
UV_HOOK_ENV = "RAY_ENABLE_UV_RUN_RUNTIME_ENV"


def import_ray():
    """`import ray`, with its `uv run` hook off (Ray reads the switch once, at import)."""
    os.environ.setdefault(UV_HOOK_ENV, "0")
    import ray

    return ray


#: Seconds to wait for a cluster's head to accept a connection (Ray itself waits minutes).
CONNECT_TIMEOUT_S = 5.0


def _check_reachable(address: str | None) -> None:
    """Fail in one line, within seconds, if a `HOST:PORT` or `ray://HOST:PORT` head does
    not accept connections (`auto` and unset are Ray's to resolve)."""
    if address is None or address == "auto":
        return
    hostport = address.removeprefix("ray://").rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(
            f"executor 'ray': address {address!r} is not 'auto', HOST:PORT or ray://HOST:PORT"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ClusterError(
            f"executor 'ray': cannot reach the Ray head at {address} ({exc.strerror or exc}); "
            "is the cluster up (`ray status` on its head)?"
        ) from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


class RayExecutor(Executor):
    """Trains each experiment as a Ray task on a cluster (or a Ray started on this machine).

    The environment (Python, flops-fit, the trainer) must already be installed on every node
    at the driver's versions; the driver checks them on the first result.
    """

    name = "ray"
    Config = RayConfig
    config: RayConfig

    def task_options(self, trainer: Trainer) -> dict[str, Any]:
        """What each experiment's task asks Ray for, and how Ray retries it."""
        config = self.config
        gpus = config.num_gpus if config.num_gpus is not None else (1 if trainer.uses_gpu() else 0)
        options: dict[str, Any] = {
            "num_cpus": config.num_cpus if config.num_cpus is not None else 1,
            "num_gpus": gpus,
            "max_retries": config.infra_retries,
            "retry_exceptions": False,
        }
        if config.memory is not None:
            options["memory"] = config.memory
        if config.resources:
            options["resources"] = dict(config.resources)
        if config.runtime_env.env_vars:
            options["runtime_env"] = {"env_vars": dict(config.runtime_env.env_vars)}
        return options

    def map(
        self,
        trainer: Trainer,
        specs: Iterable[ExperimentSpec],
        on_result: Callable[[RunResult], None],
        *,
        run_dir: Path,
        cancel: threading.Event | None = None,
        on_progress: Callable[[str, float, str | None], None] | None = None,
    ) -> None:
        queue = deque(specs)
        cancel = cancel if cancel is not None else threading.Event()
        if not queue or cancel.is_set():
            return
        ray = import_ray()

        started = self._join(ray)
        try:
            self._sweep(ray, trainer, queue, on_result, Path(run_dir).resolve(), cancel)
        finally:
            if started:
                ray.shutdown()

    def _join(self, ray) -> bool:
        """Join the configured cluster (or start a local Ray); True if this call did."""
        if ray.is_initialized():
            return False
        _check_reachable(self.config.address)
        try:
            ray.init(
                address=self.config.address,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
        except Exception as exc:  # ConnectionError, a refused token, a bad address
            where = self.config.address or "a local Ray"
            raise ClusterError(f"executor 'ray': cannot join {where}: {_one_line(exc)}") from None
        return True

    def _sweep(self, ray, trainer, queue, on_result, run_dir: Path, cancel) -> None:
        from ray.exceptions import RayError, RayTaskError, TaskCancelledError

        from ._task import train_task

        config = self.config
        options = self.task_options(trainer)
        root = shared_folder(run_dir, config.checkpoint_dir, "executor.checkpoint_dir")
        flag = CancelFlag((root or run_dir / "checkpoints") / f".cancel-{uuid.uuid4().hex}")
        cap = config.max_in_flight or in_flight_for(self._slots(ray, options))
        threads = max(1, math.floor(options["num_cpus"]))
        task = train_task.options(**options)
        pending: dict[Any, ExperimentSpec] = {}
        checked = False
        stopped_by = None
        try:
            while (queue or pending) and not cancel.is_set():
                while queue and len(pending) < cap:
                    spec = queue.popleft()
                    pending[task.remote(trainer, spec, run_dir, root, flag, threads)] = spec
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=TICK_S)
                for ref in ready:
                    spec = pending.pop(ref)
                    try:
                        reply = ray.get(ref)
                    except TaskCancelledError:
                        continue
                    except RayTaskError as exc:  # outside the trainer: the node's install
                        raise ClusterError(
                            f"executor 'ray': experiment {spec.id} failed on its worker "
                            f"outside the trainer ({_one_line(exc.cause or exc)}): is "
                            "flops-fit with this trainer installed on every node?"
                        ) from None
                    except RayError as exc:  # its worker or node died on every try
                        tries = config.infra_retries + 1
                        on_result(
                            RunResult.failure(
                                spec,
                                trainer.info,
                                f"the Ray worker died on each of {tries} "
                                f"{'try' if tries == 1 else 'tries'} ({_one_line(exc)}); "
                                "a rerun tries again",
                                cause="worker_died",
                            )
                        )
                        continue
                    if not checked:
                        check_versions(trainer, reply)
                        checked = True
                    if reply.result is not None:  # None: cancelled, checkpointed
                        on_result(reply.result)
        except BaseException as exc:
            stopped_by = exc
            raise
        finally:
            if pending:
                self._stop(
                    ray, list(pending), flag, at_once=isinstance(stopped_by, KeyboardInterrupt)
                )
            flag.clear()

    def _stop(self, ray, refs: list, flag: CancelFlag, *, at_once: bool) -> None:
        """The runs in flight checkpoint and stop (up to `grace_s`), then every task left is
        force-cancelled; their results are dropped. A second Ctrl-C skips the wait.

        Only tasks that have not ended are force-cancelled: Ray (2.60) aborts the driver
        process when a force-cancel crosses the reply of a task that is just completing
        ("Tried to complete task that was not pending"), so a finished task is left alone.
        """
        flag.set()
        if not at_once and self.config.grace_s > 0:
            with contextlib.suppress(KeyboardInterrupt):
                ray.wait(refs, num_returns=len(refs), timeout=self.config.grace_s)
        _, running = ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in running:
            try:
                ray.cancel(ref, force=True)
            except Exception as exc:  # pragma: no cover - a task that ended meanwhile
                print(f"note: executor 'ray': {_one_line(exc)}", file=sys.stderr)

    @staticmethod
    def _slots(ray, options: dict[str, Any]) -> float:
        """How many experiments the cluster runs at once, by its GPUs for a GPU trainer."""
        total = ray.cluster_resources()
        if options["num_gpus"]:
            return total.get("GPU", 0) / options["num_gpus"]
        return total.get("CPU", 0) / options["num_cpus"]
