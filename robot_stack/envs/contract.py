"""The env contract every task env keeps, whoever provides it (the project's Franka, simulated
or real, or any gymnasium env a task names): docs/environments.md states it, this module
checks it. Each check returns one line per violation, naming what is wrong and where, so an
env that breaks several rules is fixed in one round.

- observation space: a Dict of "state" (1-D float Box) and, with cameras, "images" (a Dict of
  uint8 Box (H, W, 3) per camera), nothing else; a 1-D float Box alone is the state;
- action space: a 1-D float Box bounded by exactly [-1, 1];
- reset(seed=) -> (observation, info); step(action) -> (observation, reward, terminated,
  truncated, info), observations inside the observation space, a finite reward, bool flags;
- info holds "success" (bool) at reset and every step, and "gripper_closed" (bool) when the
  action's last entry is a binary gripper command.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import gymnasium as gym
import numpy as np

STATE = "state"
IMAGES = "images"


class EnvContractError(ValueError):
    """An env breaks the contract; ``violations`` holds one line per broken rule."""

    def __init__(self, where: str, violations: list[str]):
        self.violations = list(violations)
        lines = "\n".join(f"  - {violation}" for violation in self.violations)
        super().__init__(f"{where} breaks the env contract (docs/environments.md):\n{lines}")


def raise_violations(where: str, violations: list[str]) -> None:
    if violations:
        raise EnvContractError(where, violations)


def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def space_violations(
    observation_space: Any,
    action_space: Any,
    declared_state_dim: Optional[int] = None,
    declared_images: Optional[Mapping[str, tuple[int, int]]] = None,
    declared_action_dim: Optional[int] = None,
) -> list[str]:
    """The spaces against the contract and, where given, against the layout the task declares."""
    found: list[str] = []
    state_space, image_spaces = None, {}
    if isinstance(observation_space, gym.spaces.Box):
        state_space = observation_space
    elif isinstance(observation_space, gym.spaces.Dict):
        extra = sorted(set(observation_space.spaces) - {STATE, IMAGES})
        if extra:
            found.append(f"observation_space has keys {extra}; only '{STATE}' and '{IMAGES}' are allowed")
        if STATE not in observation_space.spaces:
            found.append(f"observation_space has no '{STATE}' entry")
        else:
            state_space = observation_space[STATE]
        if IMAGES in observation_space.spaces:
            images = observation_space[IMAGES]
            if not isinstance(images, gym.spaces.Dict):
                found.append(f"observation_space['{IMAGES}'] is {type(images).__name__}; expected a Dict of one Box per camera")
            else:
                image_spaces = dict(images.spaces)
    else:
        found.append(f"observation_space is {type(observation_space).__name__}; expected a Dict ('{STATE}', '{IMAGES}') or a 1-D Box")
    if state_space is not None:
        if not isinstance(state_space, gym.spaces.Box) or len(state_space.shape) != 1:
            found.append(f"the state space is {state_space}; expected a 1-D Box")
        elif not np.issubdtype(state_space.dtype, np.floating):
            found.append(f"the state space has dtype {state_space.dtype}; expected a float dtype (it is stored as float32)")
        elif declared_state_dim is not None and state_space.shape[0] != declared_state_dim:
            found.append(f"the state has {state_space.shape[0]} entries; the task declares env.observation.state_dim {declared_state_dim}")
    for camera, space in image_spaces.items():
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 3 or space.shape[2] != 3 or space.dtype != np.uint8:
            found.append(f"camera '{camera}' has space {space}; expected a uint8 Box of shape (height, width, 3)")
        elif declared_images is not None and camera in declared_images and tuple(space.shape[:2]) != tuple(declared_images[camera]):
            found.append(f"camera '{camera}' is {space.shape[0]}x{space.shape[1]}; the task declares {declared_images[camera][0]}x{declared_images[camera][1]}")
    if declared_images is not None and set(image_spaces) != set(declared_images):
        found.append(f"the env's cameras are {sorted(image_spaces)}; the task declares env.observation.images {sorted(declared_images)}")

    if not isinstance(action_space, gym.spaces.Box) or len(action_space.shape) != 1:
        found.append(f"action_space is {action_space}; expected a 1-D Box")
    else:
        if not np.issubdtype(action_space.dtype, np.floating):
            found.append(f"action_space has dtype {action_space.dtype}; expected a float dtype")
        if not (np.all(action_space.low == -1.0) and np.all(action_space.high == 1.0)):
            found.append(
                "action_space is not bounded by [-1, 1] (the policy's squashed range); rescale it, e.g. with "
                "gymnasium.wrappers.RescaleAction(env, -1.0, 1.0)"
            )
        if declared_action_dim is not None and action_space.shape[0] != declared_action_dim:
            found.append(f"the action has {action_space.shape[0]} entries; the task declares env.action.dim {declared_action_dim}")
    return found


def observation_violations(observation: Any, observation_space: gym.spaces.Dict, where: str) -> list[str]:
    """An observation (a Dict observation, the state already under 'state') against the space."""
    if not isinstance(observation, Mapping):
        return [f"{where}: the observation is {type(observation).__name__}; expected a dict"]
    found = []
    expected = {STATE: observation_space[STATE]}
    if IMAGES in observation_space.spaces:
        expected.update({f"{IMAGES}/{camera}": space for camera, space in observation_space[IMAGES].spaces.items()})
    given = {STATE: observation.get(STATE)}
    given.update({f"{IMAGES}/{camera}": image for camera, image in dict(observation.get(IMAGES) or {}).items()})
    for key, space in expected.items():
        value = given.get(key)
        if value is None:
            found.append(f"{where}: the observation has no '{key}'")
            continue
        value = np.asarray(value)
        if value.shape != space.shape:
            found.append(f"{where}: observation '{key}' has shape {value.shape}; the space says {space.shape}")
        elif key == STATE and not (np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)):
            found.append(f"{where}: observation '{key}' has dtype {value.dtype}; expected floats")
        elif key == STATE and not np.isfinite(value).all():
            found.append(f"{where}: observation '{key}' holds a NaN or infinity")
        elif key != STATE and value.dtype != np.uint8:
            found.append(f"{where}: observation '{key}' has dtype {value.dtype}; expected uint8")
    unexpected = sorted(set(given) - set(expected))
    if unexpected:
        found.append(f"{where}: the observation holds {unexpected}, which the observation space does not")
    return found


def info_violations(info: Any, binary_gripper: bool, where: str) -> list[str]:
    if not isinstance(info, Mapping):
        return [f"{where}: info is {type(info).__name__}; expected a dict"]
    found = []
    if "success" not in info:
        found.append(f"{where}: info has no 'success' (bool: the task is done as it should be)")
    elif not _is_bool(info["success"]):
        found.append(f"{where}: info['success'] is {info['success']!r}; expected a bool")
    if binary_gripper:
        if "gripper_closed" not in info:
            found.append(f"{where}: info has no 'gripper_closed' (bool), which a binary gripper must report")
        elif not _is_bool(info["gripper_closed"]):
            found.append(f"{where}: info['gripper_closed'] is {info['gripper_closed']!r}; expected a bool")
    return found


def step_violations(result: Any, observation_space: gym.spaces.Dict, binary_gripper: bool) -> list[str]:
    """step()'s return (the observation already a dict) against the contract."""
    if not isinstance(result, tuple) or len(result) != 5:
        return ["step() must return (observation, reward, terminated, truncated, info)"]
    observation, reward, terminated, truncated, info = result
    found = observation_violations(observation, observation_space, "step()")
    if not isinstance(reward, (int, float, np.integer, np.floating)) or _is_bool(reward) or not np.isfinite(reward):
        found.append(f"step(): the reward is {reward!r}; expected a finite number")
    for name, flag in (("terminated", terminated), ("truncated", truncated)):
        if not _is_bool(flag):
            found.append(f"step(): {name} is {flag!r}; expected a bool")
    return found + info_violations(info, binary_gripper, "step()")


def reset_violations(result: Any, observation_space: gym.spaces.Dict, binary_gripper: bool) -> list[str]:
    if not isinstance(result, tuple) or len(result) != 2:
        return ["reset() must return (observation, info)"]
    observation, info = result
    return observation_violations(observation, observation_space, "reset()") + info_violations(info, False, "reset()")


def check_env(env, steps: int = 3, seed: int = 0) -> None:
    """Check a built env (with ``action_dim`` and ``binary_gripper``, as the task envs have)
    end to end: its spaces, a reset and a few zero-action steps. Raises EnvContractError."""
    where = type(env).__name__
    raise_violations(where, space_violations(env.observation_space, env.action_space, declared_action_dim=env.action_dim))
    found = reset_violations(env.reset(seed=seed), env.observation_space, env.binary_gripper)
    for _ in range(steps):
        if found:
            break
        result = env.step(np.zeros(env.action_dim, np.float32))
        found = step_violations(result, env.observation_space, env.binary_gripper)
        if not found and (result[2] or result[3]):
            break
    raise_violations(where, found)
