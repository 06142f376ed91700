"""flops-fit plotters: the figures of a scaling-law study and its HTML report, drawn without
global matplotlib state.

Registered through the `flops_fit` entry point like any third-party plugin. Each figure
plotter's `figure(observations, fit)` returns a bare `matplotlib.figure.Figure` (inspectable in
tests and notebooks), `figure_for(outcome)` picks the fit it shows from a whole study, and
`plot`/`draw` write it in each configured format. `report` writes one self-contained HTML page.
"""

from flops_fit_core import hookimpl

from .base import FigureConfig, FigurePlotter
from .curves import CurvesPlotter
from .envelope import EnvelopePlotter
from .frontier import FrontierPlotter
from .isoflop import IsoFlopPlotter
from .parametric import ParametricPlotter
from .report import ReportPlotter
from .residuals import ResidualsPlotter
from .rounds import RoundsPlotter
from .scaling import ScalingPlotter

__all__ = [
    "CurvesPlotter",
    "EnvelopePlotter",
    "FigureConfig",
    "FigurePlotter",
    "FrontierPlotter",
    "IsoFlopPlotter",
    "ParametricPlotter",
    "ReportPlotter",
    "ResidualsPlotter",
    "RoundsPlotter",
    "ScalingPlotter",
    "flops_fit_register_plotters",
]


#: The flops-fit hook API this plugin was written for (`flops_fit_core.HOOK_API_VERSION`).
hook_api_version = 1


@hookimpl
def flops_fit_register_plotters():
    """The plotters this distribution provides, for the plugin host to register by name: the
    figures in reading order, then the report (which shows them, and any other plotter the
    study's `[plot] names` lists)."""
    return [
        IsoFlopPlotter,
        ScalingPlotter,
        FrontierPlotter,
        ParametricPlotter,
        ResidualsPlotter,
        CurvesPlotter,
        EnvelopePlotter,
        RoundsPlotter,
        ReportPlotter,
    ]
