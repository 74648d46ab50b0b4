"""Specification of the control objects built from a task's YAML sections."""

import math

import numpy as np

from robot_stack.config.schema import ResetConfig, SafetyBoxConfig, TaskSpec
from robot_stack.control import matrix_from_rpy
from robot_stack.control.from_config import safety_box_from_config


def test_the_safety_box_is_the_task_sections_box_about_its_reset_orientation():
    box = SafetyBoxConfig(xyz_min_m=(0.35, -0.1, 0.05), xyz_max_m=(0.65, 0.1, 0.3))
    reset = ResetConfig(tcp_position_m=(0.5, 0.0, 0.2), tcp_rpy_rad=(math.pi, 0.0, 0.4))

    safety = safety_box_from_config(TaskSpec(name="t", safety_box=box, reset=reset))

    np.testing.assert_allclose(safety.xyz_min_m, (0.35, -0.1, 0.05))
    np.testing.assert_allclose(safety.xyz_max_m, (0.65, 0.1, 0.3))
    np.testing.assert_allclose(safety.reference_rotation, matrix_from_rpy(np.array([math.pi, 0.0, 0.4])))
