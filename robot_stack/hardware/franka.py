"""The real Franka arm as a RobotBackend, and the parts both FCI drivers share.

``robot.driver`` picks the driver (``robot_stack.hardware.devices.make_franka_backend``):

- ``franky`` (``FrankyBackend``, the default): franky-control's C++ Cartesian impedance
  tracking motion runs the 1 kHz FCI torque loop; Python only moves its target at the
  policy rate. The law is the SERL one: our stiffness and damping, the pose error clipped
  per axis before the gain (so a far target pulls with at most stiffness x clip), torque
  rate limited per cycle, a posture task towards the home pose in the nullspace.
- ``libfranka_torque`` (``robot_stack.hardware.libfranka_torque``): this project's own
  ``impedance_torques`` in a Python thread over pylibfranka, for control-law research.

TCP convention (both drivers, the same as the simulator's ``tcp`` site): the TCP frame is
the flange frame turned by -45 deg about its z axis (the Franka Hand's mounting, so the
TCP x/y axes are the Hand's own end-effector axes) and moved to ``robot.tcp_offset_m``,
given in flange coordinates. At connect the backend writes
``NE_T_EE = (F_T_NE)^-1 F_T_TCP`` to the robot, whatever end effector Desk has configured,
and resets ``EE_T_K`` to identity, so libfranka's end-effector frame EE *is* the TCP:
``O_T_EE``, the Jacobian, the impedance error, the Cartesian collision thresholds and the
external wrench estimate ``O_F_ext_hat_K`` all refer to the TCP.

franky and pylibfranka each bundle libfranka's pybind11 types: importing both in one
process fails (``generic_type: type "Duration" is already registered!``). Each backend
imports its library only when it is built and refuses, with that reason, if the other one
is already loaded.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import threading
import time
from importlib import metadata
from typing import Callable, Optional

import numpy as np

from robot_stack.config.schema import (
    FR3_JOINT_LOWER_RAD,
    FR3_JOINT_UPPER_RAD,
    GripperConfig,
    ImpedanceConfig,
    RobotConfig,
)
from robot_stack.control import CartesianTarget, SafetyBox
from robot_stack.hardware.interfaces import RobotState, TargetStatus

log = logging.getLogger(__name__)

# The Franka Hand sits on the flange turned by -45 deg about z (Franka's F_T_NE for it).
HAND_MOUNT_ROTATION = np.array(
    [
        [math.cos(-math.pi / 4), -math.sin(-math.pi / 4), 0.0],
        [math.sin(-math.pi / 4), math.cos(-math.pi / 4), 0.0],
        [0.0, 0.0, 1.0],
    ]
)
# A target rotation further than this from orthonormal is refused, not silently re-fitted:
# loose enough for a matrix composed over an episode, tight enough to catch garbage.
_ROTATION_TOLERANCE = 1e-3
# The watchdog looks this often, as a fraction of its timeout.
_WATCHDOG_POLLS_PER_TIMEOUT = 10
# A gripper target within this of the last one commanded is the same command again (the
# policy repeats its gripper action every 10 Hz step).
_GRIPPER_SAME_TARGET_M = 0.0005
# A target this far below the measured width closes the fingers: a grasp with force.
_GRIPPER_CLOSING_MARGIN_M = 0.002
_GRIPPER_POLL_S = 0.02
# Bounded waits so close() never hangs on a robot that stopped answering.
_STOP_TIMEOUT_S = 3.0
_THREAD_JOIN_TIMEOUT_S = 2.0
_MOTION_START_TIMEOUT_S = 1.0
# After a joint move: wait (at most this long) until every joint is slower than this.
_SETTLE_TIMEOUT_S = 1.0
_STILL_JOINT_SPEED_RAD_PER_S = 0.005


class FrankaError(RuntimeError):
    """Something on the real arm is wrong; the message names what."""


class FrankaConnectionError(FrankaError):
    """The arm or its hand cannot be reached or does not speak our libfranka version."""


class FrankaControlError(FrankaError):
    """The arm stopped following our commands (a reflex, a lost connection); ``recover()``
    clears it."""


# --------------------------------------------------------------------------- shared helpers


def unreachable_error(address: str, error: Exception) -> FrankaConnectionError:
    return FrankaConnectionError(
        f"cannot reach the Franka control interface (FCI) at {address}: {error}. Check robot.address, the network "
        "link, that the arm's brakes are open and FCI is activated in Desk"
    )


def realtime_error(error: Exception) -> FrankaConnectionError:
    return FrankaConnectionError(
        f"robot.realtime is 'enforce' but this machine cannot run libfranka's real-time loop ({error}); use a "
        "PREEMPT_RT kernel on the robot PC, or set robot.realtime: ignore for simulators and development machines"
    )


def version_error(address: str, package: str, error: Exception) -> FrankaConnectionError:
    return FrankaConnectionError(
        f"the arm at {address} speaks another libfranka protocol version than {package} {metadata.version(package)} "
        f"was built for ({error}); install the {package} release that matches the robot's system version"
    )


def hand_unreachable_message(address: str, error: Exception) -> str:
    return f"cannot reach the Franka Hand at {address}: {error}; set robot.gripper.kind: none if no Hand is mounted"


def recovery_failed_error(address: str, error: Exception) -> FrankaControlError:
    return FrankaControlError(f"automatic error recovery of the arm at {address} failed: {error}")


def refuse_if_loaded(conflicting_module: str, wanted: str) -> None:
    """Raise ImportError if ``conflicting_module`` is already imported in this process."""
    if conflicting_module in sys.modules:
        raise ImportError(
            f"cannot use {wanted}: {conflicting_module} is already imported in this process, and franky and "
            f"pylibfranka both register libfranka's pybind11 types (importing both fails with 'generic_type: "
            f"type \"Duration\" is already registered!'). Use one Franka driver per process (robot.driver)."
        )


@contextlib.contextmanager
def keep_thread_scheduling():
    """Restore the calling thread's scheduling policy afterwards.

    libfranka's Robot constructor raises the calling thread to SCHED_FIFO priority 99 where
    it may (as root, or with rtprio rights), even with the real-time check set to ignore.
    That belongs to the 1 kHz control thread, not to the caller: a Python thread left at
    SCHED_FIFO starves every other process on the machine while it busy-waits, and every
    thread and child process it starts inherits the policy."""
    try:
        policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
    except (AttributeError, OSError):  # no POSIX scheduling API here
        yield
        return
    try:
        yield
    finally:
        if (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority) != (policy, param.sched_priority):
            os.sched_setscheduler(0, policy, param)


def flange_to_tcp(tcp_offset_m) -> np.ndarray:
    """F_T_TCP (4x4): the TCP frame in flange coordinates (see the module docstring)."""
    transform = np.eye(4)
    transform[:3, :3] = HAND_MOUNT_ROTATION
    transform[:3, 3] = np.asarray(tcp_offset_m, dtype=float)
    return transform


def nominal_ee_to_tcp(flange_to_nominal_ee: np.ndarray, tcp_offset_m) -> np.ndarray:
    """NE_T_EE (4x4) that makes libfranka's EE frame the TCP, given the robot's F_T_NE."""
    return np.linalg.inv(flange_to_nominal_ee) @ flange_to_tcp(tcp_offset_m)


def column_major(matrix: np.ndarray) -> list[float]:
    """A matrix as libfranka's flat column-major list."""
    return np.asarray(matrix, dtype=float).flatten(order="F").tolist()


