"""The scripted teleoperator: the scripted expert behind the TeleopDevice interface.

In simulation it stands in for a human with a SpaceMouse: it produces actions in the
same units a SpaceMouse reading is mapped to, with Gaussian noise (``expert_noise_std``)
so recorded demos are human-like rather than perfectly repeatable.
"""

from __future__ import annotations

import numpy as np

from robot_stack.config.schema import TeleopConfig
from robot_stack.hardware.interfaces import RobotBackend, TeleopCommand


class ScriptedTeleop:
    def __init__(self, expert, backend: RobotBackend, config: TeleopConfig, rng: np.random.Generator):
        if config.kind != "scripted":
            raise ValueError(f"ScriptedTeleop needs a teleop config of kind 'scripted', got '{config.kind}'")
        self.expert = expert
        self.backend = backend
        self.noise_std = config.expert_noise_std
        self.rng = rng

    def reset(self) -> None:
        self.expert.reset()

    def read(self) -> TeleopCommand:
        state = self.backend.read_state()
        action = self.expert.act(state.tcp_position_m, state.tcp_rotation, state.gripper_width_m)
        twist = action[:6]
        if self.noise_std > 0:
            twist = twist + self.rng.normal(0.0, self.noise_std, 6)
        twist = np.clip(twist, -1.0, 1.0)
        gripper = float(action[6]) if action.shape[0] > 6 else None
        return TeleopCommand(twist=twist, gripper=gripper, intervening=True)

    def close(self) -> None:
        pass

