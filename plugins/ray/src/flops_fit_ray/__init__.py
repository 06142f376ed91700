"""flops-fit executor `ray`: each experiment a Ray task, on a local or remote Ray cluster.

Importing this module does not import Ray (about 2 s a `flops-fit` start-up would pay):
`RayExecutor.map` does, through `flops_fit_ray.executor`.
"""

from __future__ import annotations

from flops_fit_core import HOOK_API_VERSION, hookimpl

from .config import RayConfig
from .executor import RayExecutor

__all__ = ["RayConfig", "RayExecutor"]

#: The hook API this plugin's registration was written for.
hook_api_version = HOOK_API_VERSION


@hookimpl
def flops_fit_register_executors():
    return [RayExecutor]