def load_inertia_column_major(robot: RobotConfig) -> list[float]:
    return column_major(np.diag(robot.load.inertia_kg_m2))


def checked_target(position_m, rotation) -> tuple[np.ndarray, np.ndarray]:
    """(position (3,), rotation (3, 3)) as float arrays; ValueError naming what is wrong."""
    position = np.asarray(position_m, dtype=float)
    rotation = np.asarray(rotation, dtype=float)
    if position.shape != (3,) or rotation.shape != (3, 3):
        raise ValueError(f"target needs a 3-vector and a 3x3 rotation, got shapes {position.shape}, {rotation.shape}")
    if not (np.all(np.isfinite(position)) and np.all(np.isfinite(rotation))):
        raise ValueError(f"non-finite target refused: position={position.tolist()}, rotation={rotation.tolist()}")
    if not (
        np.allclose(rotation.T @ rotation, np.eye(3), atol=_ROTATION_TOLERANCE)
        and abs(np.linalg.det(rotation) - 1.0) < _ROTATION_TOLERANCE
    ):
        raise ValueError(f"target rotation is not a rotation matrix: {rotation.round(6).tolist()}")
    return position, rotation


def checked_joint_goal(q_rad) -> np.ndarray:
    q_goal = np.asarray(q_rad, dtype=float)
    if q_goal.shape != (7,) or not np.all(np.isfinite(q_goal)):
        raise ValueError(f"joint move needs 7 finite joint positions, got {q_rad!r}")
    lower, upper = np.array(FR3_JOINT_LOWER_RAD), np.array(FR3_JOINT_UPPER_RAD)
    if np.any(q_goal < lower) or np.any(q_goal > upper):
        raise ValueError(f"joint move target {q_goal.round(4).tolist()} is outside the FR3 joint limits")
    return q_goal


