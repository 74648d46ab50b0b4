"""Cartesian impedance control: the pure law shared by the simulated and the real arm."""

from robot_stack.control.impedance import (
    FRANKA_TORQUE_LIMITS_NM,
    PSEUDOINVERSE_DAMPING,
    ArmState,
    CartesianTarget,
    ImpedanceGains,
    ImpedanceResult,
    impedance_torques,
)
from robot_stack.control.rotations import (
    matrix_from_rotvec,
    matrix_from_rpy,
    matrix_to_quat,
    quat_to_matrix,
    rotvec_from_matrix,
    rpy_from_matrix,
    wrap_angle,
)
from robot_stack.control.safety import SafetyBox

__all__ = [
    "FRANKA_TORQUE_LIMITS_NM",
    "PSEUDOINVERSE_DAMPING",
    "ArmState",
    "CartesianTarget",
    "ImpedanceGains",
    "ImpedanceResult",
    "SafetyBox",
    "impedance_torques",
    "matrix_from_rotvec",
    "matrix_from_rpy",
    "matrix_to_quat",
    "quat_to_matrix",
    "rotvec_from_matrix",
    "rpy_from_matrix",
    "wrap_angle",
]
