"""The env contract (docs/environments.md): each rule an env can break is named in the error,
one line per violation; the project's simulated Franka and a gymnasium env named by a task keep it."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from robot_stack.config import ConfigError, load_task_config
from robot_stack.envs import EnvContractError, check_env, make_env, make_sim_env
from robot_stack.envs.contract import (
    info_violations,
    observation_violations,
    reset_violations,
    space_violations,
    step_violations,
)

HERE = Path(__file__).parent
POINT_MASS_TASK = HERE / "point_mass_task.yaml"
STATE = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
UNIT_ACTION = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
OBSERVATION = gym.spaces.Dict({"state": STATE})


@pytest.fixture
def point_mass_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(HERE))


def test_spaces_that_keep_the_contract_and_the_declared_layout_have_no_violation():
    images = gym.spaces.Dict({"front": gym.spaces.Box(0, 255, (32, 48, 3), np.uint8)})
    observation = gym.spaces.Dict({"state": STATE, "images": images})

    assert space_violations(observation, UNIT_ACTION, 4, {"front": (32, 48)}, 2) == []
    assert space_violations(STATE, UNIT_ACTION, 4, {}, 2) == []  # a bare Box is the state


@pytest.mark.parametrize(
    "observation_space, action_space, expected",
    [
        (gym.spaces.Discrete(3), UNIT_ACTION, "observation_space is Discrete; expected a Dict"),
        (gym.spaces.Dict({"images": gym.spaces.Dict({"front": gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)})}), UNIT_ACTION,
         "observation_space has no 'state' entry"),
        (gym.spaces.Dict({"state": STATE, "joints": STATE}), UNIT_ACTION, "observation_space has keys ['joints']"),
        (gym.spaces.Dict({"state": gym.spaces.Box(0, 1, (2, 2), np.float32)}), UNIT_ACTION, "expected a 1-D Box"),
        (gym.spaces.Dict({"state": gym.spaces.Box(0, 9, (4,), np.int64)}), UNIT_ACTION, "the state space has dtype int64"),
        (gym.spaces.Dict({"state": gym.spaces.Box(0, 1, (5,), np.float32)}), UNIT_ACTION,
         "the state has 5 entries; the task declares env.observation.state_dim 4"),
        (gym.spaces.Dict({"state": STATE, "images": gym.spaces.Dict({"front": gym.spaces.Box(0, 1, (8, 8), np.float32)})}),
         UNIT_ACTION, "camera 'front' has space"),
        (OBSERVATION, gym.spaces.Discrete(4), "action_space is Discrete(4); expected a 1-D Box"),
        (OBSERVATION, gym.spaces.Box(-2.0, 2.0, (2,), np.float32), "action_space is not bounded by [-1, 1]"),
        (OBSERVATION, gym.spaces.Box(-1.0, 1.0, (3,), np.float32), "the action has 3 entries; the task declares env.action.dim 2"),
    ],
)
def test_each_broken_space_rule_is_named(observation_space, action_space, expected):
    violations = space_violations(observation_space, action_space, 4, None, 2)

    assert len(violations) == 1 and expected in violations[0], violations


def test_cameras_other_than_the_declared_ones_are_named():
    images = gym.spaces.Dict({"wrist": gym.spaces.Box(0, 255, (16, 16, 3), np.uint8)})

    violations = space_violations(gym.spaces.Dict({"state": STATE, "images": images}), UNIT_ACTION, 4, {"front": (16, 16)}, 2)

    assert violations == ["the env's cameras are ['wrist']; the task declares env.observation.images ['front']"]


def test_every_violation_of_a_step_is_named_on_its_own_line():
    result = ({"state": np.full(3, np.nan, np.float32)}, float("nan"), 1, None, {"gripper_closed": "yes"})

    violations = step_violations(result, OBSERVATION, binary_gripper=True)

    assert violations == [
        "step(): observation 'state' has shape (3,); the space says (4,)",
        "step(): the reward is nan; expected a finite number",
        "step(): terminated is 1; expected a bool",
        "step(): truncated is None; expected a bool",
        "step(): info has no 'success' (bool: the task is done as it should be)",
        "step(): info['gripper_closed'] is 'yes'; expected a bool",
    ]
    error = EnvContractError("env demo", violations)
    assert str(error).splitlines()[0] == "env demo breaks the env contract (docs/environments.md):"
    assert len(str(error).splitlines()) == 1 + len(violations)


def test_observation_and_info_rules():
    assert observation_violations({"state": np.array([0, 0, np.inf, 0], np.float32)}, OBSERVATION, "reset()") == [
        "reset(): observation 'state' holds a NaN or infinity"
    ]
    assert observation_violations({"state": np.zeros(4), "images": {"front": np.zeros((8, 8, 3), np.uint8)}}, OBSERVATION, "x") == [
        "x: the observation holds ['images/front'], which the observation space does not"
    ]
    assert observation_violations(np.zeros(4), OBSERVATION, "x") == ["x: the observation is ndarray; expected a dict"]
    assert info_violations({"success": 1.0}, False, "x") == ["x: info['success'] is 1.0; expected a bool"]
    assert info_violations({"success": False}, True, "x") == [
        "x: info has no 'gripper_closed' (bool), which a binary gripper must report"
    ]
    assert reset_violations(({"state": np.zeros(4)},), OBSERVATION, False) == ["reset() must return (observation, info)"]


def test_the_simulated_franka_keeps_the_contract(pick_cube_state_yaml):
    env = make_sim_env(pick_cube_state_yaml).env
    try:
        check_env(env)
    finally:
        env.close()


def test_a_gymnasium_task_env_keeps_the_contract_and_truncates_at_the_task_episode_length(point_mass_on_path):
    env = make_env(load_task_config(POINT_MASS_TASK))
    try:
        check_env(env)
        env.reset(seed=0)
        steps, truncated = 0, False
        while not truncated:
            _, _, terminated, truncated, _ = env.step(np.zeros(2))
            steps += 1
            assert not terminated
    finally:
        env.close()
    assert steps == 40


def test_a_flat_box_observation_is_taken_as_the_state(point_mass_on_path, tmp_path):
    task = tmp_path / "flat.yaml"
    task.write_text(POINT_MASS_TASK.read_text().replace("kwargs: {", "kwargs: {flat_observation: true, "))
    env = make_env(load_task_config(task))
    try:
        observation, info = env.reset(seed=1)
    finally:
        env.close()
    assert set(observation) == {"state"} and observation["state"].dtype == np.float32 and info["success"] is False


def test_an_env_that_does_not_match_the_declared_layout_is_refused_when_built(point_mass_on_path, tmp_path):
    task = tmp_path / "wrong.yaml"
    task.write_text(POINT_MASS_TASK.read_text().replace("state_dim: 4", "state_dim: 6").replace("dim: 2,", "dim: 3,"))

    with pytest.raises(EnvContractError) as caught:
        make_env(load_task_config(task))

    assert caught.value.violations == [
        "the state has 4 entries; the task declares env.observation.state_dim 6",
        "the action has 2 entries; the task declares env.action.dim 3",
    ]


def test_an_env_that_breaks_the_contract_mid_episode_stops_with_the_rule_it_broke(point_mass_on_path):
    import point_mass_env

    class NoSuccess(point_mass_env.PointMass):
        def step(self, action):
            observation, reward, terminated, truncated, info = super().step(action)
            return observation, reward, terminated, truncated, {}

    from robot_stack.envs.gymnasium_env import GymnasiumTaskEnv

    env = GymnasiumTaskEnv(NoSuccess(), load_task_config(POINT_MASS_TASK).env, max_episode_steps=10)
    env.reset(seed=0)
    with pytest.raises(EnvContractError, match=r"step\(\): info has no 'success'"):
        env.step(np.zeros(2))


def test_a_factory_that_cannot_be_imported_is_named(tmp_path):
    task = tmp_path / "missing.yaml"
    task.write_text(POINT_MASS_TASK.read_text().replace("point_mass_env:make_point_mass", "no_such_env_module:make"))

    with pytest.raises(ValueError, match="env.factory 'no_such_env_module:make': cannot import no_such_env_module"):
        make_env(load_task_config(task))


def test_a_malformed_factory_reference_is_a_config_error(tmp_path):
    task = tmp_path / "bad.yaml"
    task.write_text(POINT_MASS_TASK.read_text().replace("point_mass_env:make_point_mass", "point_mass_env.make_point_mass"))

    with pytest.raises(ConfigError, match="is not a code reference: expected 'package.module:function'"):
        load_task_config(task)
