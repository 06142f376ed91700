"""Contract test suites, one mixin per hookspec, in the style of fsspec's abstract tests.

A plugin's test file subclasses the mixin and provides two fixtures::

    from flops_fit_core.testing import TrainerContract

    class TestMyTrainer(TrainerContract):
        @pytest.fixture
        def plugin(self):
            return MyTrainer

        @pytest.fixture
        def plugin_config(self):
            return {"seed": 0}

Each contract checks behaviour, not shape: a trainer's counted FLOPs, a fitter recovering a
known exponent within its own interval, an executor surviving a failing run.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import sys
import threading
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from ..bases import Executor, Fitter, Planner, Plotter, PluginBase, Trainer, TrainerContext
from ..errors import ConfigError, FitError, NothingToDraw, TrainingCancelled
from ..fits import FitResult
from ..observations import Observations, StudyOutcome
from ..schemas import PluginConfig, RunResult, SweepPlan
from .synthetic import CHINCHILLA, isoflop_observations, round_outcome, truth_fit
from .trainers import (
    CHILDREN_DIR,
    CancelAfter,
    ChildProcessTrainer,
    EchoTrainer,
    cancel_when_started,
    tiny_specs,
)

__all__ = [
    "CommandsContract",
    "ExecutorContract",
    "FitterContract",
    "PlannerContract",
    "PlotterContract",
    "TrainerContract",
]

UNKNOWN_KEY = "surely_not_an_option_xyz"


def _near(got: float, want: float, rel: float, what: str) -> None:
    """Assert `got` is within `rel` of `want`, saying by how much it is not."""
    ratio = f"{got / want:.3g}x" if want else "nonzero"
    assert abs(got - want) <= rel * abs(want), (
        f"{what} is {got:.6g}, expected {want:.6g} ({ratio}; tolerance {rel:.3g} relative)"
    )


class _PluginContract:
    """What every registered class owes: a name, a strict Config, a rejected unknown key."""

    base: type[PluginBase] = PluginBase

    @pytest.fixture
    def plugin_config(self) -> dict:
        return {}

    def test_is_a_named_plugin_with_a_strict_config(self, plugin):
        assert issubclass(plugin, self.base)
        assert isinstance(plugin.name, str) and plugin.name
        assert issubclass(plugin.Config, PluginConfig)
        assert plugin.Config.model_config.get("extra") == "forbid"

    def test_rejects_an_unknown_config_key(self, plugin, plugin_config):
        with pytest.raises(ConfigError, match=UNKNOWN_KEY):
            plugin({**plugin_config, UNKNOWN_KEY: 1})


class PlannerContract(_PluginContract):
    """Fixtures: `plugin` (the planner class), `plugin_config`. Flag: `budget_tolerance`."""

    base = Planner
    budget_tolerance = 0.01

    @pytest.fixture
    def plan(self, plugin, plugin_config) -> SweepPlan:
        return plugin(plugin_config).plan()

    def test_plans_experiments(self, plan, plugin):
        assert isinstance(plan, SweepPlan)
        assert plan.experiments
        assert plan.planner == plugin.name

    def test_is_deterministic(self, plan, plugin, plugin_config):
        again = plugin(plugin_config).plan()
        assert [s.id for s in again.experiments] == [s.id for s in plan.experiments]

    def test_records_the_real_parameter_count(self, plan):
        for spec in plan.experiments:
            assert spec.params == spec.shape.params(spec.conventions.params)
            assert spec.conventions == plan.conventions

    def test_tokens_spend_the_budget(self, plan):
        for spec in plan.experiments:
            spent = spec.tokens * spec.flops_per_token
            assert abs(spent - spec.budget) <= self.budget_tolerance * spec.budget, spec.id

    def test_round_trips_through_json(self, plan):
        again = SweepPlan.model_validate_json(plan.model_dump_json())
        assert [s.id for s in again.experiments] == [s.id for s in plan.experiments]

    # A planner that plans in rounds (overrides `next_round`) owes these too; for the rest
    # `next_round` must stay the default None.
    @pytest.fixture
    def round_outcome(self, plan) -> StudyOutcome:
        """The plan trained on the synthetic Chinchilla law (1% noise) and an exact fit with
        wide intervals (0.2 on the N* exponent), so a planner in rounds has more to do.
        Override it where the next round needs another fit."""
        return round_outcome(plan)

    def _next(self, plugin, plugin_config, outcome) -> SweepPlan | None:
        proposed = plugin(plugin_config).next_round(outcome)
        if plugin.next_round is Planner.next_round:
            assert proposed is None
        return proposed

    def test_a_next_round_only_adds_and_says_what(self, plan, plugin, plugin_config, round_outcome):
        proposed = self._next(plugin, plugin_config, round_outcome)
        if proposed is None:
            return
        assert isinstance(proposed, SweepPlan) and proposed.planner == plugin.name
        before = [s.id for s in plan.experiments]
        after = [s.id for s in proposed.experiments]
        assert after[: len(before)] == before, "a round keeps every earlier experiment, in order"
        new = proposed.experiments[len(before) :]
        if proposed.stop is not None:
            assert not new and proposed.stop.note
            return
        assert new, "a next round adds experiments or sets stop"
        assert len(proposed.rounds) == max(len(plan.rounds), 1) + 1
        assert proposed.rounds[-1].experiments == [s.id for s in new]
        assert proposed.rounds[-1].note
        for spec in new:
            assert spec.params == spec.shape.params(spec.conventions.params)
            assert spec.conventions == plan.conventions
            spent = spec.tokens * spec.flops_per_token
            assert abs(spent - spec.budget) <= self.budget_tolerance * spec.budget, spec.id
        again = SweepPlan.model_validate_json(proposed.model_dump_json())
        assert again.rounds == proposed.rounds

    def test_a_next_round_depends_on_the_outcome_alone(self, plugin, plugin_config, round_outcome):
        """The same outcome, its runs listed in reverse (the order runs finish in is not
        the results'), gives the same next round: a resumed study replays it exactly."""
        first = self._next(plugin, plugin_config, round_outcome)
        obs = round_outcome.primary_observations
        flipped = obs.take(np.arange(len(obs))[::-1])
        second = self._next(
            plugin,
            plugin_config,
            dataclasses.replace(
                round_outcome, observations=(flipped,), runs=round_outcome.runs[::-1]
            ),
        )
        if first is None:
            return
        assert second.model_dump() == first.model_dump()


class TrainerContract(_PluginContract):
    """Fixtures: `plugin`, `plugin_config`, optionally `spec` (default: a tiny model).
    Flag: `flops_tolerance` (relative)."""

    base = Trainer
    flops_tolerance = 0.01

    @pytest.fixture
    def spec(self):
        return tiny_specs(1)[0]

    @pytest.fixture
    def trainer(self, plugin, plugin_config) -> Trainer:
        return plugin(plugin_config)

    @pytest.fixture
    def context(self, tmp_path) -> TrainerContext:
        return TrainerContext(run_dir=tmp_path, checkpoint_dir=tmp_path / "checkpoints" / "x")

    @pytest.fixture
    def result(self, trainer, spec, context) -> RunResult:
        return trainer.train(spec, context)

    def test_trains_to_a_finite_loss(self, result, spec):
        assert result.status == "ok"
        assert result.experiment_id == spec.id
        assert np.isfinite(result.loss) and result.loss > 0

    def test_trains_the_planned_tokens_and_counts_flops(self, result, spec):
        tol = self.flops_tolerance
        _near(result.tokens_trained, spec.tokens, tol, "tokens_trained (the planned D)")
        per_token = spec.shape.flops_per_token
        _near(
            result.flops_exact,
            result.tokens_trained * per_token,
            tol,
            f"flops_exact (tokens_trained x {per_token:,} FLOPs per token)",
        )
        _near(result.flops, spec.flops, tol, "flops (the planned budget's compute)")
        _near(
            result.flops_6n,
            6 * spec.params * result.tokens_trained,
            tol,
            "flops_6n (6 x params x tokens_trained)",
        )

    def test_names_itself_in_the_result(self, result, plugin):
        assert result.trainer.name == plugin.name

    def test_honours_cancellation(self, trainer, spec, context):
        context.cancel_event.set()
        with pytest.raises(TrainingCancelled):
            trainer.train(spec, context)

    def test_stops_at_a_cancel_mid_run_and_resumes_to_the_same_loss(
        self, plugin, plugin_config, trainer, spec, context, tmp_path
    ):
        """The sweep's cancel event, set once the run is under way (its third look), stops
        it with `TrainingCancelled`; trained again, a deterministic trainer ends at the loss
        of a run never cancelled (whatever it saved to resume from)."""
        context.cancel_event = CancelAfter(checks=3)
        with pytest.raises(TrainingCancelled):
            trainer.train(spec, context)
        if not plugin.deterministic:
            return
        context.cancel_event = threading.Event()
        resumed = trainer.train(spec, context)
        clean_dir = tmp_path / "never-cancelled"
        clean = plugin(plugin_config).train(
            spec, TrainerContext(run_dir=clean_dir, checkpoint_dir=clean_dir / "checkpoints")
        )
        assert resumed.loss == clean.loss

    def test_is_deterministic_when_it_says_so(self, plugin, plugin_config, spec, context, result):
        if not plugin.deterministic:
            pytest.skip(f"{plugin.name} does not claim determinism")
        again = plugin(plugin_config).train(spec, context)
        assert again.loss == result.loss

    def test_survives_pickling(self, trainer):
        clone = pickle.loads(pickle.dumps(trainer))
        assert clone.config == trainer.config

    def test_says_how_many_runs_share_a_gpu(self, trainer):
        """`runs_per_gpu`, which executors pack runs on a GPU by: a whole number >= 1 for
        every spec, and never more for a larger model than for a smaller one."""
        specs = tiny_specs(4)  # larger and larger models, the same batch and sequence
        counts = [trainer.runs_per_gpu(spec) for spec in specs]
        assert all(type(n) is int and n >= 1 for n in counts), (
            f"runs_per_gpu gave {counts}; each must be an int >= 1"
        )
        assert counts == sorted(counts, reverse=True), (
            f"runs_per_gpu gave {counts} for models of {[s.params for s in specs]} parameters: "
            "a larger model must not share a GPU with more runs than a smaller one"
        )


def _synthetic(seed: int = 0) -> Observations:
    return isoflop_observations(
        budgets=np.geomspace(1e18, 1e22, 6), sizes_per_budget=15, span=8.0, noise=0.003, seed=seed
    )


class FitterContract(_PluginContract):
    """Fixtures: `plugin`, `plugin_config`, optionally `observations` (default: Chinchilla's
    law, 6 budgets x 15 sizes over 1/8x-8x, 0.3% noise). Flag: `exponent_tolerance`."""

    base = Fitter
    exponent_tolerance = 0.05

    @pytest.fixture
    def observations(self) -> Observations:
        return _synthetic()

    @pytest.fixture
    def fit(self, plugin, plugin_config, observations) -> FitResult:
        return plugin(plugin_config).fit(observations)

    #: L*(C) against the true optimal loss: a pure power law in C (no irreducible term) misses
    #: the curved frontier by ~3% at the ends of these four decades; a wrong law misses by far more.
    loss_tolerance = 0.05

    def _exponent(self, fit: FitResult, key: str, truth: float) -> None:
        law = fit.laws[key]
        assert abs(law.exponent - truth) <= self.exponent_tolerance, (
            f"{key} exponent is {law.exponent:.4f}, the data's true one {truth:.4f} "
            f"(tolerance {self.exponent_tolerance})"
        )
        if law.exponent_interval is not None:
            lo, hi = law.exponent_interval
            assert lo <= truth <= hi, (
                f"{key} exponent interval [{lo:.4f}, {hi:.4f}] misses the true {truth:.4f}"
            )

    def test_recovers_the_true_exponent_within_its_interval(self, fit):
        """N*(C): the exponent of the true law, inside the fit's own interval."""
        self._exponent(fit, "n_opt", CHINCHILLA.a)

    def test_recovers_the_data_exponent_within_its_interval(self, fit):
        """D*(C): the true exponent too (a fitter that got N* right may still get D* wrong)."""
        self._exponent(fit, "d_opt", CHINCHILLA.b)

    def test_recovers_the_optimal_loss(self, fit, observations):
        """L*(C) at each budget of the data: the true law's optimal loss, within 5%."""
        for budget in np.unique(observations.budget):
            got = float(fit.laws["loss_opt"].predict(budget))
            _near(got, float(CHINCHILLA.loss_opt(budget)), self.loss_tolerance, f"L*({budget:.3g})")

    def test_names_itself_and_records_settings_and_conventions(self, fit, plugin, observations):
        assert fit.fitter == plugin.name
        assert isinstance(fit.settings, dict)
        assert fit.conventions == observations.conventions

    def test_predicts_the_same_after_a_json_round_trip(self, fit):
        again = FitResult.model_validate_json(fit.model_dump_json())
        c = 1e24
        assert again.predict(c) == fit.predict(c)
        assert fit.predict(c).params.value == pytest.approx(fit.laws["n_opt"].predict(c))

    def test_reports_itself_readably(self, fit, plugin):
        report = fit.report()
        assert plugin.name in report and "n_opt" in report

    def test_refuses_two_budgets(self, plugin, plugin_config):
        two = isoflop_observations(budgets=(1e18, 1e19), sizes_per_budget=7)
        with pytest.raises(FitError):
            plugin(plugin_config).fit(two)


class PlotterContract(_PluginContract):
    """Fixtures: `plugin`, `plugin_config`, optionally `observations` and `fit`.

    Capability flag: `follows_formats` — the plotter writes one file per configured format
    (a figure). A plotter that writes one document whatever the formats (the HTML report) sets
    it False and is checked for writing a non-empty file instead.
    """

    base = Plotter
    follows_formats: ClassVar[bool] = True
    #: Capability flag: the plotter shows what only a study has (its plan's rounds), so
    #: `plot` of bare observations raises `NothingToDraw` and the checks draw the `outcome`
    #: fixture (which such a plugin's tests provide) through `draw`.
    needs_a_study: ClassVar[bool] = False

    @pytest.fixture(autouse=True)
    def _fresh_matplotlib(self):
        """Each test starts from closed figures and default rcParams, whatever ran before,
        and leaves them so (the checks of what a plotter left behind are tests of their own)."""
        mpl = sys.modules.get("matplotlib")
        saved = dict(mpl.rcParams) if mpl is not None else None
        if (plt := sys.modules.get("matplotlib.pyplot")) is not None:
            plt.close("all")
        yield
        if (plt := sys.modules.get("matplotlib.pyplot")) is not None:
            plt.close("all")
        if mpl is not None and saved is not None:
            mpl.rcParams.update(saved)

    @pytest.fixture
    def observations(self) -> Observations:
        return isoflop_observations()

    @pytest.fixture
    def fit(self) -> FitResult:
        return truth_fit()

    @pytest.fixture
    def outcome(self, observations, fit) -> StudyOutcome:
        """A study's outcome with two fits (the study's own and a compared one)."""
        return StudyOutcome(fits=(fit, fit), observations=(observations, observations))

    def _drawn(self, plugin, plugin_config, observations, fit, outcome, folder) -> list[Path]:
        if self.needs_a_study:
            return plugin(plugin_config).draw(outcome, folder)
        return plugin(plugin_config).plot(observations, fit, folder)

    @pytest.fixture
    def files(self, plugin, plugin_config, observations, fit, outcome, tmp_path) -> list[Path]:
        return self._drawn(plugin, plugin_config, observations, fit, outcome, tmp_path / "figures")

    def test_plot_of_bare_observations_says_why_it_cannot(
        self, plugin, plugin_config, observations, fit, tmp_path
    ):
        if not self.needs_a_study:
            return
        with pytest.raises(NothingToDraw) as caught:
            plugin(plugin_config).plot(observations, fit, tmp_path / "bare")
        assert str(caught.value) and "\n" not in str(caught.value)

    def test_writes_nonempty_files_in_each_format(self, files, plugin, plugin_config, tmp_path):
        assert files
        if self.follows_formats:
            formats = set(plugin(plugin_config).config.formats)
            assert {p.suffix.lstrip(".") for p in files} == formats
        for path in files:
            assert path.is_file() and path.stat().st_size > 0
            assert path.resolve().is_relative_to((tmp_path / "figures").resolve())

    def test_draws_a_study_outcome(self, plugin, plugin_config, outcome, tmp_path):
        """`draw` (what the pipeline calls) takes a whole study, several fits included."""
        drawn = plugin(plugin_config).draw(outcome, tmp_path / "drawn")
        assert drawn and all(p.is_file() and p.stat().st_size > 0 for p in drawn)
        if self.follows_formats:
            formats = set(plugin(plugin_config).config.formats)
            assert {p.suffix.lstrip(".") for p in drawn} == formats

    def test_leaves_global_matplotlib_state_alone(
        self, plugin, plugin_config, observations, fit, outcome, tmp_path
    ):
        mpl = pytest.importorskip("matplotlib")
        before = dict(mpl.rcParams)
        backend = mpl.get_backend()
        self._drawn(plugin, plugin_config, observations, fit, outcome, tmp_path / "again")
        changed = sorted(k for k, v in mpl.rcParams.items() if before.get(k) != v)
        assert not changed, (
            f"plot() changed matplotlib's global rcParams {changed[:5]}: use a local style "
            "(`with matplotlib.rc_context(...)`, or set properties on the figure)"
        )
        assert mpl.get_backend() == backend, "plot() switched matplotlib's backend"

    def test_leaves_no_pyplot_figure_open(
        self, plugin, plugin_config, observations, fit, outcome, tmp_path
    ):
        """pyplot keeps every figure it makes until closed: a plotter that opens them leaks
        memory in a long study and draws stale artists into the next plotter's figure."""
        pytest.importorskip("matplotlib")
        self._drawn(plugin, plugin_config, observations, fit, outcome, tmp_path / "open")
        plt = sys.modules.get("matplotlib.pyplot")
        left = plt.get_fignums() if plt is not None else []
        assert not left, (
            f"plot() left {len(left)} pyplot figure(s) open: build a "
            "`matplotlib.figure.Figure()` directly, or `plt.close(fig)` once it is saved"
        )


class ExecutorContract(_PluginContract):
    """Fixtures: `plugin`, `plugin_config`. Trains `EchoTrainer` over tiny specs."""

    base = Executor

    @pytest.fixture
    def executor(self, plugin, plugin_config) -> Executor:
        return plugin(plugin_config)

    def _map(self, executor, specs, tmp_path, cancel=None, trainer=None):
        delivered: list[tuple[RunResult, str]] = []
        executor.map(
            trainer or EchoTrainer(),
            specs,
            lambda r: delivered.append((r, threading.current_thread().name)),
            run_dir=tmp_path,
            cancel=cancel,
        )
        return delivered

    def test_delivers_every_result_once(self, executor, tmp_path):
        specs = tiny_specs(5)
        delivered = self._map(executor, specs, tmp_path)
        assert sorted(r.experiment_id for r, _ in delivered) == sorted(s.id for s in specs)
        assert all(r.status == "ok" for r, _ in delivered)

    def test_delivers_results_in_the_calling_thread(self, executor, tmp_path):
        caller = threading.current_thread().name
        delivered = self._map(executor, tiny_specs(2), tmp_path)
        assert {thread for _, thread in delivered} == {caller}

    def test_a_failing_run_is_recorded_and_the_sweep_goes_on(self, executor, tmp_path):
        specs = tiny_specs(4, fail=(1,))
        by_id = {r.experiment_id: r for r, _ in self._map(executor, specs, tmp_path)}
        assert len(by_id) == 4
        assert by_id[specs[1].id].status == "failed"
        assert "asked to fail" in by_id[specs[1].id].error
        assert all(by_id[s.id].status == "ok" for i, s in enumerate(specs) if i != 1)

    def test_a_cancelled_sweep_trains_nothing_more(self, executor, tmp_path):
        cancel = threading.Event()
        cancel.set()
        assert self._map(executor, tiny_specs(3), tmp_path, cancel=cancel) == []

    def test_a_cancel_mid_run_reaches_every_run_in_flight(self, executor, tmp_path):
        """Set once the first run is under way, the cancel event reaches every trainer (in
        worker processes too): each stops and cleans up (here: kills its child process),
        nothing is delivered, and `map` returns within seconds, not when the runs end."""
        cancel = threading.Event()
        children = tmp_path / CHILDREN_DIR
        watcher = cancel_when_started(cancel, children, pattern="*.pid")
        trainer = ChildProcessTrainer({"seconds": 120})
        delivered = self._map(executor, tiny_specs(3), tmp_path, cancel=cancel, trainer=trainer)
        watcher.join()
        assert delivered == []
        pids = [int(p.read_text()) for p in children.glob("*.pid")]
        assert pids, "no run started"
        for pid in pids:
            with pytest.raises(ProcessLookupError):  # killed and reaped by its trainer
                os.kill(pid, 0)


class CommandsContract:
    """Fixture: `plugin`, an object implementing `flops_fit_register_commands`."""

    def test_adds_documented_commands_without_clobbering(self, plugin):
        import click
        from click.testing import CliRunner

        @click.group()
        def group():
            """test group"""

        @group.command()
        def existing():
            """an existing command"""

        original = group.commands["existing"]
        plugin.flops_fit_register_commands(cli=group)
        added = set(group.commands) - {"existing"}
        assert added, "the hook added no command"
        assert group.commands["existing"] is original
        for name in added:
            assert group.commands[name].help, f"command {name!r} has no help"
            result = CliRunner().invoke(group, [name, "--help"])
            assert result.exit_code == 0, result.output
