"""What a task's observations and actions look like, from its config alone.

The learner runs on another machine than the robot and never builds the env, yet it must
allocate its replay buffer and check each actor's handshake against the same shapes the
env produces: both come from here.
"""

from __future__ import annotations

import numpy as np

from robot_stack.config.schema import TaskConfig
from robot_stack.transport.messages import ArraySpec

STATE_KEY_SIZES = {"tcp_pose": 6, "tcp_velocity": 6, "tcp_wrench": 6, "gripper_width": 1, "object_position": 3}


def state_dim(config: TaskConfig) -> int:
    return sum(STATE_KEY_SIZES[key] for key in config.task.observation.state)


def env_action_dim(config: TaskConfig) -> int:
    """End-effector twist (6-D, or 3-D translation when the policy does not control the
    rotation), plus the gripper command for a binary gripper."""
    twist = 6 if config.task.policy_controls_rotation else 3
    return twist + (1 if config.task.gripper_mode == "binary" else 0)


def observation_spec(config: TaskConfig) -> dict[str, ArraySpec]:
    """Flat observation keys: ``state`` and ``images/<camera>`` (uint8 HxWx3)."""
    spec = {"state": ArraySpec(np.dtype(np.float32).str, (state_dim(config),))}
    for name in config.task.observation.images:
        height, width = config.cameras.cameras[name].output_size_hw
        spec[f"images/{name}"] = ArraySpec(np.dtype(np.uint8).str, (int(height), int(width), 3))
    return spec


def action_spec(config: TaskConfig) -> dict[str, ArraySpec]:
    return {"actions": ArraySpec(np.dtype(np.float32).str, (env_action_dim(config),))}
