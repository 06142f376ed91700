"""Hook specifications: the only doors through which plugins add things to flops-fit.

Every plugin, ours included, is a module (or object) found through the `flops_fit` entry-point
group that implements some of these hooks with `@flops_fit_core.hookimpl`. Each register hook
returns classes; each class has a `name` (what users type), a pydantic `Config` (every key
consumed or rejected) and one job. See docs/plugins.md for a worked example of each.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("flops_fit")
hookimpl = pluggy.HookimplMarker("flops_fit")

__all__ = ["HOOK_API_VERSION", "hookimpl", "hookspec"]

#: The version of these hooks and of what the core promises the classes they return (the base
#: classes' methods, the schemas' fields). A plugin module states the version it was written
#: for as `hook_api_version = 1`; the host refuses a plugin written for another version (its
#: hooks would be called wrongly) with an error saying which, and loads one that states none.
#: Raised only with a breaking change, which the CHANGELOG then describes.
HOOK_API_VERSION = 1


@hookspec
def flops_fit_register_planners():
    """Return planner classes (subclasses of `flops_fit_core.Planner`).

    A planner turns its config into a `SweepPlan` with `plan()`: which budgets, which model
    shapes, how many tokens, at which learning rate. It must give every experiment a shape whose
    real N it records, and it must be deterministic: the same config gives the same ids.

    A planner may plan in rounds: `plan()` is then the first round, and `next_round(outcome)`
    returns the plan with one more round (or with `stop` set) after `run` has trained and
    fitted the rounds so far. The next round must follow from the outcome alone, so that a
    study stopped in any round replays the same rounds when it is run again.
    """


@hookspec
def flops_fit_register_trainers():
    """Return trainer classes (subclasses of `flops_fit_core.Trainer`).

    A trainer runs one `ExperimentSpec` with `train(spec, context)` and returns a `RunResult`
    with the final eval loss and the compute it counted. It reports progress and checks
    cancellation through the `TrainerContext`; an exception it raises is recorded as a failed
    result by the executor and the sweep goes on.
    """


@hookspec
def flops_fit_register_fitters():
    """Return fitter classes (subclasses of `flops_fit_core.Fitter`).

    A fitter turns `Observations` into a `FitResult` with `fit(observations)`: per-budget
    optima, the laws N*(C), D*(C), L*(C) with intervals, diagnostics and warnings.
    """


@hookspec
def flops_fit_register_plotters():
    """Return plotter classes (subclasses of `flops_fit_core.Plotter`).

    A plotter draws `plot(observations, fit, out_dir)` into files it returns, without touching
    global matplotlib state (other plotters run in the same process). The pipeline calls
    `draw(outcome, out_dir)`, which sees every fit of a study; it raises `NothingToDraw` when
    the outcome has nothing for it to show.
    """


@hookspec
def flops_fit_register_executors():
    """Return executor classes (subclasses of `flops_fit_core.Executor`).

    An executor runs `map(trainer, specs, on_result, run_dir=..., cancel=...)`: it trains each
    spec somewhere (in process, in worker processes, on a cluster) and calls `on_result` in
    the calling process as each result arrives, so the store can append it at once.
    """


@hookspec
def flops_fit_register_commands(cli):
    """Add click commands to the `flops-fit` group `cli` (e.g. `serve`).

    Commands must not replace existing ones; the host refuses a name that is already taken.
    """
