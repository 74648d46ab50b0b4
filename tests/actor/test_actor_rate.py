"""The loop rate limiter: fixed-grid deadlines, skipped missed deadlines, jitter figures."""

from __future__ import annotations

import time

import pytest

from actor.rate import RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_a_50_hz_loop_keeps_its_period_in_real_time() -> None:
    rate = RateLimiter(50.0)
    start = time.perf_counter()
    for _ in range(21):
        rate.wait()
        time.sleep(0.004)  # the step's own work
    elapsed = time.perf_counter() - start

    timing = rate.report()
    assert timing.steps == 20
    assert 44.0 <= timing.loop_hz <= 52.0
    assert abs(timing.jitter_p50_ms) < 4.0
    # No drift: 20 periods after the first step, not 20 x (period + sleep error); a step
    # the shared machine made late skips to the next grid point (one period more).
    assert 0.40 - 0.003 <= elapsed - 0.004 <= 0.40 + 0.01 + 0.02 * timing.overruns


def test_deadlines_stay_on_the_grid_when_steps_take_varying_time() -> None:
    clock = FakeClock()
    rate = RateLimiter(10.0, clock=clock, sleep=clock.sleep)
    starts = []
    for work_s in (0.01, 0.05, 0.09, 0.0, 0.03):
        starts.append(rate.wait())
        clock.now += work_s

    assert [round(t - starts[0], 9) for t in starts] == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert rate.report().overruns == 0
    assert rate.report().jitter_max_ms == pytest.approx(0.0, abs=1e-6)


def test_a_late_step_counts_an_overrun_and_skips_the_missed_deadlines() -> None:
    clock = FakeClock()
    rate = RateLimiter(10.0, clock=clock, sleep=clock.sleep)
    first = rate.wait()
    clock.now += 0.25  # ran through two and a half periods
    late = rate.wait()
    clock.now += 0.01
    after = rate.wait()

    assert late - first == pytest.approx(0.25)  # goes on at once, no wait
    assert after - first == pytest.approx(0.3)  # the next grid point: 0.1 and 0.2 are skipped, not caught up
    timing = rate.report()
    assert timing.overruns == 1
    assert timing.jitter_max_ms == pytest.approx(150.0)


def test_restart_excludes_a_pause_from_the_figures() -> None:
    clock = FakeClock()
    rate = RateLimiter(10.0, clock=clock, sleep=clock.sleep)
    rate.wait()
    clock.now += 3.0  # an episode reset
    rate.restart()
    rate.wait()
    rate.wait()

    timing = rate.report()
    assert timing.steps == 1 and timing.overruns == 0
    assert timing.period_p50_ms == pytest.approx(100.0)


def test_free_running_never_sleeps_but_measures_step_times() -> None:
    clock = FakeClock()
    rate = RateLimiter(None, clock=clock, sleep=clock.sleep)
    for work_s in (0.002, 0.004, 0.004, 0.010):
        rate.wait()
        clock.now += work_s
    rate.wait()

    timing = rate.report(reset=True)
    assert clock.sleeps == []
    assert timing.steps == 4
    assert timing.loop_hz == pytest.approx(4 / 0.020)
    assert timing.period_p50_ms == pytest.approx(4.0)
    assert timing.jitter_p50_ms is None and timing.overruns == 0
    assert rate.report().steps == 0  # the window was reset
