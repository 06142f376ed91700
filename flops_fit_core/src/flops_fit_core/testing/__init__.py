"""Test kit for plugin authors: contract suites per hookspec, synthetic data with a known truth,
a tiny trainer for executor tests, and hypothesis strategies.

Importing this module needs pytest (a test dependency), not at run time.
"""

from ..plugins import KINDS
from . import contracts as _contracts
from .contracts import (
    CommandsContract,
    ExecutorContract,
    FitterContract,
    PlannerContract,
    PlotterContract,
    TrainerContract,
)
from .synthetic import CHINCHILLA, Law, isoflop_observations, round_outcome, truth_fit
from .trainers import (
    ECHO_DIR,
    VERSION_ENV,
    CancelAfter,
    ChildProcessTrainer,
    EchoTrainer,
    OtherVersionTrainer,
    cancel_when_started,
    tiny_specs,
)

#: hookspec -> the contract every class it registers must pass (from the one table of kinds)
CONTRACTS = {
    **{kind.hook: getattr(_contracts, kind.contract) for kind in KINDS.values()},
    "flops_fit_register_commands": CommandsContract,
}

__all__ = [
    "CHINCHILLA",
    "CONTRACTS",
    "ECHO_DIR",
    "VERSION_ENV",
    "CancelAfter",
    "ChildProcessTrainer",
    "CommandsContract",
    "EchoTrainer",
    "ExecutorContract",
    "FitterContract",
    "Law",
    "OtherVersionTrainer",
    "PlannerContract",
    "PlotterContract",
    "TrainerContract",
    "cancel_when_started",
    "isoflop_observations",
    "round_outcome",
    "tiny_specs",
    "truth_fit",
]
