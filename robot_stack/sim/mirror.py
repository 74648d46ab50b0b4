"""A read-only copy of a simulated world in another process, kept in step by its state vector.

Over ROS 2 the simulated world lives in the controller's process. The camera node renders
it, the reward service reads its ground truth and the simulated actor's scripted
teleoperator and ``object_position`` look at it, each from its own process: the controller
publishes ``world_state_vector(world)`` with every state message and each of them applies
it to a ``SimMirror`` (positions, velocities and mocap bodies; ``mj_forward`` only, no
physics). What they see is the controller's world at that instant: images, proprioception
and ground truth agree as they do in one process.
"""

from __future__ import annotations

import mujoco
import numpy as np

from robot_stack.config.schema import TaskConfig
from robot_stack.hardware.interfaces import RobotState
from robot_stack.sim.world import SimWorld


def world_state_size(world: SimWorld) -> int:
    m = world.model
    return 1 + m.nq + m.nv + 3 * m.nmocap + 4 * m.nmocap


def world_state_vector(world: SimWorld) -> np.ndarray:
    """[time, qpos, qvel, mocap_pos, mocap_quat] of the world, float64."""
    d = world.data
    return np.concatenate([[d.time], d.qpos, d.qvel, d.mocap_pos.ravel(), d.mocap_quat.ravel()])


class SimMirror:
    """The world a task YAML describes, driven only by ``apply(state_vector)``."""

    def __init__(self, config: TaskConfig):
        from robot_stack.sim.backend import SimFrankaBackend
        from robot_stack.sim.tasks import make_expert, make_task_scene

        if config.robot.backend != "sim" or config.task.sim is None:
            raise ValueError(f"task '{config.task.name}' is not simulated: there is no world to mirror")
        self.config = config
        self.world = SimWorld(config.robot, config.task.sim)
        self.scene = make_task_scene(self.world, config.task)
        self.expert = make_expert(self.scene, config.task)
        self._reader = SimFrankaBackend(self.world)  # read_state only; nothing steps this world
        self.size = world_state_size(self.world)
        self.applied = 0

    def apply(self, vector) -> None:
        v = np.asarray(vector, dtype=np.float64)
        if v.shape != (self.size,):
            raise ValueError(
                f"world state has {v.shape[0] if v.ndim == 1 else v.shape} values, this task's world needs {self.size}: "
                "the publisher runs a different task file or scene"
            )
        if not np.all(np.isfinite(v)):
            raise ValueError("world state has non-finite values; mirror left unchanged")
        m, d = self.world.model, self.world.data
        i = 1
        d.time = v[0]
        d.qpos[:] = v[i : i + m.nq]
        i += m.nq
        d.qvel[:] = v[i : i + m.nv]
        i += m.nv
        d.mocap_pos[:] = v[i : i + 3 * m.nmocap].reshape(m.nmocap, 3)
        i += 3 * m.nmocap
        d.mocap_quat[:] = v[i : i + 4 * m.nmocap].reshape(m.nmocap, 4)
        mujoco.mj_forward(m, d)
        self.applied += 1

    @property
    def time_s(self) -> float:
        return self.world.time_s

    def read_state(self) -> RobotState:
        return self._reader.read_state()

    def object_position(self) -> np.ndarray:
        return self.scene.object_position()
