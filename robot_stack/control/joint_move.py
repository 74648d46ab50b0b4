"""Joint moves (resets to the home pose) under this project's own torque control: a
minimum-jerk interpolation of the joint positions tracked by a joint impedance. Used by the
simulated arm and by the libfranka_torque driver; franky's driver has its own joint motion."""

from __future__ import annotations

import numpy as np

# Stiff enough to track a slow interpolated reference, damped near critically.
JOINT_MOVE_STIFFNESS = np.array([600.0, 600.0, 600.0, 600.0, 250.0, 150.0, 100.0])
JOINT_MOVE_DAMPING = np.array([50.0, 50.0, 50.0, 50.0, 30.0, 25.0, 10.0])
# Time the joint impedance keeps pulling at the goal after the interpolation ends.
JOINT_MOVE_SETTLE_S = 0.1


def minimum_jerk_reference(q_start: np.ndarray, q_goal: np.ndarray, elapsed_s: float, duration_s: float) -> np.ndarray:
    """The joint reference ``elapsed_s`` into a move of ``duration_s`` (at rest at both ends)."""
    s = min(1.0, max(0.0, elapsed_s / duration_s)) if duration_s > 0 else 1.0
    blend = 10 * s**3 - 15 * s**4 + 6 * s**5
    return q_start + blend * (q_goal - q_start)


def joint_move_torques(q_reference: np.ndarray, q: np.ndarray, dq: np.ndarray, coriolis: np.ndarray) -> np.ndarray:
    """Joint impedance torques towards the reference (gravity is the robot's own business)."""
    return JOINT_MOVE_STIFFNESS * (q_reference - q) - JOINT_MOVE_DAMPING * dq + coriolis
