"""Simulated task scenes: object randomisation, ground-truth success, scripted experts.

A scene reads the world's ground truth (object poses), which a real task never has:
success here is what the reward classifier learns to detect on real robots, and the
scripted expert is what stands in for a human with a SpaceMouse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco
import numpy as np

from robot_stack.config.schema import PegInsertionScene, PickCubeScene, TaskSpec
from robot_stack.control.rotations import matrix_from_rpy, rotvec_from_matrix
from robot_stack.sim.world import SimWorld

GRIPPER_OPEN = -1.0
GRIPPER_CLOSE = 1.0


@dataclass(frozen=True)
class SceneStatus:
    success: bool
    metrics: dict[str, float]


def pose_delta_action(
    position: np.ndarray,
    rotation: np.ndarray,
    goal_position: np.ndarray,
    goal_rotation: np.ndarray,
    task: TaskSpec,
    gain: float = 1.0,
) -> np.ndarray:
    """The 6-D end-effector-frame action in [-1, 1] that moves the TCP a fraction ``gain``
    of the way to a goal pose in one policy step (saturating beyond one action scale)."""
    translation = gain * rotation.T @ (goal_position - position) / task.action_scale.translation_m
    turn = gain * rotvec_from_matrix(rotation.T @ goal_rotation) / task.action_scale.rotation_rad
    return np.clip(np.concatenate([translation, turn]), -1.0, 1.0)


class PickCube:
    """Pick up the cube and lift it by ``success_lift_m``."""

    kind = "pick_cube"

    def __init__(self, world: SimWorld, scene: PickCubeScene, task: TaskSpec):
        self.world, self.scene, self.task = world, scene, task
        m = world.model
        self._joint_qpos = m.jnt_qposadr[m.joint("cube_joint").id]
        self._joint_dof = m.jnt_dofadr[m.joint("cube_joint").id]
        self._body = m.body("cube").id
        self.rest_height_m = scene.cube_edge_m / 2

    def randomise(self, rng: np.random.Generator) -> None:
        s = self.scene
        xy = np.asarray(s.cube_xy_center_m) + rng.uniform(-1, 1, 2) * np.asarray(s.cube_xy_half_range_m)
        yaw = rng.uniform(-1, 1) * s.cube_yaw_half_range_rad
        d = self.world.data
        d.qpos[self._joint_qpos : self._joint_qpos + 3] = [xy[0], xy[1], self.rest_height_m]
        d.qpos[self._joint_qpos + 3 : self._joint_qpos + 7] = [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]
        d.qvel[self._joint_dof : self._joint_dof + 6] = 0.0
        mujoco.mj_forward(self.world.model, d)

    def cube_pose(self) -> tuple[np.ndarray, np.ndarray]:
        d = self.world.data
        return d.xpos[self._body].copy(), d.xmat[self._body].reshape(3, 3).copy()

    def object_position(self) -> np.ndarray:
        return self.cube_pose()[0]

    def status(self) -> SceneStatus:
        position, _ = self.cube_pose()
        lift = float(position[2] - self.rest_height_m)
        return SceneStatus(success=lift >= self.scene.success_lift_m, metrics={"cube_lift_m": lift})


class PegInsertion:
    """Insert the held peg into the hole by ``success_depth_m``."""

    kind = "peg_insertion"

    def __init__(self, world: SimWorld, scene: PegInsertionScene, task: TaskSpec):
        self.world, self.scene, self.task = world, scene, task
        m = world.model
        self._hole_mocap = m.body_mocapid[m.body("hole").id]
        self._peg_tip = m.site("peg_tip").id

    def randomise(self, rng: np.random.Generator) -> None:
        s = self.scene
        xy = np.asarray(s.hole_xy_center_m) + rng.uniform(-1, 1, 2) * np.asarray(s.hole_xy_half_range_m)
        self.world.data.mocap_pos[self._hole_mocap] = [xy[0], xy[1], 0.0]
        mujoco.mj_forward(self.world.model, self.world.data)

    def hole_position(self) -> np.ndarray:
        return self.world.data.mocap_pos[self._hole_mocap].copy()

    def object_position(self) -> np.ndarray:
        return self.hole_position()

    def peg_tip_position(self) -> np.ndarray:
        return self.world.data.site_xpos[self._peg_tip].copy()

    def status(self) -> SceneStatus:
        tip = self.peg_tip_position()
        hole = self.hole_position()
        depth = float(self.scene.hole_depth_m - (tip[2] - hole[2]))
        lateral = float(np.max(np.abs(tip[:2] - hole[:2])))
        inside = lateral <= self.scene.peg_radius_m + self.scene.hole_clearance_m
        return SceneStatus(
            success=inside and depth >= self.scene.success_depth_m,
            metrics={"insertion_depth_m": depth, "peg_lateral_offset_m": lateral},
        )


def make_task_scene(world: SimWorld, task: TaskSpec) -> PickCube | PegInsertion:
    scene = world.sim_config.scene
    if isinstance(scene, PickCubeScene):
        return PickCube(world, scene, task)
    return PegInsertion(world, scene, task)


# --------------------------------------------------------------------------- experts


class PickCubeExpert:
    """Hover over the cube, align the fingers with a cube face, descend, close, lift.

    The phase is re-derived from the world every step (only the wait for the fingers to
    close is remembered), so the expert can take over mid-episode from any state, as a
    scripted teleoperator must.
    """

    HOVER_ABOVE_M = 0.06
    XY_TOLERANCE_M = 0.006
    Z_TOLERANCE_M = 0.008

    def __init__(self, scene: PickCube, reset_rpy_rad: tuple[float, float, float]):
        self.scene = scene
        self.down = matrix_from_rpy(np.asarray(reset_rpy_rad))
        self._closing_steps = 0

    def reset(self) -> None:
        self._closing_steps = 0

    def act(self, position: np.ndarray, rotation: np.ndarray, gripper_width_m: float) -> np.ndarray:
        cube_position, cube_rotation = self.scene.cube_pose()
        edge = self.scene.scene.cube_edge_m
        task = self.scene.task
        # The cube looks the same every quarter turn: turn the hand by the smallest yaw.
        cube_yaw = math.atan2(cube_rotation[1, 0], cube_rotation[0, 0])
        hand_yaw = math.atan2(rotation[1, 0], rotation[0, 0]) - math.atan2(self.down[1, 0], self.down[0, 0])
        yaw = hand_yaw + ((cube_yaw - hand_yaw + math.pi / 4) % (math.pi / 2) - math.pi / 4)
        goal_rotation = matrix_from_rpy(np.array([0.0, 0.0, yaw])) @ self.down

        offset = cube_position - position
        near_cube = np.linalg.norm(offset[:2]) < edge / 2 and abs(offset[2]) < edge / 2
        holding = near_cube and gripper_width_m < edge + 0.004 and gripper_width_m > edge - 0.012
        if holding or self._closing_steps > 0:
            if holding or self._closing_steps >= 6:
                self._closing_steps = 0
            else:
                self._closing_steps += 1
                return np.concatenate([np.zeros(6), [GRIPPER_CLOSE]])
            lift_goal = np.array([position[0], position[1], self.scene.rest_height_m + self.scene.scene.success_lift_m + 0.05])
            return np.concatenate([pose_delta_action(position, rotation, lift_goal, goal_rotation, task), [GRIPPER_CLOSE]])

        if gripper_width_m < edge + 0.01:
            # Closed on nothing: open, and back off upwards while doing so.
            up = position + np.array([0.0, 0.0, 0.02])
            return np.concatenate([pose_delta_action(position, rotation, up, goal_rotation, task), [GRIPPER_OPEN]])

        xy_error = np.linalg.norm(offset[:2])
        hover = cube_position + np.array([0.0, 0.0, self.HOVER_ABOVE_M])
        if xy_error > self.XY_TOLERANCE_M and position[2] < cube_position[2] + self.HOVER_ABOVE_M / 2:
            # Low and off to the side: rise before moving sideways, so the fingers never
            # sweep the cube away.
            goal = np.array([position[0], position[1], hover[2]])
        elif xy_error > self.XY_TOLERANCE_M:
            goal = hover
        else:
            goal = cube_position.copy()
        action = pose_delta_action(position, rotation, goal, goal_rotation, task)
        at_grasp_height = abs(position[2] - cube_position[2]) < self.Z_TOLERANCE_M
        if xy_error <= self.XY_TOLERANCE_M and at_grasp_height:
            self._closing_steps = 1
            return np.concatenate([np.zeros(6), [GRIPPER_CLOSE]])
        return np.concatenate([action, [GRIPPER_OPEN]])


class PegInsertionExpert:
    """Bring the peg tip over the hole, align it, then descend straight in.

    Fine alignment corrects half the remaining error per step: the impedance-controlled
    arm lags a policy step behind, and full corrections would overshoot by about a
    millimetre, which is most of the clearance.
    """

    ABOVE_HOLE_M = 0.01
    DESCEND_XY_TOLERANCE_M = 0.0008
    FINE_GAIN = 0.5
    FINE_RANGE_M = 0.01

    def __init__(self, scene: PegInsertion, reset_rpy_rad: tuple[float, float, float]):
        self.scene = scene
        self.down = matrix_from_rpy(np.asarray(reset_rpy_rad))

    def reset(self) -> None:
        pass

    def act(self, position: np.ndarray, rotation: np.ndarray, gripper_width_m: float) -> np.ndarray:
        s = self.scene.scene
        tip = self.scene.peg_tip_position()
        hole = self.scene.hole_position()
        hole_top = hole[2] + s.hole_depth_m
        tip_offset = tip - position
        xy_error = float(np.linalg.norm(tip[:2] - hole[:2]))
        inside = tip[2] < hole_top and xy_error < s.hole_clearance_m + 0.0005
        if inside or xy_error <= self.DESCEND_XY_TOLERANCE_M:
            tip_goal = np.array([hole[0], hole[1], hole[2] + s.hole_depth_m - s.success_depth_m - 0.004])
        elif tip[2] < hole_top + 0.002:
            # Caught on the rim beside the hole: lift clear before realigning.
            tip_goal = np.array([tip[0], tip[1], hole_top + 0.004])
        else:
            tip_goal = np.array([hole[0], hole[1], max(tip[2], hole_top + 0.003) if xy_error < self.FINE_RANGE_M else hole_top + self.ABOVE_HOLE_M])
        goal = tip_goal - tip_offset
        gain = self.FINE_GAIN if xy_error < self.FINE_RANGE_M else 1.0
        correction = pose_delta_action(position, rotation, goal, self.down, self.scene.task, gain=gain)
        return correction


def make_expert(scene: PickCube | PegInsertion, task: TaskSpec) -> PickCubeExpert | PegInsertionExpert:
    if isinstance(scene, PickCube):
        return PickCubeExpert(scene, task.reset.tcp_rpy_rad)
    return PegInsertionExpert(scene, task.reset.tcp_rpy_rad)
