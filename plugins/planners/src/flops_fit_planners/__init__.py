"""flops-fit planners: the `isoflop` grid sweep, registered through the `flops_fit` entry point."""

from flops_fit_core import hookimpl

from .config import IsoFlopConfig, LrSchedule
from .isoflop import IsoFlopPlanner
from .shapes import ShapeGrid, search_shapes

__all__ = [
    "IsoFlopConfig",
    "IsoFlopPlanner",
    "LrSchedule",
    "ShapeGrid",
    "flops_fit_register_planners",
    "search_shapes",
]


#: The flops-fit hook API this plugin was written for (`flops_fit_core.HOOK_API_VERSION`).
hook_api_version = 1


@hookimpl
def flops_fit_register_planners():
    """The planners this distribution provides."""
    return [IsoFlopPlanner]
