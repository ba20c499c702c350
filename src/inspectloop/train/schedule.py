"""A one-cycle learning rate over a run's progress, where progress may be measured in time.

Without a time budget, progress is the share of the planned steps done: the usual one-cycle (warm up
from ``peak / 25`` over the first 15%, then cosine down to nearly zero). With a budget, progress is the
larger of that and the share of the budget used, so a run that the budget ends has annealed when it
stops instead of being cut at a high rate: on a busy machine the same command trains fewer steps but
still finishes its schedule ("budgeted training", Li, Yumer and Ramanan, ICLR 2020). A budgeted run's
steps then depend on the machine's speed: it is reproducible only without a budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

WARMUP = 0.15  # share of the run spent warming up
START = 1 / 25  # warm-up starts at this share of the peak (one-cycle's default)
END = 1e-4  # share of the peak left at the end


@dataclass(frozen=True)
class OneCycle:
    """The learning rate at a step, given the steps planned and an optional time budget in seconds."""

    peak: float
    total_steps: int
    budget_seconds: float | None = None

    def progress(self, step: int, seconds: float) -> float:
        """Share of the run done, in [0, 1]: by steps, or by time when the budget is the nearer end."""
        done = step / max(1, self.total_steps)
        if self.budget_seconds is not None:
            done = max(done, seconds / self.budget_seconds)
        return min(1.0, done)

    def done(self, step: int, seconds: float) -> bool:
        return self.progress(step, seconds) >= 1.0

    def rate(self, step: int, seconds: float) -> float:
        progress = self.progress(step, seconds)
        if progress < WARMUP:
            return self.peak * (START + (1 - START) * progress / WARMUP)
        cosine = 0.5 * (1 + math.cos(math.pi * (progress - WARMUP) / (1 - WARMUP)))
        return self.peak * (END + (1 - END) * cosine)
