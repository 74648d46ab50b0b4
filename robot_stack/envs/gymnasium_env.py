"""A gymnasium env a task names (``env: {kind: gymnasium, ...}``), held to the env contract
(robot_stack/envs/contract.py): the actor, demos and evaluation use it as they use the Franka
env, through the same attributes (``action_dim``, ``binary_gripper``, ``observation_space``).

Its spaces are checked against the task's declared layout when it is built, and every reset
and step against the contract, so a broken env stops at its first bad answer with what is
wrong, rather than as a shape error deep in the learner.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import gymnasium as gym
import numpy as np

from robot_stack.config.code_references import load_code_reference
from robot_stack.config.schema import GymnasiumEnvConfig, TaskConfig, TeleopConfig
from robot_stack.envs.contract import (
    IMAGES,
    STATE,
    raise_violations,
    reset_violations,
    space_violations,
    step_violations,
)
from robot_stack.envs.franka_env import NonFiniteActionError


class GymnasiumTaskEnv:
    """The named env, its observation always a dict with "state" (float32) and, with cameras,
    "images"; episodes truncated at the task's ``max_episode_steps``; actions clipped to [-1, 1]."""

    def __init__(self, env: Any, spec: GymnasiumEnvConfig, max_episode_steps: int):
        where = f"env {spec.factory or spec.id}"
        raise_violations(where, space_violations(
            env.observation_space, env.action_space, spec.observation.state_dim, spec.observation.images, spec.action.dim,
        ))
        self.env = env
        self.where = where
        self.max_episode_steps = max_episode_steps
        self.action_dim = spec.action.dim
        self.binary_gripper = spec.action.gripper == "binary"
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.action_dim,), np.float32)
        # A bare Box observation is the state; the dict form is what every stage reads.
        self._state_only_box = isinstance(env.observation_space, gym.spaces.Box)
        state_space = env.observation_space if self._state_only_box else env.observation_space[STATE]
        spaces: dict[str, gym.Space] = {STATE: gym.spaces.Box(-np.inf, np.inf, state_space.shape, np.float32)}
        if not self._state_only_box and IMAGES in env.observation_space.spaces:
            spaces = {IMAGES: env.observation_space[IMAGES], **spaces}
        self.observation_space = gym.spaces.Dict(spaces)
        self.last_observation: Optional[dict] = None  # what an expert acting now sees
        self._steps = 0
        self._needs_reset = True
        self._closers: list[Callable[[], None]] = []

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        observation, info = self.env.reset(seed=seed, options=options)
        observation = self._as_dict(observation)
        raise_violations(self.where, reset_violations((observation, info), self.observation_space, self.binary_gripper))
        self._steps, self._needs_reset = 0, False
        self.last_observation = observation
        return observation, dict(info)

    def step(self, action):
        if self._needs_reset:
            raise RuntimeError("step() called before reset() or after the episode ended; call reset() first")
        action = np.asarray(action, dtype=np.float32)
        if action.shape != (self.action_dim,):
            raise ValueError(f"action must have shape ({self.action_dim},) for {self.where}, got shape {action.shape}")
        bad = np.flatnonzero(~np.isfinite(action))
        if bad.size:
            raise NonFiniteActionError(f"action has non-finite values at indices {bad.tolist()}: {action.tolist()}; the env was not stepped")
        observation, reward, terminated, truncated, info = self.env.step(np.clip(action, -1.0, 1.0))
        observation = self._as_dict(observation)
        raise_violations(self.where, step_violations(
            (observation, reward, terminated, truncated, info), self.observation_space, self.binary_gripper,
        ))
        self._steps += 1
        terminated = bool(terminated)
        truncated = bool(truncated) or (not terminated and self._steps >= self.max_episode_steps)
        self._needs_reset = terminated or truncated
        self.last_observation = observation
        return observation, float(reward), terminated, truncated, dict(info)

    def camera_images(self) -> dict[str, np.ndarray]:
        return dict((self.last_observation or {}).get(IMAGES, {}))

    def render(self):
        return self.env.render()

    def close(self) -> None:
        try:
            self.env.close()
        finally:
            for close in self._closers:
                close()
            self._closers = []

    def close_with(self, fn: Callable[[], None]) -> None:
        """Also run ``fn`` when the env closes (an intervention device that lives as long as the env)."""
        self._closers.append(fn)

    def _as_dict(self, observation: Any) -> Any:
        if self._state_only_box:
            return {STATE: np.asarray(observation, dtype=np.float32)}
        if isinstance(observation, dict) and STATE in observation:
            return {**observation, STATE: np.asarray(observation[STATE], dtype=np.float32)}
        return observation  # the contract check names what is wrong with it