def clamped_gripper_width(width_m: float, gripper: GripperConfig) -> float:
    if not math.isfinite(width_m):
        raise ValueError(f"non-finite gripper width refused: {width_m}")
    return min(max(float(width_m), gripper.min_width_m), gripper.max_width_m)


def run_gripper_command(hand, target_m: float, measured_m: float, gripper: GripperConfig) -> bool:
    """One blocking Franka Hand command towards ``target_m``; ``hand`` is a franky or
    pylibfranka Gripper (same method names). Closing is a grasp: the fingers stop on
    whatever is between them and squeeze with ``grasp_force_n``, and any final width
    counts as success (the tolerances span the whole stroke). Opening is a plain move."""
    if target_m < measured_m - _GRIPPER_CLOSING_MARGIN_M:
        stroke = gripper.max_width_m
        return bool(hand.grasp(target_m, gripper.speed_m_per_s, gripper.grasp_force_n, stroke, stroke))
    return bool(hand.move(target_m, gripper.speed_m_per_s))


class GripperWorker:
    """Franka Hand commands on their own thread: ``command`` returns at once, so a 10 Hz
    policy loop never waits the ~1 s a grasp takes.

    Commands run one at a time, newest first: a target that arrives while the fingers
    move replaces any still waiting, and a repeat of the last target is dropped. (A Hand
    command is not preempted: franky-sim never answers a command cut short by ``stop``.)
    ``read_width`` is polled every 20 ms while idle and during commands, since franky's
    Gripper releases the GIL while it waits."""

    def __init__(self, hand, read_width: Callable[[], float], gripper: GripperConfig, address: str):
        self.hand = hand
        self.gripper = gripper
        self.address = address
        self._read_width = read_width
        self.width_m = float(read_width())
        self.error: Optional[str] = None
        self._pending: Optional[float] = None
        self._last_commanded: Optional[float] = None
        self._busy = False
        self._wake = threading.Condition()
        self._closing = False
        self._command_thread = threading.Thread(target=self._run_commands, name="franka-hand-commands", daemon=True)
        self._width_thread = threading.Thread(target=self._poll_width, name="franka-hand-width", daemon=True)
        self._command_thread.start()
        self._width_thread.start()

    def command(self, width_m: float) -> None:
        with self._wake:
            if self._last_commanded is not None and abs(width_m - self._last_commanded) < _GRIPPER_SAME_TARGET_M:
                return
            self._pending = width_m
            self._last_commanded = width_m
            self._wake.notify()

    @property
    def idle(self) -> bool:
        with self._wake:
            return self._pending is None and not self._busy

    def close(self) -> None:
        with self._wake:
            self._closing = True
            self._pending = None
            self._wake.notify()
        # A command in flight finishes on the Hand; its thread is a daemon and is not waited for long.
        self._command_thread.join(_THREAD_JOIN_TIMEOUT_S)
        self._width_thread.join(_THREAD_JOIN_TIMEOUT_S)

    def _run_commands(self) -> None:
        while True:
            with self._wake:
                while self._pending is None and not self._closing:
                    self._wake.wait()
                if self._closing:
                    return
                target, self._pending = self._pending, None
                self._busy = True
            try:
                if not run_gripper_command(self.hand, target, self.width_m, self.gripper):
                    log.info("Franka Hand at %s: command to %.4f m ended at %.4f m", self.address, target, self.width_m)
                self.error = None
            except Exception as error:  # the arm keeps working without its hand
                self.error = f"Franka Hand at {self.address}: command to {target:.4f} m failed: {error}"
                log.warning(self.error)
                with self._wake:
                    if self._pending is None:
                        self._last_commanded = None  # the same target again is a retry, not a repeat
            finally:
                # The width the command ended at is read before the command counts as done, so a
                # caller that sees the Hand idle reads where the fingers are now, not 20 ms ago.
                self._refresh_width()
                with self._wake:
                    self._busy = False

    def _poll_width(self) -> None:
        while not self._closing:
            self._refresh_width()
            time.sleep(_GRIPPER_POLL_S)

    def _refresh_width(self) -> None:
        try:
            self.width_m = float(self._read_width())
        except Exception as error:
            self.error = f"Franka Hand at {self.address}: reading the finger width failed: {error}"
            log.warning(self.error)
            time.sleep(1.0)


