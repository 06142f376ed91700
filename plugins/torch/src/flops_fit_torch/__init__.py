"""flops-fit trainer `local`: a u-muP GPT trained in PyTorch for exactly its token budget.

Registered through the `flops_fit` entry point like any third-party plugin. Importing this
package does not import torch; training does.
"""

from flops_fit_core import hookimpl

from .config import LocalConfig
from .trainer import LocalTrainer

__all__ = ["LocalConfig", "LocalTrainer", "flops_fit_register_trainers"]


#: The flops-fit hook API this plugin was written for (`flops_fit_core.HOOK_API_VERSION`).
hook_api_version = 1


@hookimpl
def flops_fit_register_trainers():
    """The trainer classes this distribution adds: just `local`."""
    return [LocalTrainer]
