"""flops-fit fitters: turn per-run losses into compute-optimal scaling laws with intervals.

This module is the plugin object the `flops_fit` entry point names: the core's plugin host
calls `flops_fit_register_fitters()` here exactly as it would on a third party's plugin. The
shared building blocks are importable so that every fitter in this package, and any
third-party one, states uncertainty and flags problems the same way: `laws.fit_laws` (the
whole skeleton of a fitter that finds one optimum per budget), `powerlaw`, `checks`,
`diagnostics`, `flags` and `config.CommonConfig`.

Nothing imported here imports scipy or lmfit at module level: the plugin host imports this
package at every CLI start, so they are imported inside the functions that need them.
"""

from __future__ import annotations

from flops_fit_core import hookimpl

from .empirical import EmpiricalConfig, EmpiricalFitter
from .envelope import EnvelopeConfig, EnvelopeFitter
from .powerlaw import fit_power_law
from .quadratic import QuadraticConfig, QuadraticFitter
from .robust import RobustConfig, RobustFitter

__all__ = [
    "EmpiricalConfig",
    "EmpiricalFitter",
    "EnvelopeConfig",
    "EnvelopeFitter",
    "QuadraticConfig",
    "QuadraticFitter",
    "RobustConfig",
    "RobustFitter",
    "fit_power_law",
    "flops_fit_register_fitters",
]


#: The flops-fit hook API this plugin was written for (`flops_fit_core.HOOK_API_VERSION`).
hook_api_version = 1


@hookimpl
def flops_fit_register_fitters():
    """The fitters this distribution provides."""
    return [EmpiricalFitter, QuadraticFitter, RobustFitter, EnvelopeFitter]
