"""Cartesian impedance control law: (state, target, gains) -> joint torques.

    tau = J^T (-K e - D J dq) + N (k_ns (q_ns - q) - d_ns dq) + C(q, dq) dq

then rate-limited against the previous command and clipped to the joint torque limits.
Gravity is not in the sum: the Franka (and the simulated one) compensates it itself.

The same function runs in the simulator's 1 kHz loop and mirrors the real robot's, so it
is pure (no state between calls: the caller passes back tau_previous) and cheap
(~20 us in Python; see benchmarks/bench_control_law.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from robot_stack.control.rotations import _multiply_rows_transposed, _rotvec_from_rows
from robot_stack.control.safety import SafetyBox

FRANKA_TORQUE_LIMITS_NM = (87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0)

# lambda in (J^T)^# = (J J^T + lambda I)^-1 J. Whatever lambda > 0, the projector
# N = I - J^T (J J^T + lambda I)^-1 J has eigenvalues lambda / (sigma^2 + lambda) in (0, 1],
# so the damping is not needed to keep torques bounded near a singularity; it only keeps
# the 6x6 solve well conditioned (cond <= (sigma_max^2 + lambda) / lambda ~ 1e6 for a
# Franka) while leaking just lambda / sigma^2 ~ 1e-4 of the posture torque into task
# space at sigma ~ 0.1, the smallest singular value away from singularities.
PSEUDOINVERSE_DAMPING = 1e-6
_DAMPING_MATRIX = PSEUDOINVERSE_DAMPING * np.eye(6)


@dataclass(frozen=True, eq=False)
class ImpedanceGains:
    """Gains and limits of the law; validated once here so the hot path trusts them."""

    stiffness: np.ndarray  # (6,) [N/m x3, Nm/rad x3]
    damping: np.ndarray  # (6,) [Ns/m x3, Nms/rad x3]
    # (6,) [m x3, rad x3] per-axis clip of the pose error before the gain: a far target
    # then pulls with at most stiffness * error_clip instead of a force that grows with
    # distance.
    error_clip: np.ndarray
    nullspace_stiffness: float  # Nm/rad
    nullspace_damping: float | None = None  # Nms/rad; None -> 2 sqrt(nullspace_stiffness)
    # Max change of each joint torque per control cycle (Nm): a step in the target or
    # a discontinuity in the state never reaches the motors as a torque step.
    torque_rate_limit_nm: float = 1.0
    torque_limits_nm: np.ndarray = FRANKA_TORQUE_LIMITS_NM  # (7,), Nm

    def __post_init__(self):
        for name, shape, allow_zero in (
            ("stiffness", (6,), True),
            ("damping", (6,), True),
            ("error_clip", (6,), False),
            ("torque_limits_nm", (7,), False),
        ):
            object.__setattr__(self, name, _checked_gain_array(name, getattr(self, name), shape, allow_zero))
        if self.nullspace_damping is None:
            # Critical damping for unit joint inertia.
            object.__setattr__(self, "nullspace_damping", 2.0 * math.sqrt(max(float(self.nullspace_stiffness), 0.0)))
        for name, allow_zero in (
            ("nullspace_stiffness", True),
            ("nullspace_damping", True),
            ("torque_rate_limit_nm", False),
        ):
            object.__setattr__(self, name, _checked_gain_scalar(name, getattr(self, name), allow_zero))
        # Derived once here, not on every call in the 1 kHz loop.
        object.__setattr__(self, "_negative_error_clip", -self.error_clip)
        object.__setattr__(self, "_negative_torque_limits_nm", -self.torque_limits_nm)


@dataclass(slots=True)
class ArmState:
    """Measured arm state, base frame; arrays are float64 and not copied or checked here."""

    q: np.ndarray  # (7,) rad
    dq: np.ndarray  # (7,) rad/s
    ee_position: np.ndarray  # (3,) m, TCP
    ee_rotation: np.ndarray  # (3, 3) TCP orientation
    jacobian: np.ndarray  # (6, 7) geometric TCP Jacobian, rows: linear xyz, angular xyz
    coriolis: np.ndarray  # (7,) Nm, C(q, dq) dq without gravity


@dataclass(slots=True)
class CartesianTarget:
    """Desired TCP pose in the base frame."""

    position: np.ndarray  # (3,) m, base frame
    rotation: np.ndarray  # (3, 3) base frame


class ImpedanceResult(NamedTuple):
    tau: np.ndarray  # (7,) Nm, the command to send
    target_clamped: bool  # the safety box moved the target
    error_clipped: bool  # at least one pose-error axis hit error_clip
    pose_error: np.ndarray  # (6,) [m x3, rad x3] current minus desired, after the clip


def impedance_torques(
    state: ArmState,
    target: CartesianTarget,
    gains: ImpedanceGains,
    q_nullspace: np.ndarray,
    tau_previous: np.ndarray,
    safety_box: SafetyBox | None = None,
) -> ImpedanceResult:
    """Joint torques (Nm) pulling the TCP to `target` with the impedance `gains`.

    q_nullspace (7,) rad: the posture the arm's redundant degree of freedom is pulled to.
    tau_previous (7,) Nm: the torque sent last cycle, the anchor of the rate limit (on the
    first cycle, the torque being applied, usually zeros).
    Raises ValueError naming the input if any input is NaN or infinite.
    """
    # a. Non-finite pose inputs are rejected here, before they can reach the safety box
    #    or the rotation math, whose min/max and atan2 would turn NaN or inf into a finite
    #    but meaningless target. The array inputs are checked further down, in one go.
    ee_rows, desired_rows = state.ee_rotation.tolist(), target.rotation.tolist()
    pose_values = state.ee_position.tolist() + target.position.tolist() + ee_rows[0] + ee_rows[1] + ee_rows[2]
    pose_values += desired_rows[0] + desired_rows[1] + desired_rows[2]
    if not math.isfinite(sum(pose_values)):
        _raise_for_non_finite_input(state, target, q_nullspace, tau_previous)

    # b. Clamp the target into the workspace.
    desired_position, target_clamped = target.position, False
    if safety_box is not None:
        desired_position, desired_rotation, target_clamped = safety_box.clamp(desired_position, target.rotation)
        desired_rows = desired_rotation.tolist()

    # c. Pose error, current minus desired. The orientation part is the rotation vector of
    #    R R_d^T in the base frame (the frame of J's angular rows): true radians, always
    #    the short way round, so yaw +179 deg vs -179 deg is a 2 deg error, not 358.
    position_error = (state.ee_position - desired_position).tolist()
    orientation_error = _rotvec_from_rows(_multiply_rows_transposed(ee_rows, desired_rows))
    pose_error = position_error + orientation_error

    # d. Clip each axis so the spring force never exceeds stiffness * error_clip.
    e = np.minimum(np.maximum(np.array(pose_error), gains._negative_error_clip), gains.error_clip)
    error_clipped = e.tolist() != pose_error

    J, q, dq = state.jacobian, state.q, state.dq

    # e. Cartesian spring-damper mapped to joints: the damper acts on the TCP twist J dq.
    tau_task = J.T @ (-gains.stiffness * e - gains.damping * (J @ dq))

    # f. Posture torque, projected so it produces no TCP wrench:
    #    N tau_0 = tau_0 - J^T (J J^T + lambda I)^-1 J tau_0. One 6x6 solve instead of a
    #    pseudo-inverse: no SVD, and cheaper than forming N.
    tau_posture = gains.nullspace_stiffness * (q_nullspace - q) - gains.nullspace_damping * dq
    tau_nullspace = tau_posture - J.T @ np.linalg.solve(J @ J.T + _DAMPING_MATRIX, J @ tau_posture)

    # g. Coriolis is fed forward; gravity is left to the robot's own compensation.
    tau_command = tau_task + tau_nullspace + state.coriolis

    # a. (arrays) q, dq, J, coriolis, q_nullspace and tau_previous all reach this
    #    difference through arithmetic, and arithmetic never turns NaN or inf back into a
    #    finite number (inf * 0 is NaN): one sum here checks them all for ~1 us, where a
    #    check per array costs ~7 us. It must come before the clips, which would.
    torque_step = tau_command - tau_previous
    if not math.isfinite(np.add.reduce(torque_step)):
        _raise_for_non_finite_input(state, target, q_nullspace, tau_previous)

    # h. Rate limit, then i. saturate.
    rate = gains.torque_rate_limit_nm
    tau = tau_previous + np.minimum(np.maximum(torque_step, -rate), rate)
    tau = np.minimum(np.maximum(tau, gains._negative_torque_limits_nm), gains.torque_limits_nm)

    # j. Never hand a non-finite torque to a motor, whatever the cause.
    if not math.isfinite(np.add.reduce(tau)):
        raise FloatingPointError(f"impedance law produced a non-finite torque {tau.tolist()} from finite inputs")
    return ImpedanceResult(tau, target_clamped, error_clipped, e)


def _raise_for_non_finite_input(state: ArmState, target: CartesianTarget, q_nullspace, tau_previous) -> None:
    """Slow path, run only once something is known to be non-finite: name the input."""
    inputs = {
        "target.position": target.position,
        "target.rotation": target.rotation,
        "state.q": state.q,
        "state.dq": state.dq,
        "state.ee_position": state.ee_position,
        "state.ee_rotation": state.ee_rotation,
        "state.jacobian": state.jacobian,
        "state.coriolis": state.coriolis,
        "q_nullspace": q_nullspace,
        "tau_previous": tau_previous,
    }
    for name, value in inputs.items():
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{name} is not finite: {np.asarray(value).tolist()}")
    # Finite inputs whose sum overflowed: absurd magnitudes, refused all the same.
    raise ValueError("impedance inputs overflow float64 (absurdly large values)")


def _checked_gain_array(name: str, value, shape: tuple[int, ...], allow_zero: bool) -> np.ndarray:
    array = np.array(value, dtype=float)
    if array.shape != shape:
        raise ValueError(f"ImpedanceGains.{name} must have shape {shape}, got {array.shape}")
    if not np.all(np.isfinite(array)) or np.any(array < 0.0) or (not allow_zero and np.any(array == 0.0)):
        requirement = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"ImpedanceGains.{name} must be finite and {requirement} on every axis, got {array.tolist()}")
    array.flags.writeable = False
    return array


def _checked_gain_scalar(name: str, value, allow_zero: bool) -> float:
    number = float(value)
    if not math.isfinite(number) or number < 0.0 or (not allow_zero and number == 0.0):
        requirement = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"ImpedanceGains.{name} must be finite and {requirement}, got {value!r}")
    return number
