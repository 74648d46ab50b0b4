"""The controller's real-time loop: one thread owns the robot backend and lets time pass.

Whatever commands the arm (a ROS node's subscriptions, a reset routine, a test) talks to
``ControllerLoop``, never to the backend: commands land in a mailbox and the loop thread
applies them at the start of its next tick, so the backend (a MuJoCo world, a libfranka
connection) is only ever touched from one thread.

One tick: apply the newest target / gripper width / gains and any queued joint move ->
watchdog -> ``backend.advance(tick period)`` (the impedance law runs at the robot's
control rate inside it: 10 law steps per tick at 1 kHz and 100 ticks/s) -> read the
state -> ``on_tick(state)`` (publishing). A simulated backend advances faster than real
time, so the loop sleeps to the next deadline of a fixed grid; a real backend blocks in
``advance`` itself and the sleep is zero.

Safety: a non-finite target is refused before it reaches the mailbox (the arm keeps its
last good target); the backend's safety box clamps every target; with no new target for
``watchdog_timeout_s`` the loop holds the arm where it is; a deactivated loop holds and
refuses targets until activated again.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from robot_stack.hardware.interfaces import RobotBackend, RobotState

log = logging.getLogger(__name__)


class TargetRefused(ValueError):
    """A target the loop will not track (non-finite, or the loop is not active)."""


@dataclass(frozen=True)
class LoopStats:
    ticks: int
    wall_time_s: float
    tick_rate_hz: float  # achieved ticks per second
    nominal_tick_rate_hz: float
    control_rate_hz: float  # achieved impedance-law steps per second (ticks x law steps per tick)
    nominal_control_rate_hz: float
    tick_p99_ms: float  # time a tick's work took (99th percentile)
    overruns: int  # ticks that started after their deadline
    targets_applied: int
    targets_refused: int
    targets_clamped: int
    watchdog_trips: int
    joint_moves: int


@dataclass
class _Call:
    fn: Callable[[RobotBackend], object]
    done: threading.Event
    result: object = None
    error: Optional[BaseException] = None


class ControllerLoop:
    def __init__(
        self,
        backend: RobotBackend,
        tick_rate_hz: float,
        control_rate_hz: float,
        watchdog_timeout_s: float,
        on_tick: Optional[Callable[[RobotState], None]] = None,
        set_gains: Optional[Callable[[object], None]] = None,
    ):
        if not tick_rate_hz > 0 or not control_rate_hz >= tick_rate_hz:
            raise ValueError(
                f"tick rate {tick_rate_hz} Hz must be positive and at most the control rate {control_rate_hz} Hz"
            )
        self.backend = backend
        self.period_s = 1.0 / tick_rate_hz
        self.control_rate_hz = control_rate_hz
        self.watchdog_timeout_s = watchdog_timeout_s
        self.on_tick = on_tick
        self._set_gains = set_gains
        self._lock = threading.Lock()
        self._target: Optional[tuple[np.ndarray, np.ndarray]] = None
        self._gripper: Optional[float] = None
        self._gains = None
        self._calls: deque[_Call] = deque()
        self._hold_requested = False
        self._active = False
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._last_target_wall = time.monotonic()
        self._watchdog_tripped = False
        self._target_seen = False  # the watchdog guards a stream of targets, not their absence at start
        self._tick_work_s: deque[float] = deque(maxlen=10_000)
        self._ticks = 0
        self._overruns = 0
        self._applied = self._refused = self._clamped = self._trips = self._moves = 0
        self._started_wall: Optional[float] = None
        self.last_state: Optional[RobotState] = None
        self.last_tracked: Optional[tuple[np.ndarray, np.ndarray, bool]] = None
        self.error: Optional[BaseException] = None

    # ------------------------------------------------------------------ life cycle

    def start(self) -> "ControllerLoop":
        if self._thread is not None:
            return self
        self._stop.clear()
        self._started_wall = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="controller-loop", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        """Hold the arm, then stop the thread (the backend stays open: the caller closes it)."""
        if self._thread is None:
            return
        self.deactivate()
        deadline = time.monotonic() + timeout_s
        while self._hold_requested and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(self.period_s / 2)
        self._stop.set()
        self._thread.join(timeout_s)
        self._thread = None
        with self._lock:
            for call in self._calls:
                call.error = RuntimeError("the controller loop stopped before the call ran")
                call.done.set()
            self._calls.clear()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def active(self) -> bool:
        return self._active

    def activate(self) -> None:
        """Accept targets. The arm holds where it is until the first one arrives."""
        with self._lock:
            self._target = None
            self._hold_requested = True
            self._last_target_wall = time.monotonic()
            self._watchdog_tripped = False
            self._target_seen = False
            self._active = True

    def deactivate(self) -> None:
        """Refuse targets and hold the arm where it is."""
        with self._lock:
            self._active = False
            self._target = None
            self._hold_requested = True

    # ------------------------------------------------------------------ commands (any thread)

    def set_target(self, position_m, rotation) -> None:
        position = np.asarray(position_m, dtype=float)
        rotation = np.asarray(rotation, dtype=float)
        if position.shape != (3,) or rotation.shape != (3, 3):
            self._refused += 1
            raise TargetRefused(f"target needs a 3-vector and a 3x3 rotation, got shapes {position.shape}, {rotation.shape}")
        if not (np.all(np.isfinite(position)) and np.all(np.isfinite(rotation))):
            self._refused += 1
            raise TargetRefused(
                f"non-finite target refused (position {position.tolist()}); the arm keeps its last target"
            )
        with self._lock:
            if not self._active:
                self._refused += 1
                raise TargetRefused("the controller is not active; target refused, the arm holds position")
            self._target = (position, rotation)
            self._last_target_wall = time.monotonic()

    def count_refused(self) -> None:
        """A target its sender could not even express (a malformed message) counts as refused."""
        self._refused += 1

    def set_gripper(self, width_m: float) -> None:
        if not math.isfinite(width_m):
            raise TargetRefused(f"non-finite gripper width refused: {width_m}")
        with self._lock:
            self._gripper = float(width_m)

    def set_gains(self, gains) -> None:
        if self._set_gains is None:
            raise NotImplementedError("this backend does not take new impedance gains at run time")
        with self._lock:
            self._gains = gains

    def call(self, fn: Callable[[RobotBackend], object], timeout_s: float):
        """Run ``fn(backend)`` on the loop thread at the start of the next tick and return
        its result (a joint move, a simulated scene reset): the backend is never touched
        from two threads."""
        if not self.running:
            raise RuntimeError("the controller loop is not running")
        call = _Call(fn, threading.Event())
        with self._lock:
            self._calls.append(call)
        if not call.done.wait(timeout_s):
            raise TimeoutError(f"the controller loop did not run the call within {timeout_s:.1f} s")
        if call.error is not None:
            raise call.error
        with self._lock:
            self._last_target_wall = time.monotonic()
        return call.result

    def move_to_joints(self, q_rad, duration_s: float, timeout_s: float) -> None:
        """A joint move on the loop thread; waits for it to finish."""
        q = np.asarray(q_rad, dtype=float)
        if q.shape != (7,) or not np.all(np.isfinite(q)):
            raise ValueError(f"joint move needs 7 finite joint positions, got {list(np.atleast_1d(q))}")
        if not (0 < duration_s <= 10.0):
            raise ValueError(f"joint move duration must be in (0, 10] s, got {duration_s}")

        def move(backend):
            backend.move_to_joint_positions(q, duration_s)
            self._moves += 1

        self.call(move, timeout_s)

    # ------------------------------------------------------------------ stats

    def stats(self) -> LoopStats:
        wall = time.monotonic() - self._started_wall if self._started_wall else 0.0
        tick_rate = self._ticks / wall if wall > 0 else 0.0
        steps_per_tick = self.control_rate_hz * self.period_s
        work = np.asarray(self._tick_work_s)
        return LoopStats(
            ticks=self._ticks,
            wall_time_s=wall,
            tick_rate_hz=tick_rate,
            nominal_tick_rate_hz=1.0 / self.period_s,
            control_rate_hz=tick_rate * steps_per_tick,
            nominal_control_rate_hz=self.control_rate_hz,
            tick_p99_ms=float(np.percentile(work, 99) * 1000) if work.size else math.nan,
            overruns=self._overruns,
            targets_applied=self._applied,
            targets_refused=self._refused,
            targets_clamped=self._clamped,
            watchdog_trips=self._trips,
            joint_moves=self._moves,
        )

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        deadline = time.monotonic()
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                self._tick()
                self._ticks += 1
                now = time.monotonic()
                self._tick_work_s.append(now - started)
                deadline += self.period_s
                if now > deadline + self.period_s:
                    # Late by more than a tick (a joint move ran, the machine stalled): start
                    # a new grid instead of rushing ticks to catch up.
                    self._overruns += 1
                    deadline = now
                    continue
                if deadline > now:
                    time.sleep(deadline - now)
        except BaseException as error:  # the owner sees it in .error and the node reports it
            self.error = error
            log.exception("controller loop stopped by an error")
            try:
                self.backend.hold()
            except Exception:
                pass

    def _tick(self) -> None:
        with self._lock:
            target, self._target = self._target, None
            gripper, self._gripper = self._gripper, None
            gains, self._gains = self._gains, None
            hold, self._hold_requested = self._hold_requested, False
            call = self._calls.popleft() if self._calls else None
            active = self._active
            since_target = time.monotonic() - self._last_target_wall
        backend = self.backend
        if gains is not None:
            self._set_gains(gains)
        if hold:
            backend.hold()
        if target is not None and active:
            status = backend.set_target(*target)
            self._applied += 1
            self._clamped += int(status.clamped)
            self._watchdog_tripped = False
            self._target_seen = True
            self.last_tracked = (status.position_m, status.rotation, status.clamped)
        elif active and self._target_seen and not self._watchdog_tripped and since_target > self.watchdog_timeout_s:
            # Targets stopped arriving: hold where the arm is, not where the stale target was.
            self._watchdog_tripped = True
            self._trips += 1
            backend.hold()
            log.warning("no target for %.2f s: holding position", since_target)
        if gripper is not None:
            backend.set_gripper(gripper)
        if call is not None:
            try:
                call.result = call.fn(backend)
            except BaseException as error:
                call.error = error
            finally:
                call.done.set()
        backend.advance(self.period_s)
        state = backend.read_state()
        self.last_state = state
        if self.on_tick is not None:
            self.on_tick(state)
