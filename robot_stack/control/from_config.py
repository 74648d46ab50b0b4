"""Control objects built from a task's YAML sections: the gains and the safety box the law
runs with. The simulated and the real arm both build them here, so a YAML means the same
law on either; the law itself (``impedance``, ``safety``) stays free of the config schema."""

from __future__ import annotations

import numpy as np

from robot_stack.config.schema import ImpedanceConfig, RobotConfig, TaskSpec
from robot_stack.control.impedance import ImpedanceGains
from robot_stack.control.rotations import matrix_from_rpy
from robot_stack.control.safety import SafetyBox


def impedance_gains_from_config(robot: RobotConfig, impedance: ImpedanceConfig | None = None) -> ImpedanceGains:
    g = impedance or robot.impedance
    return ImpedanceGains(
        stiffness=np.array([g.translational_stiffness_n_per_m] * 3 + [g.rotational_stiffness_nm_per_rad] * 3),
        damping=np.array([g.translational_damping_ns_per_m] * 3 + [g.rotational_damping_nms_per_rad] * 3),
        error_clip=np.array(g.translational_error_clip_m + g.rotational_error_clip_rad),
        nullspace_stiffness=g.nullspace_stiffness_nm_per_rad,
        torque_rate_limit_nm=g.torque_rate_limit_nm_per_cycle,
        torque_limits_nm=np.array(robot.torque_limits_nm),
    )


def safety_box_from_config(task: TaskSpec) -> SafetyBox:
    """The task's safety box; its rpy limits are about the task's reset orientation."""
    box = task.safety_box
    return SafetyBox(
        xyz_min_m=np.array(box.xyz_min_m),
        xyz_max_m=np.array(box.xyz_max_m),
        rpy_min_rad=np.array(box.rpy_min_rad),
        rpy_max_rad=np.array(box.rpy_max_rad),
        reference_rotation=matrix_from_rpy(np.array(task.reset.tcp_rpy_rad)),
    )
