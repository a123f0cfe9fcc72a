"""A fixed frame budget: pick the denoising steps that fit, pace to the clock, count misses.

The cost of a frame is roughly `fixed + steps * per_step` (context pass and
decode are fixed; every denoising step costs one DiT forward). `FrameBudget`
keeps an exponential moving average of measured latency and

- lowers the steps at once when the average exceeds `high` x the budget
  (a missed frame is worse than a slightly blurrier one),
- raises them only after `patience` consecutive frames in which the
  predicted latency at one more step stays under `low` x the budget
  (hysteresis: no flapping between two step counts).

`Pacer` holds frames to the clock: it sleeps until each frame's deadline and
counts a miss whenever a frame is ready after its deadline. Misses are
counted, never hidden; after a long stall the deadlines resynchronise instead
of bursting frames to catch up.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class BudgetConfig:
    fps: float = 20.0  # target frames per second; the budget is 1/fps
    # Fewest denoising steps allowed. One step draws visibly worse worlds than two (tiny: 11.7 vs
    # 18.1 dB at frame 128, docs/RESULTS.md), so a slow machine misses frames rather than go there.
    min_steps: int = 2
    max_steps: int = 4  # most denoising steps allowed
    start_steps: int = 2  # steps of the first frame
    high: float = 0.90  # lower steps when EMA latency > high * budget
    low: float = 0.70  # raise steps when predicted latency at steps+1 < low * budget ...
    patience: int = 20  # ... for this many consecutive frames
    ema: float = 0.2  # weight of the newest latency in the moving average

    def __post_init__(self) -> None:
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if not 1 <= self.min_steps <= self.start_steps <= self.max_steps:
            raise ValueError(
                f"need 1 <= min_steps <= start_steps <= max_steps, got "
                f"{self.min_steps}, {self.start_steps}, {self.max_steps}"
            )
        if not 0 < self.low < self.high <= 1.5:
            raise ValueError(f"need 0 < low < high, got low={self.low}, high={self.high}")

    @property
    def budget_s(self) -> float:
        return 1.0 / self.fps


@dataclass
class FrameBudget:
    """Chooses the denoising steps of the next frame from measured latencies."""

    config: BudgetConfig = field(default_factory=BudgetConfig)

    def __post_init__(self) -> None:
        self.steps = self.config.start_steps
        self.avg_s: float | None = None
        self.frames = 0
        self.over_budget = 0  # frames whose own latency exceeded the budget
        self._calm = 0  # consecutive frames with room for one more step
        self.changes = 0

    def record(self, latency_s: float) -> int:
        """Feed the latency of the frame just made; returns the steps for the next one."""
        c = self.config
        self.frames += 1
        self.over_budget += latency_s > c.budget_s
        self.avg_s = latency_s if self.avg_s is None else (1 - c.ema) * self.avg_s + c.ema * latency_s
        # Latency at steps+1 if every step costs the same (pessimistic: fixed costs scale too).
        predicted_up = self.avg_s * (self.steps + 1) / self.steps
        if self.avg_s > c.high * c.budget_s and self.steps > c.min_steps:
            self._set(self.steps - 1)
        elif predicted_up < c.low * c.budget_s and self.steps < c.max_steps:
            self._calm += 1
            if self._calm >= c.patience:
                self._set(self.steps + 1)
        else:
            self._calm = 0
        return self.steps

    def _set(self, steps: int) -> None:
        # The average was measured at the old step count: rescale it to the new one.
        self.avg_s = self.avg_s * steps / self.steps
        self.steps = steps
        self._calm = 0
        self.changes += 1

    def stats(self) -> dict:
        return {
            "budget_fps": self.config.fps,
            "steps": self.steps,
            "latency_avg_ms": None if self.avg_s is None else round(self.avg_s * 1e3, 3),
            "frames": self.frames,
            "over_budget": self.over_budget,
            "step_changes": self.changes,
        }


class Pacer:
    """Releases one frame per period on the wall clock and counts late frames."""

    def __init__(self, fps: float, clock=time.perf_counter, sleep=time.sleep):
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.period = 1.0 / fps
        self._clock, self._sleep = clock, sleep
        self._deadline: float | None = None
        self.frames = 0
        self.misses = 0

    def wait(self) -> bool:
        """Call when a frame is ready; sleeps until its deadline. Returns True if it was late."""
        now = self._clock()
        if self._deadline is None:
            self._deadline = now + self.period
            self.frames += 1
            return False
        self.frames += 1
        late = now > self._deadline
        if late:
            self.misses += 1
            self._deadline = now + self.period  # resync: never burst to catch up
        else:
            self._sleep(self._deadline - now)
            self._deadline += self.period
        return late

    @property
    def miss_rate(self) -> float:
        return self.misses / max(1, self.frames - 1)
