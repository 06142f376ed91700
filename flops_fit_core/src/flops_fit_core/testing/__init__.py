"""Test kit for plugin authors: contract suites per hookspec, synthetic data with a known truth,
a tiny trainer for executor tests, and hypothesis strategies.

Importing this module needs pytest (a test dependency), not at run time.
"""

from .contracts import (
    CommandsContract,
    ExecutorContract,
    FitterContract,
    PlannerContract,
    PlotterContract,
    TrainerContract,
)
from .synthetic import CHINCHILLA, Law, isoflop_observations, truth_fit
from .trainers import CancelAfter, ChildProcessTrainer, EchoTrainer, tiny_specs

#: hookspec -> the contract every class it registers must pass
CONTRACTS = {
    "flops_fit_register_planners": PlannerContract,
    "flops_fit_register_trainers": TrainerContract,
    "flops_fit_register_fitters": FitterContract,
    "flops_fit_register_plotters": PlotterContract,
    "flops_fit_register_executors": ExecutorContract,
    "flops_fit_register_commands": CommandsContract,
}

__all__ = [
    "CHINCHILLA",
    "CONTRACTS",
    "CancelAfter",
    "ChildProcessTrainer",
    "CommandsContract",
    "EchoTrainer",
    "ExecutorContract",
    "FitterContract",
    "Law",
    "PlannerContract",
    "PlotterContract",
    "TrainerContract",
    "isoflop_observations",
    "tiny_specs",
    "truth_fit",
]
