"""flops-fit plotters: the figures of a scaling-law study, drawn without global matplotlib state.

Registered through the `flops_fit` entry point like any third-party plugin. Each plotter's
`figure(observations, fit)` returns a bare `matplotlib.figure.Figure` (inspectable in tests and
notebooks) and `plot(observations, fit, out_dir)` writes it in each configured format.
"""

from flops_fit_core import hookimpl

from .base import FigureConfig, FigurePlotter
from .isoflop import IsoFlopPlotter
from .scaling import ScalingPlotter

__all__ = [
    "FigureConfig",
    "FigurePlotter",
    "IsoFlopPlotter",
    "ScalingPlotter",
    "flops_fit_register_plotters",
]


@hookimpl
def flops_fit_register_plotters():
    """The plotters this distribution provides, for the plugin host to register by name."""
    return [IsoFlopPlotter, ScalingPlotter]
