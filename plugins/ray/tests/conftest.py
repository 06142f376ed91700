"""A local Ray cluster per test module: `ray.init(num_cpus=2)` with its own temp dir and an
auth token, shut down when the module ends."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile

import pytest


@pytest.fixture(scope="module")
def ray_cluster(request):
    import cloudpickle

    from flops_fit_ray.executor import import_ray

    ray = import_ray()

    # the test modules' trainers travel by value: Ray workers cannot import a test module
    cloudpickle.register_pickle_by_value(sys.modules[request.module.__name__])
    token = secrets.token_hex(16)
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    _reload_auth_settings()  # Ray reads them once, at import
    # Ray's sockets live under the temp dir: keep its path short (AF_UNIX allows ~107 bytes)
    temp = tempfile.mkdtemp(prefix="ffray")
    ray.init(
        num_cpus=2,
        _temp_dir=temp,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="WARNING",
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
        cloudpickle.unregister_pickle_by_value(sys.modules[request.module.__name__])
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _reload_auth_settings()


def _reload_auth_settings() -> None:
    from ray._private.authentication_test_utils import reset_auth_token_state

    reset_auth_token_state()
