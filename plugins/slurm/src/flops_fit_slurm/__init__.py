"""flops-fit executor `slurm`: the sweep as one Slurm job array, through submitit.

Importing this module does not import submitit: `SlurmExecutor.map` does, through
`flops_fit_slurm.clusters` and `flops_fit_slurm._job`.
"""

from __future__ import annotations

from flops_fit_core import HOOK_API_VERSION, hookimpl

from .config import SlurmConfig
from .executor import SlurmExecutor

__all__ = ["SlurmConfig", "SlurmExecutor"]

#: The hook API this plugin's registration was written for.
hook_api_version = HOOK_API_VERSION


@hookimpl
def flops_fit_register_executors():
    return [SlurmExecutor]
