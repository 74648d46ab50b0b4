"""Loop timing: hold a loop to a fixed period and measure how well it kept it.

The deadlines sit on a fixed grid (start + k * period), so a late step never shifts the
ones after it: there is no drift to accumulate. A step that starts after its deadline is
an overrun; the loop then goes on at once and the deadlines it missed are skipped rather
than caught up with a burst of short steps (a robot should never get two commands in
quick succession to make up for a slow one).

Jitter is the actual period minus the nominal one. A free-running loop (``rate_hz``
None: the simulator's clock is simulated, so waiting would only slow learning down) does
not sleep but still measures its step times.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np


@dataclass(frozen=True)
class LoopTiming:
    """What a loop achieved over a window of steps. Jitter fields are None when free-running."""

    steps: int
    loop_hz: float
    period_p50_ms: float
    period_p99_ms: float
    jitter_p50_ms: Optional[float]
    jitter_p99_ms: Optional[float]
    jitter_max_ms: Optional[float]
    overruns: int


def percentile_ms(seconds, q: float) -> float:
    """The q-th percentile of durations in seconds, in ms (NaN for none)."""
    return float(np.percentile(np.asarray(seconds), q) * 1000.0) if len(seconds) else math.nan


class RateLimiter:
    def __init__(
        self,
        rate_hz: Optional[float],
        window: int = 10_000,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if rate_hz is not None and not rate_hz > 0:
            raise ValueError(f"rate_hz must be positive (or None for a free-running loop), got {rate_hz}")
        self.period_s = 1.0 / rate_hz if rate_hz is not None else None
        self._clock = clock
        self._sleep = sleep
        self._periods: deque[float] = deque(maxlen=window)
        self._overruns = 0
        self._deadline: Optional[float] = None
        self._last_tick: Optional[float] = None

    @property
    def locked(self) -> bool:
        return self.period_s is not None

    def restart(self) -> None:
        """Re-anchor the grid at the next ``wait`` (after a pause such as an episode reset,
        which is neither a period nor an overrun)."""
        self._deadline = None
        self._last_tick = None

    def wait(self) -> float:
        """Call at the top of every step: sleeps until the step's deadline (locked loops)
        and records the period since the previous step began. Returns the step's start time."""
        now = self._clock()
        if self.period_s is not None:
            if self._deadline is None:
                self._deadline = now
            elif now < self._deadline:
                self._sleep(self._deadline - now)
                now = self._clock()
            else:
                self._overruns += 1  # the previous step ran past this step's deadline
            # Next deadline: the first grid point after now; missed ones are skipped.
            behind = max(0, math.floor((now - self._deadline) / self.period_s))
            self._deadline += (behind + 1) * self.period_s
        if self._last_tick is not None:
            self._periods.append(now - self._last_tick)
        self._last_tick = now
        return now

    def report(self, reset: bool = False) -> LoopTiming:
        """Timing over the steps since the last reset (``reset`` starts a new window)."""
        periods = np.asarray(self._periods)
        mean = float(periods.mean()) if periods.size else math.nan
        jitter = (periods - self.period_s) if self.period_s is not None else None
        timing = LoopTiming(
            steps=int(periods.size),
            loop_hz=1.0 / mean if periods.size and mean > 0 else 0.0,
            period_p50_ms=percentile_ms(periods, 50),
            period_p99_ms=percentile_ms(periods, 99),
            jitter_p50_ms=percentile_ms(jitter, 50) if jitter is not None else None,
            jitter_p99_ms=percentile_ms(jitter, 99) if jitter is not None else None,
            jitter_max_ms=float(jitter.max() * 1000.0) if jitter is not None and jitter.size else None,
            overruns=self._overruns,
        )
        if reset:
            self._periods.clear()
            self._overruns = 0
        return timing
