"""flops-fit trainer `mock`: a known scaling law plus seeded noise, so fits can be checked.

Registered through the `flops_fit` entry point like any third-party plugin. Besides the trainer,
this module exports the noise-free truth (`true_loss` and the closed-form optimum helpers) so
tests of planners, fitters and plots can compare what they recover with what was put in.
"""

from flops_fit_core import hookimpl

from .trainer import (
    MockConfig,
    MockTrainer,
    optimal_coefficient,
    optimal_exponents,
    optimal_laws,
    optimal_loss,
    optimal_params,
    optimal_tokens,
    true_loss,
)

__all__ = [
    "MockConfig",
    "MockTrainer",
    "flops_fit_register_trainers",
    "optimal_coefficient",
    "optimal_exponents",
    "optimal_laws",
    "optimal_loss",
    "optimal_params",
    "optimal_tokens",
    "true_loss",
]


#: The flops-fit hook API this plugin was written for (`flops_fit_core.HOOK_API_VERSION`).
hook_api_version = 1


@hookimpl
def flops_fit_register_trainers():
    """The trainer classes this distribution adds: just `mock`."""
    return [MockTrainer]