def _stiffness_and_damping(impedance: ImpedanceConfig) -> tuple[np.ndarray, np.ndarray]:
    translational = [impedance.translational_stiffness_n_per_m] * 3
    rotational = [impedance.rotational_stiffness_nm_per_rad] * 3
    damping = [impedance.translational_damping_ns_per_m] * 3 + [impedance.rotational_damping_nms_per_rad] * 3
    return np.array(translational + rotational), np.array(damping)


# --------------------------------------------------------------------------- franky


class FrankyBackend:
    """The real FR3 through franky-control: a C++ 1 kHz Cartesian impedance tracking loop.

    robot: the ``robot`` section of the task config (``address``, ``realtime``,
    ``collision``, ``load``, ``tcp_offset_m``, ``impedance``, ``gripper``,
    ``watchdog_timeout_s``, ``joint_move_speed_factor``, ``home_joint_positions_rad``).
    safety_box: every target is clamped into it before it reaches the robot (None: no box).

    Connecting sets the collision thresholds, the payload and the TCP frame, runs the
    automatic error recovery if the arm reports errors, connects the Franka Hand
    (``gripper.kind: franka_hand``) and starts tracking the pose the arm is in.

    - ``set_target`` clamps into the safety box and moves the tracked pose; the C++ loop
      picks it up in its next 1 ms cycle.
    - ``advance`` sleeps in real time (the arm moves meanwhile).
    - Watchdog: a thread holds the measured pose once no ``set_target`` (or ``hold``) came
      for ``watchdog_timeout_s``, so a crashed actor leaves the arm still, not chasing its
      last target; ``watchdog_tripped`` says so until the next target.
    - A reflex or any other end of the tracking motion that we did not ask for is kept in
      ``fault`` and raised as FrankaControlError, with libfranka's reason, by
      ``set_target``, ``hold`` and ``advance`` until ``recover()``.
    - Runtime torque limits: franky saturates at the FR3 hardware limits; the tighter
      ``robot.torque_limits_nm`` is enforced only by the libfranka_torque driver.
    """

    def __init__(self, robot: RobotConfig, safety_box: SafetyBox | None = None):
        refuse_if_loaded("pylibfranka", "the franky driver")
        import franky

        if not robot.address:
            raise ValueError("robot.address is empty: the franky driver needs the arm's FCI hostname or IP")
        self._franky = franky
        self.robot_config = robot
        self.address = robot.address
        self.safety_box = safety_box
        self.watchdog_timeout_s = robot.watchdog_timeout_s
        self.impedance = robot.impedance
        self.watchdog_tripped = False
        self.fault: Optional[str] = None
        self._lock = threading.RLock()
        self._tracking = False
        self._motion = None
        self._target = CartesianTarget(np.zeros(3), np.eye(3))
        self._last_target_time = time.monotonic()
        self._closed = False
        self._closing = threading.Event()
        self._watchdog: Optional[threading.Thread] = None
        self._robot = self._connect()
        self._gripper: Optional[GripperWorker] = None
        try:
            self._configure()
            if robot.gripper.kind == "franka_hand":
                self._gripper = self._connect_gripper()
            with self._lock:
                self._start_tracking()
        except BaseException:
            self.close()
            raise
        self._watchdog = threading.Thread(target=self._run_watchdog, name="franka-watchdog", daemon=True)
        self._watchdog.start()

    # ------------------------------------------------------------------ RobotBackend

    def read_state(self) -> RobotState:
        f = self._franky
        s = self._robot.state
        pose = np.asarray(s.O_T_EE.matrix)
        dq = np.asarray(s.dq, dtype=float)
        jacobian = np.asarray(self._robot.model.zero_jacobian(f.Frame.EndEffector, s))
        return RobotState(
            time_s=s.time.to_msec() / 1000.0,
            q_rad=np.asarray(s.q, dtype=float),
            dq_rad_per_s=dq,
            tcp_position_m=pose[:3, 3].copy(),
            tcp_rotation=pose[:3, :3].copy(),
            tcp_velocity=jacobian @ dq,
            tcp_wrench=np.asarray(s.O_F_ext_hat_K, dtype=float),
            gripper_width_m=self._gripper.width_m if self._gripper is not None else 0.0,
            # Desired joint torque without gravity: what the impedance law commanded.
            tau_commanded_nm=np.asarray(s.tau_J_d, dtype=float),
        )

    def set_target(self, position_m: np.ndarray, rotation: np.ndarray) -> TargetStatus:
        position, rotation = checked_target(position_m, rotation)
        clamped = False
        if self.safety_box is not None:
            position, rotation, clamped = self.safety_box.clamp(position, rotation)
        with self._lock:
            self._raise_if_not_tracking()
            self._track(CartesianTarget(position.copy(), rotation.copy()))
            self.watchdog_tripped = False
        return TargetStatus(position, rotation, clamped)

    def hold(self) -> None:
        with self._lock:
            self._raise_if_not_tracking()
            self._hold_measured_pose()

    def advance(self, duration_s: float) -> None:
        if not (math.isfinite(duration_s) and duration_s >= 0.0):
            raise ValueError(f"advance needs a finite duration >= 0 s, got {duration_s}")
        time.sleep(duration_s)
        with self._lock:
            self._raise_if_not_tracking()

    def set_gripper(self, width_m: float) -> None:
        width = clamped_gripper_width(width_m, self.robot_config.gripper)
        if self._gripper is not None:
            self._gripper.command(width)

    def move_to_joint_positions(self, q_rad: np.ndarray, duration_s: float) -> None:
        """franky's time-optimal joint motion at ``joint_move_speed_factor`` of the arm's
        velocity, acceleration and jerk limits; then tracking resumes at the reached pose.
        The speed factor, not ``duration_s``, sets how long the move takes (the safe speed
        for a reset is a robot setting); a move done sooner holds the reached pose for the
        rest of ``duration_s``, so the call blocks for at least that long."""
        f = self._franky
        q_goal = checked_joint_goal(q_rad)
        started = time.monotonic()
        with self._lock:
            self._raise_if_not_tracking()
            self._stop_tracking()
            if self.fault is not None:
                raise FrankaControlError(f"{self.fault}; call recover() to clear it")
            try:
                self._robot.move(
                    f.JointMotion(q_goal, relative_dynamics_factor=self.robot_config.joint_move_speed_factor)
                )
            except f.Exception as error:
                self.fault = f"joint move to {q_goal.round(4).tolist()} aborted: {error}{self._error_summary()}"
                raise FrankaControlError(f"{self.fault}; call recover() to clear it") from error
            self._wait_until_still()
            self._start_tracking()
        remaining = duration_s - (time.monotonic() - started)
        if remaining > 0:
            self.advance(remaining)

    def recover(self) -> None:
        """Run the arm's automatic error recovery and restart tracking at the measured pose."""
        f = self._franky
        with self._lock:
            if self._tracking:
                self._stop_tracking()
            try:
                recovered = self._robot.recover_from_errors()
            except f.Exception as error:
                raise recovery_failed_error(self.address, error) from error
            if not recovered:
                raise FrankaControlError(
                    f"automatic error recovery of the arm at {self.address} did not clear the errors"
                    f"{self._error_summary()}; check the arm (user stop released? Desk shows the reason)"
                )
            self.fault = None
            self._start_tracking()

    def close(self) -> None:
        """Stop the watchdog and the hand's threads, bring the arm to rest, disconnect."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        if self._watchdog is not None:
            self._watchdog.join(_THREAD_JOIN_TIMEOUT_S)
        if self._gripper is not None:
            self._gripper.close()
        with self._lock:
            if self._tracking:
                try:
                    self._stop_tracking()
                except FrankaError as error:
                    log.warning("stopping the arm at %s on close: %s", self.address, error)
        # franky has no disconnect call: libfranka closes the connection when the last
        # reference to its Robot goes.
        self._robot = None
        self._gripper = None

    # ------------------------------------------------------------------ more than the protocol

    @property
    def target(self) -> CartesianTarget:
        """The pose being tracked (after the safety box)."""
        return self._target

    @property
    def gripper_idle(self) -> bool:
        """No Hand command is running or waiting."""
        return self._gripper is None or self._gripper.idle

    @property
    def gripper_error(self) -> Optional[str]:
        return self._gripper.error if self._gripper is not None else None

    def set_impedance(self, impedance: ImpedanceConfig) -> None:
        """New gains and error clips. The clips are fixed per franky motion, so a new
        tracking motion with them takes over from the running one in the same 1 ms cycle
        (franky queues a torque motion behind a torque motion without a stop)."""
        with self._lock:
            self._raise_if_not_tracking()
            self.impedance = impedance
            self._start_tracking(keep_target=True)

    # ------------------------------------------------------------------ internals

    def _connect(self):
        f = self._franky
        realtime = f.RealtimeConfig.Enforce if self.robot_config.realtime == "enforce" else f.RealtimeConfig.Ignore
        try:
            with keep_thread_scheduling():
                return f.Robot(self.address, realtime_config=realtime)
        except f.IncompatibleVersionException as error:
            raise version_error(self.address, "franky-control", error) from error
        except f.RealtimeException as error:
            raise realtime_error(error) from error
        except f.NetworkException as error:
            raise unreachable_error(self.address, error) from error

    def _configure(self) -> None:
        r, cfg = self._robot, self.robot_config
        if r.has_errors:
            errors = str(r.state.current_errors)
            if not r.recover_from_errors():
                raise FrankaControlError(
                    f"the arm at {self.address} reports errors {errors} and automatic error recovery did not clear them"
                )
            log.warning("arm at %s reported %s at connect; automatic error recovery cleared them", self.address, errors)
        r.set_collision_behavior(list(cfg.collision.joint_torque_nm), list(cfg.collision.cartesian_force))
        r.set_load(cfg.load.mass_kg, list(cfg.load.center_of_mass_m), load_inertia_column_major(cfg))
        r.set_ee(column_major(nominal_ee_to_tcp(np.asarray(r.state.F_T_NE.matrix), cfg.tcp_offset_m)))
        r.set_k(column_major(np.eye(4)))

    def _connect_gripper(self) -> GripperWorker:
        f = self._franky
        try:
            hand = f.Gripper(self.address)
        except f.Exception as error:
            raise FrankaConnectionError(hand_unreachable_message(self.address, error)) from error
        return GripperWorker(hand, lambda: hand.width, self.robot_config.gripper, self.address)

    def _new_tracking_motion(self):
        f, imp, cfg = self._franky, self.impedance, self.robot_config
        posture = None
        if imp.nullspace_stiffness_nm_per_rad > 0:
            # Damping left unset: franky uses 2 sqrt(k), critical for unit inertia, as our law does.
            posture = f.PostureTask(np.array(cfg.home_joint_positions_rad), imp.nullspace_stiffness_nm_per_rad)
        motion = f.CartesianImpedanceTrackingMotion(
            translational_stiffness=imp.translational_stiffness_n_per_m,
            rotational_stiffness=imp.rotational_stiffness_nm_per_rad,
            translational_error_clip=np.array(imp.translational_error_clip_m),
            rotational_error_clip=np.array(imp.rotational_error_clip_rad),
            posture_task=posture,
            max_delta_tau=imp.torque_rate_limit_nm_per_cycle,
            # Soft repulsion (at most 5 Nm) within 0.1 rad of a joint limit, before the
            # arm's own limit reflex would stop it.
            lower_joint_limits=np.array(FR3_JOINT_LOWER_RAD),
            upper_joint_limits=np.array(FR3_JOINT_UPPER_RAD),
        )
        motion.set_gains(f.CartesianImpedanceGains.diagonal(*_stiffness_and_damping(imp)))
        return motion

    def _start_tracking(self, keep_target: bool = False) -> None:
        """Start (or hand over to) a tracking motion: at the measured pose, or at the
        current target with ``keep_target``. Caller holds the lock."""
        f = self._franky
        motion = self._new_tracking_motion()
        if keep_target:
            target = self._target
        else:
            pose = np.asarray(self._robot.state.O_T_EE.matrix)
            target = CartesianTarget(pose[:3, 3].copy(), pose[:3, :3].copy())
        motion.set_reference(f.CartesianReference(target=self._affine(target)))
        try:
            self._robot.move(motion, asynchronous=True)
            # move() returns before libfranka's loop runs (~130 ms on franky-sim), and a
            # stop sent in between is lost: wait until the arm reports the motion.
            deadline = time.monotonic() + _MOTION_START_TIMEOUT_S
            while self._robot.state.robot_mode != f.RobotMode.Move:
                if self._robot.poll_motion() or time.monotonic() > deadline:
                    raise FrankaControlError(
                        f"the tracking motion did not take control of the arm within {_MOTION_START_TIMEOUT_S} s"
                    )
                time.sleep(0.001)
        except (f.Exception, FrankaControlError) as error:
            self.fault = f"starting Cartesian impedance tracking failed: {error}{self._error_summary()}"
            raise FrankaControlError(f"{self.fault}; call recover() to clear it") from error
        self._motion = motion
        self._target = target
        self._tracking = True
        self._last_target_time = time.monotonic()
        self.watchdog_tripped = False

    def _stop_tracking(self) -> None:
        """Ramp the torque into joint damping, wait for the arm to rest. Caller holds the lock."""
        f = self._franky
        self._tracking = False
        was_in_control = self._robot.is_in_control
        try:
            if was_in_control:
                self._robot.move(f.TorqueStopMotion(), asynchronous=True)
            if not self._robot.join_motion(_STOP_TIMEOUT_S):
                raise FrankaControlError(f"the arm at {self.address} did not come to rest within {_STOP_TIMEOUT_S} s")
        except f.ControlException as error:
            # A motion that had already ended on its own (a reflex) says why here; keep it.
            if not was_in_control or "preempted" not in str(error):
                self.fault = f"the arm stopped tracking: {error}{self._error_summary()}"

    def _wait_until_still(self) -> None:
        """After a joint motion: let the arm's own joint controller settle on the goal
        before Cartesian tracking takes the measured pose as its target (franky-sim's
        joint controller trails its reference by ~0.015 rad when the motion ends)."""
        deadline = time.monotonic() + _SETTLE_TIMEOUT_S
        while time.monotonic() < deadline:
            if np.max(np.abs(np.asarray(self._robot.state.dq))) < _STILL_JOINT_SPEED_RAD_PER_S:
                return
            time.sleep(0.01)

    def _track(self, target: CartesianTarget) -> None:
        self._motion.set_reference(self._franky.CartesianReference(target=self._affine(target)))
        self._target = target
        self._last_target_time = time.monotonic()

    def _hold_measured_pose(self) -> None:
        pose = np.asarray(self._robot.state.O_T_EE.matrix)
        self._track(CartesianTarget(pose[:3, 3].copy(), pose[:3, :3].copy()))

    def _affine(self, target: CartesianTarget):
        transform = np.eye(4)
        transform[:3, :3] = target.rotation
        transform[:3, 3] = target.position
        return self._franky.Affine(transform)

    def _raise_if_not_tracking(self) -> None:
        """Notice a tracking motion that ended without us asking, and raise while it has.
        Caller holds the lock."""
        f = self._franky
        if self._closed:
            raise FrankaError(f"the backend for the arm at {self.address} is closed")
        if self._tracking and not self._robot.is_in_control:
            self._tracking = False
            reason = "the tracking motion ended"
            try:
                self._robot.poll_motion()  # raises the exception that ended the motion
            except f.Exception as error:
                reason = str(error)
            self.fault = f"the arm stopped tracking: {reason}{self._error_summary()}"
            log.error("arm at %s: %s", self.address, self.fault)
        if self.fault is not None:
            raise FrankaControlError(f"{self.fault}; call recover() to clear it and resume tracking")

    def _error_summary(self) -> str:
        try:
            errors = str(self._robot.state.last_motion_errors)
        except Exception:  # the summary must never hide the error it annotates
            return ""
        return "" if errors in ("", "[]") else f" (robot errors: {errors})"

    def _run_watchdog(self) -> None:
        period = self.watchdog_timeout_s / _WATCHDOG_POLLS_PER_TIMEOUT
        while not self._closing.wait(period):
            with self._lock:
                silent_s = time.monotonic() - self._last_target_time
                if self._tracking and not self.watchdog_tripped and silent_s > self.watchdog_timeout_s:
                    # Targets stopped arriving: stay where we are instead of chasing a stale goal.
                    self.watchdog_tripped = True
                    try:
                        self._hold_measured_pose()
                    except Exception as error:
                        log.error("watchdog could not hold the arm at %s: %s", self.address, error)
                        continue
                    log.warning("no target for %.2f s: holding the arm at %s where it is", silent_s, self.address)
