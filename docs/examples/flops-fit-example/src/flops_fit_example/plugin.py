"""The hook implementations flops-fit loads through the entry point `example`.

flops-fit imports this module at every start (`flops-fit plugins`, `--help`, a typo's error),
so it imports only the classes' modules, which import nothing heavy at module level:
matplotlib is imported when a figure is drawn.
"""

from flops_fit_core import hookimpl

from .command import CommandTrainer
from .plotter import TokensPerParamPlotter

__all__ = ["flops_fit_register_plotters", "flops_fit_register_trainers", "hook_api_version"]

#: The flops-fit hook API this plugin is written for (`flops_fit_core.HOOK_API_VERSION`): a core
#: with another refuses the plugin with an error naming both, rather than calling it wrongly.
hook_api_version = 1


@hookimpl
def flops_fit_register_trainers():
    """The trainers this distribution adds: `command`."""
    return [CommandTrainer]


@hookimpl
def flops_fit_register_plotters():
    """The plotters this distribution adds: `tokens-per-param`."""
    return [TokensPerParamPlotter]
