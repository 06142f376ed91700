"""The `isoflop` planner: Chinchilla's Approach-2 grid of budgets x model sizes.

For each budget C it spreads `sizes_per_budget` target sizes log-evenly around a prior optimum
N0(C), builds each as the nearest real transformer shape (recording its real N), and gives it
the tokens D = C / FLOPs-per-token that spend the budget exactly. The numerical work is
vectorized over all experiments (`grid`, `shapes`); only the `ExperimentSpec`s, which hash
themselves into their ids, are built one by one.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from flops_fit_core import (
    ConfigError,
    ExperimentSpec,
    ModelShape,
    Planner,
    SweepPlan,
    flops_per_token,
)

from .config import IsoFlopConfig
from .grid import budget_values, learning_rates, prior_optimum, size_exponents
from .shapes import ShapeGrid, Shapes, search_shapes

__all__ = ["IsoFlopPlanner"]

#: Per kind of warning, at most this many lines name individual experiments; one more sums up.
WARNING_LINES = 10
#: Tokens above this would overflow the int64 arithmetic; nobody trains 4.6e18 tokens.
_MAX_TOKENS = 2**62


def _capped(lines: Sequence[str], summary: str) -> list[str]:
    """The first WARNING_LINES lines, then `summary` (formatted with the rest's count)."""
    if len(lines) <= WARNING_LINES:
        return list(lines)
    return [*lines[:WARNING_LINES], summary.format(n=len(lines) - WARNING_LINES)]


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while the specs are built.

    Building ~10^4 pydantic models triggers full collections that scan the caller's whole heap
    and free nothing (the specs hold no cycles); on a busy process that was a third of the
    planning time. Reference counting still frees everything as usual.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class IsoFlopPlanner(Planner):
    """Plan an IsoFLOP sweep: per budget, a log-spaced ladder of model sizes around N0(C)."""

    name = "isoflop"
    Config = IsoFlopConfig
    config: IsoFlopConfig

    def shape_grid(self) -> ShapeGrid:
        """The shape search space this config allows."""
        c = self.config
        return ShapeGrid(
            vocab_size=c.vocab_size,
            seq_len=c.seq_len,
            d_model_multiple=c.d_model_multiple,
            min_layers=c.min_layers,
            max_layers=c.max_layers,
            head_options=tuple(c.head_options),
            head_dim=c.head_dim,
            head_dim_multiple=c.head_dim_multiple,
            ffn_ratio=c.ffn_ratio,
            aspect_ratio=c.aspect_ratio,
            param_tolerance=c.param_tolerance,
            param_convention=c.conventions.params,
        )

    def targets(self) -> tuple[np.ndarray, np.ndarray]:
        """(budget, target N) of every planned experiment, budget-major, N ascending."""
        c = self.config
        budgets = budget_values(c)
        exponents = size_exponents(c.sizes_per_budget)
        targets = prior_optimum(c, budgets)[:, None] * np.power(c.span, exponents)[None, :]
        return np.repeat(budgets, len(exponents)), targets.ravel()

    def realize(self, target: np.ndarray) -> tuple[Shapes, np.ndarray]:
        """The shape nearest each target N, and its FLOPs per token in the plan's convention."""
        c = self.config
        shapes = search_shapes(np.asarray(target, dtype=float), self.shape_grid())
        per_token = flops_per_token(
            shapes.d_model,
            shapes.n_layers,
            shapes.n_heads,
            shapes.d_ff,
            c.vocab_size,
            c.seq_len,
            c.conventions.flops,
            c.conventions.params,
        )
        return shapes, per_token

    def plan(self) -> SweepPlan:
        """Budgets x sizes -> shapes -> tokens that spend each budget -> validated specs."""
        return self.build(*self.targets())

    def build(self, budget: np.ndarray, target: np.ndarray) -> SweepPlan:
        """The experiments that train a model of about `target[i]` parameters on
        `budget[i]` FLOPs, for each i: shapes -> tokens that spend each budget -> specs.

        Raises ConfigError for a sweep that cannot be built (a budget smaller than one token,
        a size beyond exact counting); returns a plan whose warnings name everything that was
        built but not as asked (sizes off target, sizes merged, runs shorter than a batch,
        runs longer than the dataset).
        """
        c = self.config
        shapes, per_token = self.realize(target)
        tokens_f = np.rint(budget / per_token)
        if tokens_f.min() < 1:
            i = int(np.argmin(tokens_f))
            raise ConfigError(
                f"planner {self.name!r}: budget {budget[i]:.4g} FLOPs is less than one "
                f"token of its model (N={shapes.params[i]:,}, "
                f"{per_token[i]:,} FLOPs per token)"
            )
        if tokens_f.max() >= _MAX_TOKENS:
            i = int(np.argmax(tokens_f))
            raise ConfigError(
                f"planner {self.name!r}: budget {budget[i]:.4g} would train a model of "
                f"N={shapes.params[i]:,} on {tokens_f[i]:.3g} tokens; lower the "
                f"budgets or raise the prior"
            )
        tokens = tokens_f.astype(np.int64)
        lrs = learning_rates(c.lr_schedule, shapes.params)

        with _gc_paused():
            experiments, keep, duplicates = self._specs(budget, target, shapes, tokens, lrs)
            plan = self._plan(
                experiments, keep, duplicates, budget, target, shapes, tokens, per_token
            )
        return plan

    def _plan(self, experiments, keep, duplicates, budget, target, shapes, tokens, per_token):
        """Assemble the SweepPlan: estimates over the experiments kept, then the warnings."""
        c = self.config
        tokens_kept = tokens[keep]
        flops_kept = tokens_kept.astype(float) * per_token[keep].astype(float)
        total_flops = float(flops_kept.sum())
        warnings = [
            *self._tolerance_warnings(budget, target, shapes),
            *duplicates,
            *self._token_warnings(tokens_kept),
        ]
        return SweepPlan(
            planner=self.name,
            config=c.model_dump(mode="json"),
            conventions=c.conventions,
            experiments=experiments,
            estimates={
                "n_experiments": len(experiments),
                "total_flops": total_flops,
                "total_tokens": int(tokens_kept.sum(dtype=object)),
                "wall_time_s": {name: total_flops / fps for name, fps in c.hardware.items()},
                "hardware_flops_per_s": dict(c.hardware),
            },
            warnings=warnings,
        )

    def _specs(self, budget, target, shapes, tokens, lrs):
        """Build the ExperimentSpecs, dropping a size that lands on a shape its budget has.

        Returns (specs, indices kept, duplicate warnings).
        """
        c = self.config
        conv = c.conventions
        shape_cache: dict[tuple[int, int], ModelShape] = {}
        seen: dict[tuple[float, int, int], int] = {}
        specs: list[ExperimentSpec] = []
        keep: list[int] = []
        dup_lines: list[str] = []
        columns = zip(
            budget.tolist(),
            shapes.d_model.tolist(),
            shapes.n_layers.tolist(),
            shapes.n_heads.tolist(),
            shapes.d_ff.tolist(),
            shapes.params.tolist(),
            tokens.tolist(),
            lrs.tolist(),
            strict=True,
        )
        for i, (b, d, n_layers, heads, d_ff, n, t, lr) in enumerate(columns):
            key = (b, d, n_layers)
            if key in seen:
                j = seen[key]
                dup_lines.append(
                    f"budget {b:.4g}: targets N={target[j]:.4g} and N={target[i]:.4g} both "
                    f"land on d_model={d}, n_layers={n_layers} (N={n:,}); planned once"
                )
                continue
            seen[key] = i
            shape = shape_cache.get((d, n_layers))
            if shape is None:
                shape = ModelShape(
                    d_model=d,
                    n_layers=n_layers,
                    n_heads=heads,
                    d_ff=d_ff,
                    vocab_size=c.vocab_size,
                    seq_len=c.seq_len,
                )
                shape_cache[(d, n_layers)] = shape
            specs.append(
                ExperimentSpec(
                    budget=b,
                    params=n,
                    tokens=t,
                    shape=shape,
                    learning_rate=lr,
                    batch_size=c.batch_size,
                    schedule=c.schedule,
                    seed=c.seed,
                    conventions=conv,
                )
            )
            keep.append(i)
        dup_lines = _capped(
            dup_lines, "... and {n} more sizes landed on a shape already planned for their budget"
        )
        return specs, np.array(keep, dtype=np.int64), dup_lines

    def _tolerance_warnings(self, budget, target, shapes) -> list[str]:
        """One line per target no shape reaches within param_tolerance (capped)."""
        missed = np.flatnonzero(~shapes.within_tolerance)
        lines = []
        for i in missed.tolist():
            n = int(shapes.params[i])
            lines.append(
                f"budget {budget[i]:.4g}: target N={target[i]:.4g} is not reachable within "
                f"{self.config.param_tolerance * 100:g}%; nearest shape has N={n:,} "
                f"({n / target[i] - 1:+.2%}; d_model={shapes.d_model[i]}, "
                f"n_layers={shapes.n_layers[i]})"
            )
        return _capped(lines, "... and {n} more targets not reachable within tolerance")

    def _token_warnings(self, tokens: np.ndarray) -> list[str]:
        """Runs shorter than one batch, and runs that need more tokens than the dataset has."""
        c = self.config
        out = []
        batch_tokens = c.batch_size * c.seq_len
        short = tokens < batch_tokens
        if short.any():
            out.append(
                f"{int(short.sum())} experiments have fewer tokens than one batch "
                f"(batch_size x seq_len = {batch_tokens:,}); the smallest has "
                f"{int(tokens.min()):,}"
            )
        if c.dataset_tokens is not None:
            over = tokens > c.dataset_tokens
            if over.any():
                largest = int(tokens.max())
                out.append(
                    f"{int(over.sum())} of {len(tokens)} experiments need more tokens "
                    f"than the dataset has ({c.dataset_tokens:,}); the largest needs "
                    f"{largest:,} ({largest / c.dataset_tokens:.2f} epochs)"
                )
        return out
