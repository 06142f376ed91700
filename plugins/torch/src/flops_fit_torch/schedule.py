"""Learning-rate schedules that end exactly at the run's own last step.

An IsoFLOP sweep compares runs of very different lengths; a schedule fixed in steps (decay
over 10,000 steps, say) would leave short runs undecayed and cut long ones short, which biases
the very minima the sweep measures. Every schedule here is a function of the step *fraction*
of this run: warmup over the first `warmup` share of its steps, then

* `cosine` (default): half a cosine from the peak to `final_ratio` of it,
* `wsd` (warmup-stable-decay): the peak until the last `decay` share of the steps, then a
  linear decay to `final_ratio`,
* `constant`: the peak after warmup,

and the last optimizer step (step `steps - 1`) is taken at exactly the final value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["SCHEDULES", "Schedule"]

ScheduleName = Literal["cosine", "wsd", "constant"]
SCHEDULES: tuple[str, ...] = ("cosine", "wsd", "constant")


@dataclass(frozen=True)
class Schedule:
    """lr(step) / peak lr for a run of `steps` optimizer steps (picklable, for LambdaLR)."""

    name: ScheduleName
    steps: int
    warmup: float = 0.05
    final_ratio: float = 0.1
    decay: float = 0.2

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.name!r}; available: {', '.join(SCHEDULES)}")
        if self.steps < 1:
            raise ValueError(f"a run needs at least one step, not {self.steps}")

    @property
    def warmup_steps(self) -> int:
        """Steps spent warming up: the `warmup` share, at least one, never the whole run."""
        if self.steps == 1:
            return 0
        return min(self.steps - 1, max(1, round(self.warmup * self.steps)))

    def __call__(self, step: int) -> float:
        warm = self.warmup_steps
        if step < warm:
            return (step + 1) / (warm + 1)
        if self.name == "constant":
            return 1.0
        last = self.steps - 1
        if self.name == "cosine":
            span = last - warm
            progress = 1.0 if span <= 0 else min(1.0, (step - warm) / span)
            return self.final_ratio + (1 - self.final_ratio) * 0.5 * (
                1 + math.cos(math.pi * progress)
            )
        # wsd: stable, then linear decay over the last `decay` share, ending at `last`
        if step >= last:
            return self.final_ratio
        decay_steps = max(1, round(self.decay * self.steps))
        start = max(warm, last - decay_steps)
        if step <= start:
            return 1.0
        progress = (step - start) / (last - start)
        return self.final_ratio + (1 - self.final_ratio) * (1 - progress)