def make_gymnasium_env(config: TaskConfig, render_mode: Optional[str] = None) -> GymnasiumTaskEnv:
    """The env ``config.env`` names: its factory called with its kwargs, or gymnasium.make of its id."""
    spec = config.env
    if spec is None:
        raise ValueError(f"task '{config.task.name}' names no gymnasium env (no 'env' section)")
    kwargs = dict(spec.kwargs)
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    if spec.factory is not None:
        factory = load_code_reference(spec.factory, "env.factory")
        if not callable(factory):
            raise ValueError(f"env.factory {spec.factory!r} is not callable")
        env = factory(**kwargs)
    else:
        try:
            env = gym.make(spec.id, **kwargs)
        except gym.error.Error as error:
            raise ValueError(f"env.id {spec.id!r}: {error}") from error
    try:
        return GymnasiumTaskEnv(env, spec, config.task.max_episode_steps)
    except BaseException:
        env.close()
        raise


def make_expert(config: TaskConfig, env: GymnasiumTaskEnv):
    """The env's expert (``env.expert``): an object with ``reset()`` and ``act(observation)``."""
    expert = load_code_reference(config.env.expert, "env.expert")(env.env)
    missing = [name for name in ("reset", "act") if not callable(getattr(expert, name, None))]
    if missing:
        raise ValueError(f"env.expert {config.env.expert!r} returned {type(expert).__name__}, which has no {' or '.join(missing)}()")
    return expert


class ExpertTeleop:
    """The env's expert as the scripted teleoperator: each ``read()`` is the expert's action on
    the env's latest observation, with Gaussian noise (``expert_noise_std``) on every entry but
    a binary gripper command, so demos are human-like rather than perfectly repeatable."""

    def __init__(self, expert, env: GymnasiumTaskEnv, config: TeleopConfig, rng: np.random.Generator):
        self.expert = expert
        self.env = env
        self.noise_std = config.expert_noise_std
        self.rng = rng

    def reset(self) -> None:
        self.expert.reset()

    def read(self) -> np.ndarray:
        action = np.asarray(self.expert.act(self.env.last_observation), dtype=np.float64)
        if action.shape != (self.env.action_dim,):
            raise ValueError(f"the expert of {self.env.where} gave an action of shape {action.shape}; expected ({self.env.action_dim},)")
        if self.noise_std > 0:
            noisy = slice(0, self.env.action_dim - 1) if self.env.binary_gripper else slice(None)
            action[noisy] += self.rng.normal(0.0, self.noise_std, action[noisy].shape)
        return np.clip(action, -1.0, 1.0)

    def close(self) -> None:
        pass


class InterventionDemonstrator:
    """A person's intervention source (``env.teleop``) driving a whole demo: each ``read()`` is
    what the source decides on the env's latest observation, or the hold action (zeros: no
    motion, a binary gripper stays) while the person does not take over, as a SpaceMouse at
    rest holds the Franka."""

    def __init__(self, source, env: GymnasiumTaskEnv):
        self.source = source
        self.env = env
        self._step = 0

    def reset(self) -> None:
        self.source.reset()
        self._step = 0

    def read(self) -> np.ndarray:
        hold = np.zeros(self.env.action_dim)
        action = self.source.decide(self.env.last_observation, hold, self._step)
        self._step += 1
        if action is None:
            return hold
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (self.env.action_dim,):
            raise ValueError(f"env.teleop of {self.env.where} gave an action of shape {action.shape}; expected ({self.env.action_dim},)")
        return np.clip(action, -1.0, 1.0)

    def close(self) -> None:
        pass  # the source closes with the env (make_intervention_source)


def make_intervention_source(config: TaskConfig, env: GymnasiumTaskEnv, rng: np.random.Generator):
    """The intervention source ``env.teleop`` builds, called with (the env the factory built, rng);
    its ``close()``, where it has one, runs when ``env`` closes."""
    source = load_code_reference(config.env.teleop, "env.teleop")(env.env, rng)
    missing = [f"{name}()" for name in ("reset", "decide") if not callable(getattr(source, name, None))]
    missing += [] if hasattr(source, "enabled") else ["enabled"]
    if missing:
        raise ValueError(f"env.teleop {config.env.teleop!r} returned {type(source).__name__}, which lacks {', '.join(missing)} "
                         "(an intervention source: enabled, reset(), decide(observation, policy_action, env_step))")
    if callable(getattr(source, "close", None)):
        env.close_with(source.close)
    return source
