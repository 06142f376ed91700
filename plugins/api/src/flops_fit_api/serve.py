"""`flops-fit serve`: train the runs a remote `api` trainer submits, on this machine's devices.

The command checks everything before it listens: the token (`FLOPS_FIT_TOKEN` or
`--token-file`; none only with `--insecure` on a loopback address), the trainer and its
options (built once here, as each run's child will build them), and that no other server
uses the data directory. Then it requeues what a previous server left running, starts the
supervisor and serves until Ctrl-C or SIGTERM, after which its children checkpoint and stop.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import click

from flops_fit_core import (
    ConfigError,
    StudyLocked,
    UsageError,
    apply_overrides,
    get_host,
    load_study_config,
    write_atomic,
)

from .protocol import TOKEN_ENV
from .trainer import token_from_file_or_env

__all__ = ["read_token", "serve"]

#: Shortest token accepted: 16 bytes of `secrets.token_urlsafe` is 22 characters.
MIN_TOKEN_CHARS = 16


def read_token(token_file: Path | None) -> str | None:
    """The token from `token_file` (its first line) or `FLOPS_FIT_TOKEN`; None when neither."""
    return token_from_file_or_env(token_file, "--token-file")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("flops-fit-server"),
    show_default=True,
    help="Where runs, checkpoints and the run database live.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 1024),
    default=None,
    help="Runs trained at once (default: one per GPU, else 1).",
)
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Train with the [trainer] of this study config (TOML or YAML).",
)
@click.option(
    "--preset",
    default=None,
    metavar="NAME",
    help="Train with the [trainer] of this packaged preset (default: the default preset's).",
)
@click.option("--trainer", "trainer_name", default=None, metavar="NAME", help="The trainer's name.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="trainer.KEY=VALUE",
    help="A trainer option as trainer.KEY=VALUE, as in a study config (repeatable).",
)
@click.option(
    "--token-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help=f"File whose first line is the bearer token (default: ${TOKEN_ENV}).",
)
@click.option("--insecure", is_flag=True, help="Serve without a token (loopback only).")
@click.option("--max-queue", type=click.IntRange(1), default=10_000, show_default=True)
@click.option(
    "--infra-retries",
    type=click.IntRange(0, 100),
    default=2,
    show_default=True,
    help="Times a run is requeued after its worker or the server died.",
)
@click.option(
    "--train-retries",
    type=click.IntRange(0, 100),
    default=0,
    show_default=True,
    help="Times a run is trained again after its trainer failed (training is deterministic).",
)
@click.option(
    "--grace-s",
    type=click.FloatRange(0),
    default=30.0,
    show_default=True,
    help="Seconds a cancelled run may take to stop before SIGTERM (then SIGKILL).",
)
def serve(
    host,
    port,
    data_dir,
    workers,
    config_path,
    preset,
    trainer_name,
    overrides,
    token_file,
    insecure,
    max_queue,
    infra_retries,
    train_retries,
    grace_s,
):
    """Train runs submitted by `--trainer api` clients: an HTTP server with a run queue.

    Its trainer is the `[trainer]` of the default preset, or of `-c CONFIG` / `--preset`,
    with `--trainer` and `--set trainer.KEY=VALUE` on top, as `flops-fit run` would build it.
    """
    import uvicorn
    from filelock import FileLock, Timeout

    from flops_fit_core import visible_gpus

    from .db import RunStore
    from .server import create_app
    from .supervisor import Supervisor, kill_orphans

    token = read_token(token_file)
    if token is None and not insecure:
        raise UsageError(
            f"no token: set {TOKEN_ENV} or --token-file (e.g. python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'), or --insecure on a loopback address"
        )
    if token is None and not _is_loopback(host):
        raise UsageError(f"--insecure serves only a loopback address, not {host}")
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise UsageError(f"the token is too short: use at least {MIN_TOKEN_CHARS} characters")
    for section in apply_overrides(overrides):
        if section != "trainer":
            raise ConfigError(f"--set {section}.…: serve takes trainer options only")
    # The trainer exactly as a study with these arguments would build it (same layers).
    study = load_study_config(config_path, preset, overrides, {"trainer": trainer_name})
    table = dict(study.trainer)
    trainer = get_host().build("trainer", table)  # a bad option fails here, not in each run
    gpus = visible_gpus()  # as CUDA_VISIBLE_DEVICES names them: each child sees one
    workers = workers or max(1, len(gpus))
    devices = [gpus[i % len(gpus)] for i in range(workers)] if gpus else None
    data_dir = data_dir.resolve()  # the children are found again by it (`kill_orphans`)
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(data_dir / "server.lock"), thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise StudyLocked(f"{data_dir} is in use by another flops-fit serve") from None
    try:
        write_atomic(
            data_dir / "server.json",
            json.dumps({"trainer": table, "train_retries": train_retries}, indent=2),
        )
        store = RunStore(data_dir)
        kill_orphans(store, data_dir)  # a dead server's children must not train on
        for view in store.recover(infra_retries):
            click.echo(f"run {view.id}: {view.state} after a restart (attempt {view.attempt})")
        supervisor = Supervisor(store, data_dir, workers, infra_retries, grace_s, devices)
        app = create_app(
            store, data_dir, token.encode() if token else None, trainer.info, max_queue
        )
        supervisor.start()
        click.echo(
            f"flops-fit serve: {trainer.name!r} trainer, {workers} worker(s), data in "
            f"{data_dir}, listening on http://{host}:{port}",
            err=True,
        )
        try:
            uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
        finally:
            supervisor.stop(timeout=grace_s)
            store.close()
    finally:
        lock.release()
