"""Stand-ins shared by the actor tests: policies with the robot_stack.policy.Policy methods,
and an env factory that keeps the simulator parts within reach of an expert-replaying policy."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from robot_stack.envs.franka_env import action_from_teleop
from robot_stack.hardware.interfaces import TeleopCommand
import torch

from actor.actor_loop import ActorEnvironment
from robot_stack.envs.factory import SimEnv, make_sim_env


class FakePolicy:
    """``act`` returns ``action_for(observation)`` (zeros by default); records loaded weights."""

    def __init__(self, action_dim: int = 4, action_for=None):
        self.action_dim = action_dim
        self.action_for = action_for
        self.loaded: list[dict[str, torch.Tensor]] = []
        self.calls = 0

    def act(self, observation: dict, deterministic: bool, rng: np.random.Generator) -> np.ndarray:
        self.calls += 1
        if self.action_for is not None:
            return np.asarray(self.action_for(observation), dtype=np.float32)
        return np.zeros(self.action_dim, np.float32)

    def load_weights(self, tensors: dict[str, torch.Tensor]) -> None:
        self.loaded.append(dict(tensors))

    def weights(self) -> dict[str, torch.Tensor]:
        return {"w": torch.zeros(3)}


class SimHolder:
    """Builds the simulated env (as the actor's and the evaluation's env factories) and
    keeps it, so a policy can ask the scripted expert what it would do."""

    def __init__(self) -> None:
        self.sim: Optional[SimEnv] = None

    def env(self, config) -> Any:
        self.sim = make_sim_env(config)
        return self.sim.env

    def actor_environment(self, config, rng) -> ActorEnvironment:
        return ActorEnvironment(self.env(config), intervention=None)

    def expert_action(self, observation: dict) -> np.ndarray:
        """The expert's action in the env's action layout (its twist may be translation only)."""
        state = self.sim.backend.read_state()
        action = self.sim.expert.act(state.tcp_position_m, state.tcp_rotation, state.gripper_width_m)
        command = TeleopCommand(twist=action[:6], gripper=float(action[6]) if action.shape[0] > 6 else None, intervening=True)
        return action_from_teleop(command, self.sim.env.action_dim)

    def expert_policy(self, action_dim: int = 4) -> FakePolicy:
        return FakePolicy(action_dim, self.expert_action)


class StampedEnv:
    """Wraps an env so that every observation it hands out carries a running number in
    state[0] (resets count too): the stream a learner stores then shows any loss, duplicate
    or reordering of transitions."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.stamped = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.env, name)

    def _stamp(self, observation: dict) -> dict:
        state = np.array(observation["state"], dtype=np.float32, copy=True)
        state[0] = self.stamped
        self.stamped += 1
        return {**observation, "state": state}

    def reset(self, **kwargs):
        observation, info = self.env.reset(**kwargs)
        return self._stamp(observation), info

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        return self._stamp(observation), reward, terminated, truncated, info
