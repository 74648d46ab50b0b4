"""Transitions in the contracts' flat format, built from real env steps."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from robot_stack.data.transitions import (
    TransitionBuffer,
    executed_action,
    gripper_closed_after_reset,
    hold_if_nonfinite,
    make_transition,
)
from robot_stack.config import load_task_config
from robot_stack.envs import make_sim_env
from robot_stack.data.spec import ArraySpec, batch_spec, check_batch, env_spec, flatten_observation


@pytest.mark.parametrize(
    "command, recorded",
    [(0.5, 1.0), (0.9, 1.0), (2.0, 1.0), (0.49, 0.0), (0.0, 0.0), (-0.49, 0.0), (-0.5, -1.0), (-3.0, -1.0)],
)
def test_the_gripper_command_is_recorded_as_exactly_minus_one_zero_or_one(command, recorded) -> None:
    action = np.array([0.1, -0.2, 0.3, 0.0, 0.0, 0.0, command])

    assert executed_action(action, binary_gripper=True)[6] == recorded


def test_the_twist_is_recorded_clipped_and_a_six_d_action_keeps_its_last_dim() -> None:
    action = np.array([1.5, -2.0, 0.3, 0.0, 0.0, 0.4])

    np.testing.assert_allclose(executed_action(action, binary_gripper=False), [1.0, -1.0, 0.3, 0.0, 0.0, 0.4])


def test_a_nonfinite_action_becomes_the_hold_action() -> None:
    action, held = hold_if_nonfinite(np.array([0.1, np.nan, 0, 0, 0, 0, 1.0]))

    assert held and np.array_equal(action, np.zeros(7, np.float32))


def test_steps_of_the_env_make_a_batch_with_continuity_gripper_changes_and_the_envs_spec(pick_cube_state_yaml) -> None:
    sim = make_sim_env(load_task_config(pick_cube_state_yaml))
    env = sim.env
    observation, info = env.reset(seed=3)
    closed = gripper_closed_after_reset(env, info)
    buffer = TransitionBuffer()
    gripper_commands = [0.0, 0.2, 0.8, 0.9, 0.0, -0.7, -0.1]
    for command in gripper_commands:
        action = np.array([0.0, 0.0, 0.2, command])
        next_observation, reward, terminated, truncated, info = env.step(action)
        buffer.add(
            make_transition(
                observation, action, reward, next_observation, terminated, truncated, intervention=False,
                gripper_changed=info["gripper_closed"] != closed, binary_gripper=True,
            )
        )
        closed = info["gripper_closed"]
        observation = next_observation
    env.close()

    batch = buffer.take()
    observation_spec, action_spec = env_spec(env)
    assert observation_spec == {"state": ArraySpec("<f4", (16,))}
    assert action_spec == {"actions": ArraySpec("<f4", (4,))}
    check_batch(batch, batch_spec(observation_spec, 4), where="env batch")
    assert batch["actions"][:, -1].tolist() == [0.0, 0.0, 1.0, 1.0, 0.0, -1.0, 0.0]
    assert batch["gripper_changed"].tolist() == [False, False, True, False, False, True, False]
    np.testing.assert_array_equal(batch["observations/state"][1:], batch["next_observations/state"][:-1])
    assert len(buffer) == 0


def test_image_observations_flatten_to_images_slash_camera_keys() -> None:
    class ImageEnv:
        action_dim = 6
        observation_space = gym.spaces.Dict(
            {
                "images": gym.spaces.Dict({"front": gym.spaces.Box(0, 255, (32, 24, 3), np.uint8)}),
                "state": gym.spaces.Box(-np.inf, np.inf, (13,), np.float32),
            }
        )

    observation_spec, action_spec = env_spec(ImageEnv())
    flat = flatten_observation({"images": {"front": np.zeros((32, 24, 3), np.uint8)}, "state": np.zeros(13)})

    assert observation_spec == {"state": ArraySpec("<f4", (13,)), "images/front": ArraySpec("|u1", (32, 24, 3))}
    assert action_spec == {"actions": ArraySpec("<f4", (6,))}
    assert {key: ArraySpec.of(value) for key, value in flat.items()} == observation_spec


def test_check_batch_names_the_key_that_differs() -> None:
    spec = batch_spec({"state": ArraySpec("<f4", (3,))}, 7)
    batch = {key: np.zeros((2, *value.shape), value.dtype) for key, value in spec.items()}
    batch["next_observations/state"] = np.zeros((2, 4), np.float32)

    with pytest.raises(ValueError, match=r"somewhere: 'next_observations/state' is float32\[2, 4\]"):
        check_batch(batch, spec, where="somewhere")
