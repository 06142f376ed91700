"""The `adaptive` planner: the sweep in rounds, each placed by the fit of the ones before it.

A fixed IsoFLOP grid spends most of its FLOPs at its largest budget, yet the width of the
interval on the N* exponent depends mostly on how many runs there are and how widely their N
and D spread. This planner starts with a few sizes at the cheapest budgets, over a wide window
around the prior optimum; after each round the study's fitter fits everything so far, and the
next round is the set of blocks (a few sizes around the fitted N*(C) at one budget of a fine
ladder) that shrinks the predicted variance of the target most per FLOP (`design`: the delta
method on the fitted surface, calibrated against the width the fit measured). Before it stops
it brackets the fitted optimum at `max_flops` with at least three runs, so the answer at the
largest budget asked for is never an extrapolation alone. It stops when the target interval is
narrow enough, or at `max_compute` or `max_rounds`.

Every proposal is a pure function of the config and the results, so a study stopped in any
round is resumed by replaying the rounds from its results file.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from flops_fit_core import (
    ConfigError,
    FitError,
    PlanRound,
    PlanStop,
    StudyOutcome,
    SweepPlan,
)

from .config import AdaptiveConfig
from .design import (
    Block,
    Design,
    Surface,
    log_loss_gradients,
    target_gradient,
    target_variance,
)
from .grid import ladder_budgets, prior_optimum, size_exponents
from .isoflop import IsoFlopPlanner

__all__ = ["AdaptivePlanner"]

#: A round that is predicted to end the study aims this far below the target, so that the
#: measured width, which scatters around the prediction, lands under it.
AIM = 0.9
#: Sizes further than this factor from the fitted optimum are named in the round's note: the
#: design then rests on the law's form holding far from where the answer is read.
FAR_FROM_OPTIMUM = 8.0


class AdaptivePlanner(IsoFlopPlanner):
    """Plan a sweep in rounds, each where it narrows the target interval most per FLOP."""

    name = "adaptive"
    Config = AdaptiveConfig
    config: AdaptiveConfig
    fitter = "robust"  # the study's fitter when its config names none: it fits the surface

    # ------------------------------------------------------------------ checks
    def validate_study(self, study: Any) -> None:
        """The rounds are placed by the fitted surface and stopped by the fit's interval:
        refuse a fitter that reports neither, or counts N and C otherwise than the plan."""
        fitter = study.fitter
        if not getattr(fitter, "fits_surface", False):
            raise ConfigError(
                f"planner 'adaptive' places its runs by the fitted loss surface, which fitter "
                f"{fitter.name!r} does not fit; use fitter 'robust'"
            )
        options = fitter.config
        if getattr(options, "bootstrap", None) == 0:
            raise ConfigError(
                "planner 'adaptive' stops on the width of the fit's interval: the fitter's "
                "bootstrap = 0 gives none; set bootstrap to 200 or more"
            )
        for key in ("params", "flops"):
            mine, theirs = getattr(self.config.conventions, key), getattr(options, key, None)
            if theirs is not None and theirs != mine:
                raise ConfigError(
                    f"planner 'adaptive' plans with {key} = {mine!r} but the fitter fits with "
                    f"{key} = {theirs!r}; let them agree"
                )
        fixed = getattr(options, "fixed", None) or {}
        if self.config.target == "n_exponent" and {"alpha", "beta"} <= set(fixed):
            raise ConfigError(
                "planner 'adaptive': the fitter holds alpha and beta fixed, so the N* exponent "
                "it aims at is fixed too; free one, or use target = 'n_opt'"
            )
        least = getattr(options, "min_budgets", None)
        if isinstance(least, int) and self.config.first_budgets < least:
            raise ConfigError(
                f"planner 'adaptive': first_budgets = {self.config.first_budgets} is fewer "
                f"than the {least} budgets fitter {fitter.name!r} needs (min_budgets)"
            )

    # ------------------------------------------------------------------ round 1
    def plan(self) -> SweepPlan:
        """Round 1: `first_sizes` sizes over N0/first_span .. N0*first_span at each of the
        `first_budgets` cheapest budgets of the ladder."""
        c = self.config
        budgets = ladder_budgets(c)[: c.first_budgets]
        exponents = size_exponents(c.first_sizes)
        targets = prior_optimum(c, budgets)[:, None] * np.power(c.first_span, exponents)[None, :]
        first = self.build(np.repeat(budgets, len(exponents)), targets.ravel())
        span = f"{c.first_span:g}"
        note = (
            f"{len(first.experiments)} runs at the {len(budgets)} cheapest budgets, "
            f"N0/{span} to N0*{span} around the prior optimum"
        )
        self._check_compute(first.estimates["total_flops"])
        return first.model_copy(
            update={
                "rounds": [
                    PlanRound(index=1, experiments=[s.id for s in first.experiments], note=note)
                ]
            }
        )

    def _check_compute(self, flops: float) -> None:
        """Refuse a `max_compute` that could never let the study reach its target: below the
        first round, or below it and the three runs owed at max_flops."""
        c = self.config
        cap = c.max_compute
        if cap is not None and flops > cap:
            raise ConfigError(
                f"planner 'adaptive': its first round alone takes {flops:.3g} FLOPs, more than "
                f"max_compute = {cap:.3g}; raise max_compute or lower first_sizes/first_budgets"
            )
        least = flops + 3 * c.max_flops
        if cap is not None and least > cap:
            raise ConfigError(
                f"planner 'adaptive': max_compute = {cap:.3g} leaves no room for the first round "
                f"({flops:.3g} FLOPs) and the 3 runs at max_flops that bracket N* there "
                f"({3 * c.max_flops:.3g}); raise max_compute to at least {least:.3g} or lower "
                "max_flops"
            )

    # ------------------------------------------------------------------ later rounds
    def next_round(self, outcome: StudyOutcome) -> SweepPlan:
        """The plan with the next round, or with `stop` set (see the module)."""
        c = self.config
        plan, fit = outcome.plan, outcome.fit
        observations = outcome.primary_observations.in_plan_order()
        if plan is None:
            raise ConfigError("planner 'adaptive' plans its next round from a study's plan")
        surface = Surface.from_parametric(fit.parametric)
        if surface is None:
            raise FitError(
                f"planner 'adaptive' needs the fitted surface E, A, B, alpha, beta, which "
                f"fitter {fit.fitter!r} did not report"
            )
        width = self._width(fit)
        compute = float(observations.compute.sum())
        top = c.max_flops
        n_star_top = self._centre(fit, top)
        at_top = observations.params[np.isclose(observations.budget, top, rtol=1e-9)]
        bracketed = at_top.size >= 3 and at_top.min() < n_star_top < at_top.max()
        measured = {"width": width, "compute": compute}
        if width <= c.target_width and bracketed:
            note = (
                f"{self._width_words()} {width:.3g} <= target {c.target_width:g}, and the "
                f"fitted N* = {n_star_top:.3g} at max_flops = {top:.3g} lies between "
                f"{at_top.size} runs there ({len(plan.rounds)} rounds, "
                f"{len(plan.experiments)} runs)"
            )
            return plan.model_copy(update={"stop": PlanStop(note=note, reached=True, **measured)})
        met = width <= c.target_width  # then the bracket is what is missing
        short = (
            f"{self._width_words()} {width:.3g} {'<=' if met else '>'} target {c.target_width:g}"
        )
        if not bracketed:
            short += f"{' but' if met else ';'} N* at max_flops = {top:.3g} not yet bracketed"
        if len(plan.rounds) >= c.max_rounds:
            note = f"max_rounds = {c.max_rounds} reached with {short}"
            return plan.model_copy(update={"stop": PlanStop(note=note, reached=False, **measured)})

        design = Design(
            observations.params.astype(float),
            observations.tokens.astype(float),
            self._planned(plan),
            float(sum(s.budget for s in plan.experiments)),
        )
        gradient, free = self._gradient(surface, observations), self._free(fit)

        def variance(d: Design) -> float:
            return target_variance(log_loss_gradients(surface, d.params, d.tokens), gradient, free)

        current = variance(design)
        if not math.isfinite(current):
            raise FitError(
                "planner 'adaptive': the runs so far do not pin down the loss surface "
                "(its information matrix is singular); widen first_span or add first_sizes"
            )
        scale = self._internal(width) / math.sqrt(current)
        chosen, predicted, why_stop = self._choose(fit, variance, design, scale, bracketed, at_top)
        if not chosen:
            note = f"{why_stop} with {short}"
            return plan.model_copy(update={"stop": PlanStop(note=note, reached=False, **measured)})
        return self._extend(plan, fit, chosen, predicted, measured)

    def _choose(self, fit, variance, design, scale, bracketed, trained_at_top):
        """Greedy: the top runs if still owed, then block after block by `variance` (of the
        target, for a design) removed per FLOP, until the predicted width is under the target
        (aiming at AIM of it) or the round is full. Returns (blocks, predicted width, why
        nothing could be added)."""
        c = self.config
        aim = self._internal(c.target_width * AIM)
        cap = c.max_compute if c.max_compute is not None else math.inf
        owed = None if bracketed else self._top_block(fit, design, trained_at_top)
        if owed is not None and design.compute + owed.flops > cap:
            return [], None, f"max_compute = {cap:.3g} leaves no room for the runs at max_flops"
        chosen: list[Block] = []
        while True:
            pending = (
                design if owed is None else design.with_runs(owed.budget, owed.params, owed.tokens)
            )
            now = variance(pending)
            predicted = scale * math.sqrt(now)
            if predicted <= aim or len(chosen) >= c.blocks_per_round:
                break
            best, best_score = None, 0.0
            for block in self._blocks(fit, pending):  # no repeat of the owed runs either
                if pending.compute + block.flops > cap:
                    continue
                gain = now - variance(pending.with_runs(block.budget, block.params, block.tokens))
                # to 9 digits: a last-bit difference of another machine's fit breaks no tie
                score = float(f"{gain / block.flops:.9g}")
                if score > best_score:
                    best, best_score = block, score
            if best is None:
                break
            chosen.append(best)
            design = design.with_runs(best.budget, best.params, best.tokens)
        if owed is not None and (predicted <= aim or not chosen):
            chosen.append(owed)  # the target is in reach (or nothing cheaper is left): bracket now
        elif owed is not None:
            predicted = scale * math.sqrt(variance(design))  # this round without the top runs
        why = "no run left to add within the ladder and max_compute"
        return chosen, self._external(predicted), why

    # ------------------------------------------------------------------ candidates
    def _blocks(self, fit, design: Design) -> list[Block]:
        """Every candidate block: per budget of the ladder and span, `block_sizes` sizes
        around the fitted N*(C), less those within SAME_RUN of a size already planned."""
        c = self.config
        budgets = ladder_budgets(c)
        spans = c.block_spans if c.block_sizes > 1 else (c.block_spans[0],)
        exponents = size_exponents(c.block_sizes)
        wanted = []
        for budget in budgets.tolist():
            centre = self._centre(fit, budget)
            for span in spans:
                sizes = [centre * span**e for e in exponents.tolist()]
                sizes = [n for n in sizes if design.is_new(budget, n)]
                if sizes:
                    wanted.append((budget, span, np.array(sizes)))
        return self._realized(wanted, design)

    def _top_block(self, fit, design: Design, trained: np.ndarray) -> Block | None:
        """The fewest runs at max_flops that make at least three there, with one on each side
        of the fitted N* (N*/top_span, N*, N*·top_span). `trained` are the sizes that have a
        result there: a failed run brackets nothing, and is not proposed again (the next
        size out on its side is)."""
        c = self.config
        top = c.max_flops
        centre = self._centre(fit, top)
        steps = (1.0, 0.5, 1.5, 2.0)  # powers of top_span: the first choice, then alternates
        sides = {
            "below": [centre / c.top_span**e for e in steps],
            "above": [centre * c.top_span**e for e in steps],
            "middle": [centre, centre * c.top_span**0.25, centre / c.top_span**0.25],
        }
        wanted = []
        chosen = design

        def take(side: str) -> None:
            nonlocal chosen
            for size in sides[side]:
                if chosen.is_new(top, size):
                    wanted.append(size)
                    chosen = chosen.with_runs(top, np.array([size]), np.array([top / size]))
                    return

        if not (trained < centre).any():
            take("below")
        if not (trained > centre).any():
            take("above")
        for side in ("middle", "below", "above"):
            if trained.size + len(wanted) >= 3:
                break
            take(side)
        if not wanted:
            return None
        blocks = self._realized([(top, c.top_span, np.sort(np.array(wanted)))], design)
        return dataclasses.replace(blocks[0], bracket=True) if blocks else None

    def _realized(self, wanted, design: Design) -> list[Block]:
        """Each wanted block with the real N and D of the shapes it would train (one shape
        search for all), keeping only sizes whose real shape is new at that budget."""
        if not wanted:
            return []
        targets = np.concatenate([sizes for _, _, sizes in wanted])
        shapes, per_token = self.realize(targets)
        params = shapes.params.astype(float)
        tokens = np.rint(np.array([b for b, _, sizes in wanted for _ in sizes]) / per_token)
        out, i = [], 0
        for budget, span, sizes in wanted:
            keep, seen = [], design
            for j in range(i, i + len(sizes)):
                if seen.is_new(budget, params[j]):  # its real shape: no repeat, in or out
                    keep.append(j)
                    seen = seen.with_runs(budget, params[j : j + 1], tokens[j : j + 1])
            if keep:
                out.append(Block(budget, span, targets[keep], params[keep], tokens[keep]))
            i += len(sizes)
        return out

    # ------------------------------------------------------------------ the new plan
    def _extend(self, plan: SweepPlan, fit, chosen: list[Block], predicted, measured) -> SweepPlan:
        c = self.config
        budget = np.concatenate([np.full(len(b.targets), b.budget) for b in chosen])
        target = np.concatenate([b.targets for b in chosen])
        order = np.lexsort((target, budget))  # trained budget by budget, small to large
        added = self.build(budget[order], target[order])
        known = {s.id for s in plan.experiments}
        new = [s for s in added.experiments if s.id not in known]
        index = len(plan.rounds) + 1
        note = self._note(fit, chosen)
        far = self._far(fit, chosen)
        warnings = list(plan.warnings) + [w for w in added.warnings if w not in plan.warnings]
        if far:
            note += f"; {far}"
            warnings.append(f"round {index}: {far}")
        estimates = dict(plan.estimates)
        flops = float(plan.estimates.get("total_flops", 0.0)) + float(
            sum(s.tokens * s.flops_per_token for s in new)
        )
        estimates.update(
            n_experiments=len(plan.experiments) + len(new),
            total_flops=flops,
            total_tokens=int(plan.estimates.get("total_tokens", 0)) + sum(s.tokens for s in new),
            wall_time_s={name: flops / fps for name, fps in c.hardware.items()},
        )
        record = PlanRound(
            index=index,
            experiments=[s.id for s in new],
            note=note,
            predicted_width=predicted,
            **measured,
        )
        return plan.model_copy(
            update={
                "experiments": [*plan.experiments, *new],
                "estimates": estimates,
                "warnings": warnings,
                "rounds": [*plan.rounds, record],
            }
        )

    def _note(self, fit, chosen: list[Block]) -> str:
        """What the round adds and why, in a few words."""
        top = self.config.max_flops
        placed = [b for b in chosen if not b.bracket]
        parts = []
        if placed:
            where = []
            for budget in sorted({b.budget for b in placed}):
                here = [b for b in placed if b.budget == budget]
                spans = sorted({b.span for b in here})
                window = f"x{spans[0]:g}" + (f"-x{spans[-1]:g}" if len(spans) > 1 else "")
                where.append(f"{sum(len(b.targets) for b in here)} at {budget:.3g} ({window})")
            parts.append(
                f"{', '.join(where)}: the most {self._target_words()} variance removed per FLOP"
            )
        owed = [b for b in chosen if b.bracket]
        if owed:
            n_star = self._centre(fit, top)
            parts.append(
                f"{len(owed[0].targets)} at max_flops {top:.3g} to bracket the fitted "
                f"N* = {n_star:.3g}"
            )
        return "; ".join(parts)

    def _far(self, fit, chosen: list[Block]) -> str:
        """A note when the round leans on sizes far from the fitted optimum, else ''."""
        ratios = [
            max(n / centre, centre / n)
            for b in chosen
            for centre in [self._centre(fit, b.budget)]
            for n in b.params.tolist()
        ]
        worst = max(ratios, default=1.0)
        if worst <= FAR_FROM_OPTIMUM:
            return ""
        return (
            f"this design relies on sizes up to {worst:.0f}x from the fitted optimum: the "
            f"saving assumes L = E + A/N^alpha + B/D^beta holds that far from it"
        )

    @staticmethod
    def _free(fit) -> list[bool]:
        """Which of E, A, B, alpha, beta the fit estimated (`robust`'s `fixed` holds some)."""
        fixed = fit.settings.get("fixed") or {}
        return [name not in fixed for name in ("E", "A", "B", "alpha", "beta")]

    @staticmethod
    def _centre(fit, budget: float) -> float:
        """The fitted N*(C) the sizes at `budget` are placed around, to 10 digits: the same
        shapes whatever the last bits of the fit."""
        return float(f"{float(fit.laws['n_opt'].predict(budget)):.10g}")

    # ------------------------------------------------------------------ the target
    def _target_words(self) -> str:
        if self.config.target == "n_exponent":
            return "N* exponent"
        return f"N* at {self._target_compute():.3g}"

    def _width_words(self) -> str:
        if self.config.target == "n_exponent":
            return "N* exponent width"
        return f"N* relative width at {self._target_compute():.3g}"

    def _target_compute(self) -> float:
        c = self.config
        return c.target_compute if c.target_compute is not None else c.max_flops

    def _width(self, fit) -> float:
        """The target's width as the fit measured it (its `confidence` interval)."""
        if self.config.target == "n_exponent":
            interval = fit.laws["n_opt"].exponent_interval
            if interval is None:
                raise FitError(
                    "planner 'adaptive': the fit states no interval on the N* exponent "
                    "(bootstrap = 0?), so it cannot tell when to stop"
                )
            return float(interval[1] - interval[0])
        estimate = fit.predict(self._target_compute()).params
        if estimate.interval is None:
            raise FitError("planner 'adaptive': the fit states no interval on N*")
        return float((estimate.interval[1] - estimate.interval[0]) / estimate.value)

    def _gradient(self, surface: Surface, observations) -> np.ndarray:
        k = float(np.median(observations.compute / (observations.params * observations.tokens)))
        return target_gradient(surface, self.config.target, math.log(self._target_compute() / k))

    def _internal(self, width: float) -> float:
        """A width on the scale the delta method predicts, proportional to the standard
        error: the exponent's width itself, or ln(hi / lo) for a relative width of N*."""
        if self.config.target == "n_exponent":
            return width
        return 2.0 * math.asinh(width / 2.0)

    def _external(self, internal: float | None) -> float | None:
        if internal is None or self.config.target == "n_exponent":
            return internal
        return 2.0 * math.sinh(internal / 2.0)

    @staticmethod
    def _planned(plan: SweepPlan) -> dict[float, list[float]]:
        out: dict[float, list[float]] = {}
        for spec in plan.experiments:
            out.setdefault(spec.budget, []).append(float(spec.params))
        return out
