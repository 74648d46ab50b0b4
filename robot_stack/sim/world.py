"""The MuJoCo model and data of one simulated workcell, with the indices everyone needs."""

from __future__ import annotations

import mujoco
import numpy as np

from robot_stack.config.schema import RobotConfig, SimConfig
from robot_stack.sim.scene import build_scene_xml

ARM_JOINTS = tuple(f"joint{i}" for i in range(1, 8))
FINGER_JOINTS = ("finger_left", "finger_right")


class SimWorld:
    """Owns ``MjModel``/``MjData``; the backend, the cameras and the task scene all read
    and write this one world, so images, proprioception and ground truth always agree."""

    def __init__(self, robot: RobotConfig, sim: SimConfig):
        self.robot_config = robot
        self.sim_config = sim
        self.scene_xml = build_scene_xml(robot, sim)
        self.model = mujoco.MjModel.from_xml_string(self.scene_xml.xml)
        self.data = mujoco.MjData(self.model)
        m = self.model
        self.arm_qpos = np.array([m.jnt_qposadr[m.joint(j).id] for j in ARM_JOINTS])
        self.arm_dofs = np.array([m.jnt_dofadr[m.joint(j).id] for j in ARM_JOINTS])
        self.finger_qpos = np.array([m.jnt_qposadr[m.joint(j).id] for j in FINGER_JOINTS])
        self.finger_dofs = np.array([m.jnt_dofadr[m.joint(j).id] for j in FINGER_JOINTS])
        self.arm_actuators = np.array([m.actuator(f"motor{i}").id for i in range(1, 8)])
        self.gripper_actuator = m.actuator("gripper").id
        self.tcp_site = m.site("tcp").id
        # Arm dofs come first in the tree, so contiguous slices are valid views.
        assert np.array_equal(self.arm_dofs, np.arange(7)) and np.array_equal(self.arm_qpos, np.arange(7))
        self.restore_initial_state()

    def restore_initial_state(self, gripper_width_m: float | None = None) -> None:
        """Back to time zero: arm at home, objects where the MJCF put them. A seeded episode
        that starts from here replays exactly (MuJoCo is deterministic on one thread)."""
        mujoco.mj_resetData(self.model, self.data)
        width = self.robot_config.gripper.max_width_m if gripper_width_m is None else gripper_width_m
        self.set_arm_configuration(np.asarray(self.robot_config.home_joint_positions_rad), gripper_width_m=width)

    @property
    def time_s(self) -> float:
        return float(self.data.time)

    @property
    def physics_timestep_s(self) -> float:
        return float(self.model.opt.timestep)

    def set_arm_configuration(self, q_rad: np.ndarray, gripper_width_m: float) -> None:
        """Teleport the arm (simulation set-up only; motion goes through the backend)."""
        d = self.data
        d.qpos[:7] = q_rad
        d.qvel[:7] = 0.0
        half = np.clip(gripper_width_m / 2, 0.0, 0.04)
        d.qpos[self.finger_qpos] = half
        d.qvel[self.finger_dofs] = 0.0
        d.ctrl[self.gripper_actuator] = half
        d.ctrl[self.arm_actuators] = 0.0
        mujoco.mj_forward(self.model, d)

    def tcp_pose(self) -> tuple[np.ndarray, np.ndarray]:
        return self.data.site_xpos[self.tcp_site].copy(), self.data.site_xmat[self.tcp_site].reshape(3, 3).copy()

    def gripper_width_m(self) -> float:
        return float(self.data.qpos[self.finger_qpos].sum())
