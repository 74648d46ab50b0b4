"""A scripted stand-in for a person demonstrating with a SpaceMouse, for RLDG's comparison
of a generalist trained on RL rollouts against one trained on human demonstrations.

People teleoperating an arm do not move like the scripted expert: they move at their own,
uneven speed, their hand error drifts slowly (a push held a little off-axis, then corrected),
and they stop to look. This demonstrator is the task's expert with exactly those properties,
each set in the experiment file (``human_like_demos``):

    twist_t = clip(speed * expert_t + drift_t + noise_t, -1, 1),   zero while paused
    drift_t = phi * drift_{t-1} + sqrt(1 - phi^2) * drift_std * N(0, I),  phi = exp(-dt / tau)

``speed`` is drawn per episode from ``speed_range``; a pause starts with probability
``pause_probability`` per step and lasts ``pause_steps`` steps (the gripper command is held).
The expert re-derives its phase from the world every step, so it recovers from the errors
it is given, as a person does.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from robot_stack.config.rldg import HumanLikeDemosConfig
from robot_stack.hardware.interfaces import RobotBackend, TeleopCommand


class HumanLikeTeleop:
    def __init__(self, expert, backend: RobotBackend, config: HumanLikeDemosConfig, control_rate_hz: float, rng: np.random.Generator):
        self.expert = expert
        self.backend = backend
        self.config = config
        self.rng = rng
        self.phi = math.exp(-1.0 / (control_rate_hz * config.drift_time_constant_s))
        self.speed = 1.0
        self.drift = np.zeros(6)
        self.paused_steps = 0
        self.gripper: Optional[float] = None

    def reset(self) -> None:
        self.expert.reset()
        self.speed = float(self.rng.uniform(*self.config.speed_range))
        self.drift = self.rng.normal(0.0, self.config.drift_std, 6)
        self.paused_steps = 0
        self.gripper = None

    def read(self) -> TeleopCommand:
        c = self.config
        if self.paused_steps == 0 and self.rng.random() < c.pause_probability:
            self.paused_steps = int(self.rng.integers(c.pause_steps[0], c.pause_steps[1] + 1))
        self.drift = self.phi * self.drift + math.sqrt(1.0 - self.phi**2) * self.rng.normal(0.0, c.drift_std, 6)
        if self.paused_steps > 0:
            self.paused_steps -= 1
            return TeleopCommand(twist=np.zeros(6), gripper=self.gripper, intervening=True)
        state = self.backend.read_state()
        action = self.expert.act(state.tcp_position_m, state.tcp_rotation, state.gripper_width_m)
        twist = self.speed * action[:6] + self.drift + self.rng.normal(0.0, c.noise_std, 6)
        if action.shape[0] > 6:
            self.gripper = float(action[6])
        return TeleopCommand(twist=np.clip(twist, -1.0, 1.0), gripper=self.gripper, intervening=True)

    def close(self) -> None:
        pass
