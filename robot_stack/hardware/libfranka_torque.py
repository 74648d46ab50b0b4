"""The real Franka arm under this project's own impedance law, run in Python over pylibfranka.

The research alternative to the franky driver (``robot.driver: libfranka_torque``): the
law is ``robot_stack.control.impedance_torques``, the very function the simulator runs, so
a change to it can be tried on the arm unchanged. One Python thread owns pylibfranka's
torque control and runs ``readOnce`` -> law -> ``writeOnce`` every 1 ms cycle.

It needs a fast real-time machine. The FCI expects a torque command every millisecond and
stops the arm with a communication_constraints_violation reflex when too many are late;
a numpy cycle of this law measured ~1.1 ms on the project's 2-core build machines (and
~1.3 ms here against franky-sim, with the model calls), which is too slow for a real arm.
Run it on a PREEMPT_RT robot PC with cycles well under 1 ms, or use the franky driver,
whose loop is C++.

pylibfranka holds the GIL while it waits: measured here, a thread sleeping 1 ms at a time
got ~15% of its iterations while the loop ran, and ``Gripper.move`` held the GIL for the
whole 0.7 s finger motion, which would stall the torque loop. The Franka Hand therefore
runs in a child process of its own.

Frames, safety box, watchdog and errors are as in ``robot_stack.hardware.franka`` (see its
docstring for the TCP convention). The watchdog runs inside the 1 kHz loop, as in the
simulator. Gains can be changed at run time by assigning ``gains`` (an ImpedanceGains),
as for the simulated backend.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import threading
import time
from dataclasses import dataclass, field
from typing import NamedTuple, Optional

import numpy as np

from robot_stack.config.schema import GripperConfig, ImpedanceConfig, RobotConfig
from robot_stack.control import ArmState, CartesianTarget, SafetyBox, impedance_torques
from robot_stack.control.from_config import impedance_gains_from_config
from robot_stack.control.joint_move import JOINT_MOVE_SETTLE_S, joint_move_torques, minimum_jerk_reference
from robot_stack.hardware.franka import (
    FrankaConnectionError,
    FrankaControlError,
    FrankaError,
    checked_joint_goal,
    checked_target,
    clamped_gripper_width,
    column_major,
    hand_unreachable_message,
    load_inertia_column_major,
    keep_thread_scheduling,
    nominal_ee_to_tcp,
    realtime_error,
    recovery_failed_error,
    refuse_if_loaded,
    run_gripper_command,
    unreachable_error,
    version_error,
)
from robot_stack.hardware.interfaces import RobotState, TargetStatus

log = logging.getLogger(__name__)

_HAND_START_TIMEOUT_S = 20.0  # a spawned child imports numpy, mujoco and pylibfranka first
_HAND_POLL_S = 0.02
_GRIPPER_SAME_TARGET_M = 0.0005
_LOOP_START_TIMEOUT_S = 2.0
_JOIN_TIMEOUT_S = 2.0


class _Sample(NamedTuple):
    """What the loop last read and sent, swapped in whole each cycle for ``read_state``."""

    time_s: float
    q: np.ndarray
    dq: np.ndarray
    ee_pose: np.ndarray  # (4, 4) O_T_EE, the TCP
    jacobian: np.ndarray  # (6, 7)
    wrench: np.ndarray  # (6,) O_F_ext_hat_K
    tau: np.ndarray  # (7,) commanded, without gravity


@dataclass
class _JointMove:
    """A minimum-jerk joint interpolation tracked by a joint impedance inside the loop
    (the simulator's joint move, same gains)."""

    q_start: np.ndarray
    q_goal: np.ndarray
    duration_s: float
    started_s: Optional[float] = None  # robot time of the first cycle
    done: threading.Event = field(default_factory=threading.Event)

    def reference(self, now_s: float) -> tuple[np.ndarray, bool]:
        if self.started_s is None:
            self.started_s = now_s
        elapsed = now_s - self.started_s
        reference = minimum_jerk_reference(self.q_start, self.q_goal, elapsed, self.duration_s)
        return reference, elapsed >= self.duration_s + JOINT_MOVE_SETTLE_S


class LibfrankaTorqueBackend:
    """RobotBackend over pylibfranka torque control, with ``impedance_torques`` in Python.

    robot: the ``robot`` section of the task config; safety_box: targets are clamped into
    it (None: no box). Connecting sets collision thresholds, payload and the TCP frame,
    recovers from errors the arm reports, starts the Hand's process and the torque loop.
    A reflex ends the loop; ``fault`` keeps libfranka's reason and ``set_target``,
    ``hold`` and ``advance`` raise FrankaControlError with it until ``recover()``.
    """

    def __init__(self, robot: RobotConfig, safety_box: SafetyBox | None = None):
        refuse_if_loaded("franky", "the libfranka_torque driver")
        import pylibfranka

        if not robot.address:
            raise ValueError("robot.address is empty: the libfranka_torque driver needs the arm's FCI hostname or IP")
        self._pl = pylibfranka
        self.robot_config = robot
        self.address = robot.address
        self.safety_box = safety_box
        self.gains = impedance_gains_from_config(robot)
        self.q_nullspace = np.array(robot.home_joint_positions_rad)
        self.watchdog_timeout_s = robot.watchdog_timeout_s
        self.watchdog_tripped = False
        self.fault: Optional[str] = None
        self.error_clipped_cycles = 0
        self.cycles = 0
        self._target: Optional[CartesianTarget] = None
        # Guards target, its time and the watchdog flag between the caller and the loop.
        self._target_lock = threading.Lock()
        self._last_target_time = time.monotonic()
        self._tau = np.zeros(7)
        self._sample: Optional[_Sample] = None
        self._joint_move: Optional[_JointMove] = None
        self._stop_loop = threading.Event()
        self._loop: Optional[threading.Thread] = None
        self._closed = False
        self._hand: Optional[_HandProcess] = None
        self._robot = self._connect()
        try:
            self._model = self._robot.load_model()
            self._configure()
            if robot.gripper.kind == "franka_hand":
                self._hand = _HandProcess(self.address, robot.gripper)
            self._start_loop()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ RobotBackend

    def read_state(self) -> RobotState:
        sample = self._sample if self._loop_running else self._read_sample()
        pose = sample.ee_pose
        return RobotState(
            time_s=sample.time_s,
            q_rad=sample.q.copy(),
            dq_rad_per_s=sample.dq.copy(),
            tcp_position_m=pose[:3, 3].copy(),
            tcp_rotation=pose[:3, :3].copy(),
            tcp_velocity=sample.jacobian @ sample.dq,
            tcp_wrench=sample.wrench.copy(),
            gripper_width_m=self._hand.width_m if self._hand is not None else 0.0,
            tau_commanded_nm=sample.tau.copy(),
        )

    def set_target(self, position_m: np.ndarray, rotation: np.ndarray) -> TargetStatus:
        position, rotation = checked_target(position_m, rotation)
        clamped = False
        if self.safety_box is not None:
            position, rotation, clamped = self.safety_box.clamp(position, rotation)
        self._raise_if_not_running()
        with self._target_lock:
            self._target = CartesianTarget(position.copy(), rotation.copy())
            self._last_target_time = time.monotonic()
            self.watchdog_tripped = False
        return TargetStatus(position, rotation, clamped)

    def hold(self) -> None:
        self._raise_if_not_running()
        self._hold_measured_pose()

    def advance(self, duration_s: float) -> None:
        if not (math.isfinite(duration_s) and duration_s >= 0.0):
            raise ValueError(f"advance needs a finite duration >= 0 s, got {duration_s}")
        time.sleep(duration_s)
        self._raise_if_not_running()

    def set_gripper(self, width_m: float) -> None:
        width = clamped_gripper_width(width_m, self.robot_config.gripper)
        if self._hand is not None:
            self._hand.command(width)

    def move_to_joint_positions(self, q_rad: np.ndarray, duration_s: float) -> None:
        """Minimum-jerk joint interpolation over ``duration_s`` tracked by a joint
        impedance in the torque loop, then Cartesian tracking of the reached pose."""
        q_goal = checked_joint_goal(q_rad)
        if not (math.isfinite(duration_s) and duration_s > 0.0):
            raise ValueError(f"joint move duration must be a finite number of seconds > 0, got {duration_s}")
        self._raise_if_not_running()
        move = _JointMove(self._sample.q.copy(), q_goal, float(duration_s))
        self._joint_move = move
        finished = move.done.wait(duration_s + JOINT_MOVE_SETTLE_S + _JOIN_TIMEOUT_S)
        self._raise_if_not_running()
        if not finished:
            self._joint_move = None
            self._hold_measured_pose()
            limit_s = duration_s + JOINT_MOVE_SETTLE_S
            raise FrankaControlError(f"joint move to {q_goal.round(4).tolist()} did not finish within {limit_s:.1f} s")

    def recover(self) -> None:
        """Stop the loop, run the arm's automatic error recovery, restart at the measured pose."""
        self._stop_loop_thread()
        try:
            self._robot.automatic_error_recovery()
        except self._pl.FrankaException as error:
            raise recovery_failed_error(self.address, error) from error
        self.fault = None
        self._start_loop()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._hand is not None:
            self._hand.close()
        self._stop_loop_thread()
        self._robot = None  # pylibfranka disconnects when its Robot goes
        self._model = None

    # ------------------------------------------------------------------ more than the protocol

    @property
    def target(self) -> Optional[CartesianTarget]:
        return self._target

    @property
    def gripper_idle(self) -> bool:
        return self._hand is None or self._hand.idle

    @property
    def gripper_error(self) -> Optional[str]:
        return self._hand.error if self._hand is not None else None

    def set_impedance(self, impedance: ImpedanceConfig) -> None:
        """New gains and clips, used from the next 1 ms cycle on."""
        self.gains = impedance_gains_from_config(self.robot_config, impedance)

    # ------------------------------------------------------------------ the loop

    @property
    def _loop_running(self) -> bool:
        return self._loop is not None and self._loop.is_alive()

    def _start_loop(self) -> None:
        sample = self._read_sample()
        pose = sample.ee_pose
        self._target = CartesianTarget(pose[:3, 3].copy(), pose[:3, :3].copy())
        self._sample = sample
        self._tau = np.zeros(7)
        self._joint_move = None
        self._last_target_time = time.monotonic()
        self.watchdog_tripped = False
        self._stop_loop.clear()
        started = threading.Event()
        self._loop = threading.Thread(target=self._run, args=(started,), name="libfranka-torque-loop", daemon=True)
        self._loop.start()
        if not started.wait(_LOOP_START_TIMEOUT_S) or self.fault is not None:
            self._stop_loop_thread()
            raise FrankaControlError(
                f"the torque loop for the arm at {self.address} did not start: {self.fault or 'no first cycle'}"
            )

    def _stop_loop_thread(self) -> None:
        if self._loop is not None:
            self._stop_loop.set()
            self._loop.join(_JOIN_TIMEOUT_S)
            if self._loop.is_alive():
                log.error("the torque loop for the arm at %s did not stop within %.1f s", self.address, _JOIN_TIMEOUT_S)
            self._loop = None

    def _run(self, started: threading.Event) -> None:
        pl = self._pl
        try:
            control = self._robot.start_torque_control()
            tau = self._tau
            while not self._stop_loop.is_set():
                state, _ = control.readOnce()
                tau = self._cycle(state)
                control.writeOnce(pl.Torques(tau.tolist()))
                started.set()
            finish = pl.Torques(tau.tolist())
            finish.motion_finished = True
            control.writeOnce(finish)
        except Exception as error:  # a reflex, a lost connection, a non-finite torque
            self.fault = f"the torque loop stopped: {error}{self._error_summary()}"
            log.error("arm at %s: %s", self.address, self.fault)
            started.set()
            move = self._joint_move
            if move is not None:
                move.done.set()

    def _cycle(self, state) -> np.ndarray:
        """One 1 kHz step: state in, torque out (without gravity; the arm compensates it)."""
        model = self._model
        q = np.array(state.q)
        dq = np.array(state.dq)
        pose = np.array(state.O_T_EE).reshape(4, 4).T  # column-major
        jacobian = np.array(model.zero_jacobian(state)).reshape(7, 6).T
        coriolis = np.array(model.coriolis(state))
        now_s = state.time.to_sec()
        gains = self.gains
        move = self._joint_move
        if move is not None:
            q_reference, finished = move.reference(now_s)
            tau = joint_move_torques(q_reference, q, dq, coriolis)
            rate = gains.torque_rate_limit_nm
            tau = np.clip(tau, self._tau - rate, self._tau + rate)
            tau = np.clip(tau, -gains.torque_limits_nm, gains.torque_limits_nm)
            if finished:
                self._hold_pose(pose)
                self._joint_move = None
                move.done.set()
        else:
            with self._target_lock:
                if not self.watchdog_tripped and time.monotonic() - self._last_target_time > self.watchdog_timeout_s:
                    # Targets stopped arriving: stay where we are instead of chasing a stale goal.
                    self.watchdog_tripped = True
                    self._target = CartesianTarget(pose[:3, 3].copy(), pose[:3, :3].copy())
                    log.warning(
                        "no target for %.2f s: holding the arm at %s where it is", self.watchdog_timeout_s, self.address
                    )
                target = self._target
            arm = ArmState(q, dq, pose[:3, 3], pose[:3, :3], jacobian, coriolis)
            result = impedance_torques(arm, target, gains, self.q_nullspace, self._tau)
            tau = result.tau
            self.error_clipped_cycles += result.error_clipped
        self._tau = tau
        self.cycles += 1
        self._sample = _Sample(now_s, q, dq, pose, jacobian, np.array(state.O_F_ext_hat_K), tau)
        return tau

    # ------------------------------------------------------------------ internals

    def _connect(self):
        pl = self._pl
        realtime = pl.RealtimeConfig.kEnforce if self.robot_config.realtime == "enforce" else pl.RealtimeConfig.kIgnore
        try:
            with keep_thread_scheduling():
                return pl.Robot(self.address, realtime)
        except pl.RealtimeException as error:
            raise realtime_error(error) from error
        except pl.NetworkException as error:
            raise unreachable_error(self.address, error) from error
        except pl.FrankaException as error:
            # pylibfranka binds no IncompatibleVersionException of its own.
            if "version" in str(error).lower():
                raise version_error(self.address, "pylibfranka", error) from error
            raise FrankaConnectionError(f"connecting to the arm at {self.address} failed: {error}") from error

    def _configure(self) -> None:
        r, cfg = self._robot, self.robot_config
        state = r.read_once()
        errors = str(state.current_errors)
        if errors not in ("", "[]"):
            try:
                r.automatic_error_recovery()
            except self._pl.FrankaException as error:
                raise FrankaControlError(
                    f"the arm at {self.address} reports errors {errors} and automatic error recovery failed: {error}"
                ) from error
            log.warning("arm at %s reported %s at connect; automatic error recovery cleared them", self.address, errors)
        torque, force = list(cfg.collision.joint_torque_nm), list(cfg.collision.cartesian_force)
        r.set_collision_behavior(torque, torque, force, force)
        r.set_load(cfg.load.mass_kg, list(cfg.load.center_of_mass_m), load_inertia_column_major(cfg))
        flange_to_nominal_ee = np.array(state.F_T_NE).reshape(4, 4).T
        r.set_EE(column_major(nominal_ee_to_tcp(flange_to_nominal_ee, cfg.tcp_offset_m)))
        r.set_K(column_major(np.eye(4)))

    def _read_sample(self) -> _Sample:
        """A fresh state while the loop is not running (pylibfranka refuses readOnce on
        the robot while torque control owns it)."""
        state = self._robot.read_once()
        pose = np.array(state.O_T_EE).reshape(4, 4).T
        jacobian = np.array(self._model.zero_jacobian(state)).reshape(7, 6).T
        return _Sample(
            state.time.to_sec(), np.array(state.q), np.array(state.dq), pose, jacobian,
            np.array(state.O_F_ext_hat_K), self._tau.copy(),
        )

    def _hold_measured_pose(self) -> None:
        self._hold_pose(self._sample.ee_pose)

    def _hold_pose(self, pose: np.ndarray) -> None:
        with self._target_lock:
            self._target = CartesianTarget(pose[:3, 3].copy(), pose[:3, :3].copy())
            self._last_target_time = time.monotonic()

    def _raise_if_not_running(self) -> None:
        if self._closed:
            raise FrankaError(f"the backend for the arm at {self.address} is closed")
        if self.fault is None and not self._loop_running:
            self.fault = "the torque loop is not running"
        if self.fault is not None:
            raise FrankaControlError(f"{self.fault}; call recover() to clear it and resume tracking")

    def _error_summary(self) -> str:
        try:
            errors = str(self._robot.read_once().last_motion_errors)
        except Exception:  # the summary must never hide the error it annotates
            return ""
        return "" if errors in ("", "[]") else f" (robot errors: {errors})"


# --------------------------------------------------------------------------- the Hand's process


class _HandProcess:
    """The Franka Hand driven from a child process, so its blocking, GIL-holding calls
    never stall the torque loop. ``command`` only writes to a pipe; the child runs the
    newest command, one at a time, and publishes the finger width every 20 ms."""

    def __init__(self, address: str, gripper: GripperConfig):
        self.address = address
        self.error: Optional[str] = None
        self._last_commanded: Optional[float] = None
        self._sent = 0
        context = multiprocessing.get_context("spawn")  # never fork a process with a live torque loop
        self._conn, child_conn = context.Pipe()
        self._width = context.Value("d", math.nan, lock=False)
        self._done = context.Value("q", 0, lock=False)
        self._process = context.Process(
            target=_run_hand_process,
            args=(address, gripper.model_dump(), child_conn, self._width, self._done),
            name="franka-hand",
            daemon=True,
        )
        self._process.start()
        child_conn.close()
        if not self._conn.poll(_HAND_START_TIMEOUT_S):
            self.close()
            raise FrankaConnectionError(
                f"the Franka Hand process for {address} did not start within {_HAND_START_TIMEOUT_S} s"
            )
        kind, message = self._conn.recv()
        if kind != "ready":
            self.close()
            raise FrankaConnectionError(message)

    @property
    def width_m(self) -> float:
        self._collect_errors()
        return float(self._width.value)

    @property
    def idle(self) -> bool:
        return self._done.value >= self._sent

    def command(self, width_m: float) -> None:
        self._collect_errors()
        if self._last_commanded is not None and abs(width_m - self._last_commanded) < _GRIPPER_SAME_TARGET_M:
            return
        if not self._process.is_alive():
            reason = self.error or "no reason given"
            raise FrankaError(f"the Franka Hand process for {self.address} has stopped: {reason}")
        self._last_commanded = width_m
        self._sent += 1
        self._conn.send(width_m)

    def close(self) -> None:
        if self._process.is_alive():
            try:
                self._conn.send(None)
            except OSError:
                pass
            self._process.join(_JOIN_TIMEOUT_S)
        if self._process.is_alive():
            # A Hand command in flight keeps the child busy; it has nothing to save.
            self._process.terminate()
            self._process.join(_JOIN_TIMEOUT_S)
        self._conn.close()

    def _collect_errors(self) -> None:
        try:
            while self._conn.poll():
                kind, message = self._conn.recv()
                if kind == "error":
                    self.error = message
                    self._last_commanded = None  # the same target again is a retry
                    log.warning(message)
        except (EOFError, OSError):
            pass


def _run_hand_process(address: str, gripper_fields: dict, conn, width, done) -> None:
    """The child's main: connect to the Hand, then run commands from ``conn``."""
    import pylibfranka

    gripper = GripperConfig(**gripper_fields)
    try:
        hand = pylibfranka.Gripper(address)
        width.value = hand.read_once().width
    except Exception as error:
        conn.send(("error", hand_unreachable_message(address, error)))
        return
    conn.send(("ready", ""))
    while True:
        if conn.poll(_HAND_POLL_S):
            target, received = conn.recv(), 1
            while target is not None and conn.poll():  # newest wins; None (close) ends the child
                target, received = conn.recv(), received + 1
            if target is None:
                return
            try:
                run_gripper_command(hand, target, width.value, gripper)
            except Exception as error:
                conn.send(("error", f"Franka Hand at {address}: command to {target:.4f} m failed: {error}"))
            # The width the command ended at is published before the command counts as done,
            # so a caller that sees the Hand idle reads where the fingers are now.
            _publish_width(hand, address, conn, width)
            done.value += received
        else:
            _publish_width(hand, address, conn, width)


def _publish_width(hand, address: str, conn, width) -> None:
    try:
        width.value = hand.read_once().width
    except Exception as error:
        conn.send(("error", f"Franka Hand at {address}: reading the finger width failed: {error}"))
        time.sleep(1.0)
