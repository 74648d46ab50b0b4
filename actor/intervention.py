"""Who acts this step: the policy, or a teleoperator stepping in.

Every intervention source answers one question per step, ``decide(observation,
policy_action, env_step)``: the action that replaces the policy's, or None when the
policy acts. ``reset()`` comes at each episode start.

- ``HumanIntervention``: a person with a teleop device (SpaceMouse). Whenever the device
  says the operator is moving it (beyond its deadzone) or pressing a button, the device's
  action replaces the policy's, for as long as they keep at it (HIL-SERL). A device that
  drops out ends the intervention: the policy acts, and the operator is told (logged at
  the first failed reading and every few seconds while it lasts) until it is back.
- ``ScriptedIntervention``: the scripted teleoperator that stands in for that person in
  simulation. It watches the policy against the (noisy) scripted expert and steps in the
  way a human supervisor does: not at the first wobble, but once the policy has gone
  astray for a few steps; less and less often as the session goes on (the HIL-SERL
  operator intervenes a lot early and rarely late); and then it drives for a burst of
  steps rather than a single one, to bring the robot back somewhere useful.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Mapping, Optional, Protocol

import numpy as np

from robot_stack.config.schema import ScriptedInterventionConfig
from robot_stack.data.spec import GRIPPER_THRESHOLD
from robot_stack.envs.franka_env import action_from_reading, action_from_teleop
from robot_stack.hardware.interfaces import TeleopDevice, TeleopDisconnected

log = logging.getLogger(__name__)

class Intervention(Protocol):
    enabled: bool

    def reset(self) -> None: ...

    def decide(self, observation: Mapping[str, Any], policy_action: np.ndarray, env_step: int) -> Optional[np.ndarray]: ...


class HumanIntervention:
    #: While the device stays disconnected, the error is repeated this often (s).
    REPEAT_ERROR_S = 5.0

    def __init__(self, device: TeleopDevice, env_action_dim: int, enabled: bool = True):
        self.device = device
        self.env_action_dim = env_action_dim
        self.enabled = enabled
        self.disconnected_steps = 0
        self._last_error_at: float | None = None

    def reset(self) -> None:
        pass

    def decide(self, observation: Mapping[str, Any], policy_action: np.ndarray, env_step: int) -> Optional[np.ndarray]:
        if not self.enabled:
            return None
        try:
            command = self.device.read()
        except TeleopDisconnected as error:
            self.disconnected_steps += 1
            now = time.monotonic()
            if self._last_error_at is None or now - self._last_error_at >= self.REPEAT_ERROR_S:
                log.error("teleop device lost, the policy acts alone until it is back: %s", error)
                self._last_error_at = now
            return None
        if self._last_error_at is not None:
            log.warning("teleop device back after %d step(s) without it", self.disconnected_steps)
            self._last_error_at, self.disconnected_steps = None, 0
        # A gripper request is a button press: it is an intervention even with the puck still.
        if not (command.intervening or command.gripper is not None):
            return None
        return action_from_teleop(command, self.env_action_dim).astype(np.float32)


def intervention_rate(config: ScriptedInterventionConfig, env_steps: int) -> float:
    """Probability of stepping in once the policy strayed, after ``env_steps`` env steps."""
    decay = math.exp(-env_steps / config.decay_env_steps)
    return config.final_rate + (config.initial_rate - config.final_rate) * decay


def gripper_closed_after(command: float | None, closed: bool) -> bool:
    """The gripper state a command leaves (the env's thresholds; between them: keep)."""
    if command is None:
        return closed
    if command >= GRIPPER_THRESHOLD:
        return True
    if command <= -GRIPPER_THRESHOLD:
        return False
    return closed


class ScriptedIntervention:
    """The scripted teleoperator as a supervisor of the policy.

    ``teleop`` is a ``robot_stack.sim.teleop.ScriptedTeleop`` or a gymnasium env's
    ``ExpertTeleop`` (anything whose ``read()`` gives the expert's noisy command, as a
    TeleopCommand or as the env action, and whose ``reset()`` restarts the expert).
    ``binary_gripper``: whether the action's last entry is a gripper command (default: the
    Franka's layouts, 4 and 7 entries). It is
    read every step, whether it steps in or not: the expert keeps track of the episode
    (e.g. how long the fingers have been closing), and a human watches all the time too.

    The policy strays when the translation parts of its action and the expert's are more
    than ``stray_threshold`` apart (L2, action units), or when the gripper would end up in
    a different state (open/closed) than the expert's command leaves it. After
    ``stray_steps`` strayed steps in a row the operator steps in with probability
    ``intervention_rate(config, env_step)``; if it does not, the count starts over (the
    next chance comes after another ``stray_steps`` strayed steps). Once in, it drives for
    ``burst_steps`` steps, and never for more than ``max_fraction`` of the episode's steps.
    """

    def __init__(
        self,
        teleop,
        config: ScriptedInterventionConfig,
        rng: np.random.Generator,
        env_action_dim: int,
        max_episode_steps: int,
        enabled: bool = True,
        binary_gripper: Optional[bool] = None,
    ):
        self.teleop = teleop
        self.config = config
        self.rng = rng
        self.env_action_dim = env_action_dim
        self.binary_gripper = env_action_dim in (4, 7) if binary_gripper is None else binary_gripper
        self.max_intervention_steps = int(math.floor(config.max_fraction * max_episode_steps))
        self.enabled = enabled
        self.reset()

    def reset(self) -> None:
        self.teleop.reset()
        self.strayed_steps = 0
        self.burst_left = 0
        self.episode_intervention_steps = 0
        # Reset opens a binary gripper; the command history of this episode decides it from then on.
        self._gripper_closed = not self.binary_gripper

    def decide(self, observation: Mapping[str, Any], policy_action: np.ndarray, env_step: int) -> Optional[np.ndarray]:
        expert_action = action_from_reading(self.teleop.read(), self.env_action_dim).astype(np.float32)
        policy_action = np.asarray(policy_action, dtype=np.float32)
        # The expert's gripper entry: 0 (between the thresholds) keeps, as a command of None does.
        expert_gripper = float(expert_action[-1]) if self.binary_gripper else None
        chosen = self._choose(expert_action, expert_gripper, policy_action, env_step) if self.enabled else None
        executed = chosen if chosen is not None else policy_action
        if self.binary_gripper:
            self._gripper_closed = gripper_closed_after(float(executed[-1]), self._gripper_closed)
        return chosen

    def _choose(
        self, expert_action: np.ndarray, expert_gripper: float | None, policy_action: np.ndarray, env_step: int
    ) -> Optional[np.ndarray]:
        room = self.episode_intervention_steps < self.max_intervention_steps
        if self.burst_left > 0 and room:
            return self._drive(expert_action)
        self.burst_left = 0
        if self._strays(expert_action, expert_gripper, policy_action):
            self.strayed_steps += 1
        else:
            self.strayed_steps = 0
        if self.strayed_steps < self.config.stray_steps or not room:
            return None
        self.strayed_steps = 0
        if self.rng.random() >= intervention_rate(self.config, env_step):
            return None
        self.burst_left = self.config.burst_steps
        return self._drive(expert_action)

    def _drive(self, expert_action: np.ndarray) -> np.ndarray:
        self.burst_left -= 1
        self.episode_intervention_steps += 1
        return expert_action

    def _strays(self, expert_action: np.ndarray, expert_gripper: float | None, policy_action: np.ndarray) -> bool:
        distance = float(np.linalg.norm(policy_action[:3] - expert_action[:3]))
        if not distance <= self.config.stray_threshold:  # a NaN action strays too
            return True
        if not self.binary_gripper:
            return False
        closed = self._gripper_closed
        return gripper_closed_after(float(policy_action[-1]), closed) != gripper_closed_after(expert_gripper, closed)
