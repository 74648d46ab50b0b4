"""The scripted reset routine a task YAML describes, run through any robot backend.

Order matters for safety on a real cell: first lift straight up (never drag an object or
a peg sideways through the scene), then open, then a joint-space move home (undoes any
nullspace drift accumulated over the episode), then a Cartesian move to the randomised
start pose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from robot_stack.config.schema import ResetConfig
from robot_stack.control.rotations import matrix_from_rpy
from robot_stack.hardware.interfaces import RobotBackend

SETTLE_POSITION_TOLERANCE_M = 0.002
SETTLE_ROTATION_TOLERANCE_RAD = 0.01
SETTLE_SPEED_TOLERANCE_M_PER_S = 0.01
_POLL_S = 0.05


class ResetTimeout(RuntimeError):
    pass


@dataclass(frozen=True)
class ResetOutcome:
    position_m: np.ndarray  # the start pose reached
    rotation: np.ndarray
    target_position_m: np.ndarray  # the randomised start pose asked for
    duration_s: float


def move_and_settle(backend: RobotBackend, position: np.ndarray, rotation: np.ndarray, timeout_s: float) -> float:
    """Set a Cartesian target and let time pass until the arm is there and still.
    Returns the time it took; raises ResetTimeout naming the remaining error."""
    status = backend.set_target(position, rotation)
    elapsed = 0.0
    while True:
        state = backend.read_state()
        position_error = float(np.linalg.norm(state.tcp_position_m - status.position_m))
        cos_angle = (np.trace(status.rotation.T @ state.tcp_rotation) - 1.0) / 2.0
        rotation_error = math.acos(min(1.0, max(-1.0, cos_angle)))
        speed = float(np.linalg.norm(state.tcp_velocity[:3]))
        if (
            position_error < SETTLE_POSITION_TOLERANCE_M
            and rotation_error < SETTLE_ROTATION_TOLERANCE_RAD
            and speed < SETTLE_SPEED_TOLERANCE_M_PER_S
        ):
            return elapsed
        if elapsed >= timeout_s:
            raise ResetTimeout(
                f"arm did not settle at {np.round(status.position_m, 4).tolist()} within {timeout_s:.1f} s: "
                f"position error {position_error * 1000:.1f} mm, rotation error {math.degrees(rotation_error):.1f} deg"
            )
        backend.set_target(status.position_m, status.rotation)  # keep the watchdog fed
        backend.advance(_POLL_S)
        elapsed += _POLL_S


class ScriptedReset:
    def __init__(self, config: ResetConfig, home_q_rad: np.ndarray, gripper_open_width_m: float):
        self.config = config
        self.home_q_rad = np.asarray(home_q_rad, dtype=float)
        self.gripper_open_width_m = gripper_open_width_m
        self.start_rotation = matrix_from_rpy(np.asarray(config.tcp_rpy_rad))
        self.start_position = np.asarray(config.tcp_position_m, dtype=float)

    def sample_start_pose(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        c = self.config
        offset = np.array(
            [
                rng.uniform(-1, 1) * c.random_xy_range_m,
                rng.uniform(-1, 1) * c.random_xy_range_m,
                rng.uniform(-1, 1) * c.random_z_range_m,
            ]
        )
        yaw = rng.uniform(-1, 1) * c.random_rz_range_rad
        return self.start_position + offset, matrix_from_rpy(np.array([0.0, 0.0, yaw])) @ self.start_rotation

    def clear_scene(self, backend: RobotBackend) -> None:
        """Lift straight up, then open the gripper (if the task asks)."""
        state = backend.read_state()
        if self.config.lift_before_reset_m > 0:
            lifted = state.tcp_position_m + np.array([0.0, 0.0, self.config.lift_before_reset_m])
            backend.set_target(lifted, state.tcp_rotation)
            backend.advance(0.3)
        if self.config.open_gripper:
            backend.set_gripper(self.gripper_open_width_m)
            backend.advance(0.2)

    def move_to_start(
        self, backend: RobotBackend, rng: np.random.Generator, joint_move_s: float = 1.0
    ) -> ResetOutcome:
        position, rotation = self.sample_start_pose(rng)
        backend.move_to_joint_positions(self.home_q_rad, joint_move_s)
        settle_s = move_and_settle(backend, position, rotation, self.config.timeout_s)
        state = backend.read_state()
        return ResetOutcome(state.tcp_position_m, state.tcp_rotation, position, joint_move_s + settle_s)

    def run(
        self, backend: RobotBackend, rng: np.random.Generator, between: Callable[[], None] | None = None
    ) -> ResetOutcome:
        """The whole routine; ``between`` runs after the scene is cleared and before the
        arm moves to the start (the simulator re-places objects there)."""
        self.clear_scene(backend)
        if between is not None:
            between()
        return self.move_to_start(backend, rng)
