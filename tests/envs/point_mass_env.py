"""A gymnasium env that has nothing to do with the project's simulator: a point in the plane
driven towards a goal, in plain numpy. Tasks name it as ``point_mass_env:make_point_mass``
(with this folder on the Python path), with ``point_mass_env:make_expert`` as its expert.

State: the goal relative to the point (2) and the point's position (2). Action: the point's
velocity in [-1, 1]^2, times ``speed`` per step. Success: within ``tolerance`` of the goal;
reward 1 then, and the episode terminates.
"""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np


class PointMass(gym.Env):
    def __init__(self, speed: float = 0.1, tolerance: float = 0.1, flat_observation: bool = False):
        self.speed = speed
        self.tolerance = tolerance
        self.flat_observation = flat_observation
        state = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
        self.observation_space = state if flat_observation else gym.spaces.Dict({"state": state})
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.position = np.zeros(2)
        self.goal = np.zeros(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position = self.np_random.uniform(-0.8, 0.8, 2)
        self.goal = self.np_random.uniform(-0.8, 0.8, 2)
        return self._observation(), {"success": self._reached()}

    def step(self, action):
        self.position = np.clip(self.position + self.speed * np.clip(action, -1.0, 1.0), -1.0, 1.0)
        success = self._reached()
        return self._observation(), float(success), success, False, {"success": success, "distance": self._distance()}

    def _distance(self) -> float:
        return float(np.linalg.norm(self.goal - self.position))

    def _reached(self) -> bool:
        return self._distance() < self.tolerance

    def _observation(self):
        state = np.concatenate([self.goal - self.position, self.position]).astype(np.float32)
        return state if self.flat_observation else {"state": state}


class PointMassExpert:
    """Heads straight for the goal, at full speed until it is close."""

    def __init__(self, env: PointMass):
        self.speed = env.speed

    def reset(self) -> None:
        pass

    def act(self, observation) -> np.ndarray:
        to_goal = np.asarray(observation["state"][:2], dtype=np.float64)
        return np.clip(to_goal / self.speed, -1.0, 1.0)


def make_point_mass(**kwargs) -> PointMass:
    return PointMass(**kwargs)


def make_expert(env: PointMass) -> PointMassExpert:
    return PointMassExpert(env)


class PointMassPerson:
    """Stands in for a person with a device on their own robot (``env.teleop``): takes over for
    a burst of steps whenever the policy's action heads away from the goal, and drives
    straight at it. When closed (the env closes it) it appends its count of interventions to
    ``closed_log``."""

    burst_steps = 5

    def __init__(self, env: PointMass, rng: np.random.Generator, closed_log: str = ""):
        self.expert = PointMassExpert(env)
        self.closed_log = closed_log
        self.enabled = True
        self.steps_left = 0
        self.interventions = 0

    def reset(self) -> None:
        self.steps_left = 0

    def decide(self, observation, policy_action, env_step):
        to_goal = np.asarray(observation["state"][:2], dtype=np.float64)
        if self.steps_left == 0 and float(np.dot(to_goal, policy_action)) <= 0.0:
            self.steps_left = self.burst_steps
            self.interventions += 1
        if self.steps_left == 0:
            return None
        self.steps_left -= 1
        return self.expert.act(observation)

    def close(self) -> None:
        if self.closed_log:
            with open(self.closed_log, "a") as handle:
                handle.write(f"closed after {self.interventions} interventions\n")


def make_person(env: PointMass, rng: np.random.Generator) -> PointMassPerson:
    # A test reads what the actor process's person did from this file.
    return PointMassPerson(env, rng, os.environ.get("POINT_MASS_PERSON_LOG", ""))
