"""flops-fit planners, registered through the `flops_fit` entry point: `isoflop`, the grid
sweep, and `adaptive`, the sweep in rounds placed by the fit of the rounds before."""

from flops_fit_core import hookimpl

from .adaptive import AdaptivePlanner
from .config import AdaptiveConfig, IsoFlopConfig, LrSchedule, ModelOptions
from .isoflop import IsoFlopPlanner
from .shapes import ShapeGrid, search_shapes

__all__ = [
    "AdaptiveConfig",
    "AdaptivePlanner",
    "IsoFlopConfig",
    "IsoFlopPlanner",
    "LrSchedule",
    "ModelOptions",
    "ShapeGrid",
    "flops_fit_register_planners",
    "search_shapes",
]


#: The flops-fit hook API this plugin was written for (`flops_fit_core.HOOK_API_VERSION`).
hook_api_version = 1


@hookimpl
def flops_fit_register_planners():
    """The planners this distribution provides."""
    return [IsoFlopPlanner, AdaptivePlanner]
