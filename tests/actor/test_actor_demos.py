"""Demo recording with the scripted teleoperator, and loading demos back for the learner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from actor.record_demos import record_demos, record_demos_with
from robot_stack.data.demo_sets import DEMOS_FILE, LEROBOT_COPY, demos_exist, load_demos
from robot_stack.config import load_task_config
from robot_stack.envs import make_sim_env
from robot_stack.hardware.interfaces import TeleopCommand, TeleopDisconnected
from robot_stack.data.spec import ArraySpec

STATE_SPEC = {"state": ArraySpec("<f4", (16,))}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, pick_cube_state_yaml_path):
    directory = tmp_path_factory.mktemp("demos")
    config = load_task_config(pick_cube_state_yaml_path)
    demos = record_demos(config, episodes=2, out_dir=directory, seed=0, progress=False)
    return directory, demos


@pytest.fixture(scope="module")
def pick_cube_state_yaml_path() -> Path:
    return Path(__file__).resolve().parents[2] / "hardware_configs" / "tasks" / "sim_pick_cube_state.yaml"


def test_two_successful_episodes_load_back_as_one_batch_of_interventions(recorded) -> None:
    directory, demos = recorded

    batch = load_demos(directory, STATE_SPEC, action_dim=4)

    assert len(demos.episodes) == 2 and demos_exist(directory)
    assert batch["actions"].shape == (demos.transitions, 4)
    assert batch["interventions"].all()
    ends = np.flatnonzero(batch["terminated"] | batch["truncated"])
    assert ends.tolist() == [demos.episodes[0]["length"] - 1, demos.transitions - 1]
    assert batch["terminated"][ends].all() and batch["rewards"][ends].tolist() == [1.0, 1.0]
    assert set(np.unique(batch["actions"][:, -1])) <= {-1.0, 0.0, 1.0}
    assert batch["gripper_changed"].sum() >= 2  # each episode closes on the cube


def test_observations_chain_within_each_episode(recorded) -> None:
    directory, demos = recorded
    batch = load_demos(directory, STATE_SPEC, action_dim=4)
    first = demos.episodes[0]["length"]

    np.testing.assert_array_equal(batch["observations/state"][1:first], batch["next_observations/state"][: first - 1])


def test_the_description_names_task_specs_and_episodes(recorded) -> None:
    directory, demos = recorded

    meta = json.loads((directory / DEMOS_FILE).read_text())

    assert meta["task"] == "sim_pick_cube_state" and meta["object_frame"] == "tcp"
    assert meta["observation_spec"] == {"state": {"dtype": "<f4", "shape": [16]}}
    assert meta["action_spec"] == {"actions": {"dtype": "<f4", "shape": [4]}}
    assert [e["file"] for e in meta["episodes"]] == ["episode_000.safetensors", "episode_001.safetensors"]
    assert meta["transitions"] == demos.transitions and meta["seed"] == 0 and meta["created"]


def test_a_spec_mismatch_names_the_file_and_the_key(recorded) -> None:
    directory, _ = recorded

    with pytest.raises(ValueError, match=r"episode_000\.safetensors: 'observations/state' is float32\[\d+, 16\]; expected float32\['N', 13\]"):
        load_demos(directory, {"state": ArraySpec("<f4", (13,))}, action_dim=4)
    with pytest.raises(ValueError, match=r"episode_000\.safetensors: keys do not match.*missing \['next_observations/images/front'"):
        load_demos(directory, {**STATE_SPEC, "images/front": ArraySpec("|u1", (8, 8, 3))}, action_dim=4)


def test_the_demos_are_also_a_lerobot_dataset_that_reads_back_as_the_same_transitions(recorded) -> None:
    import safetensors.numpy

    from robot_stack.data.lerobot_v3 import read_dataset, validate_dataset
    from robot_stack.data.session_dataset import read_episode_transitions

    directory, demos = recorded
    copy = directory / LEROBOT_COPY

    episodes = list(read_episode_transitions(copy))

    assert validate_dataset(copy) == []
    assert read_dataset(copy).features["observation.state"]["names"][:3] == ["tcp.x", "tcp.y", "tcp.z"]
    assert [outcome["seed"] for _, outcome in episodes] == [episode["seed"] for episode in demos.episodes]
    assert all(outcome["success"] == 1 and outcome["label"] == "detector" for _, outcome in episodes)
    for (transitions, _), episode in zip(episodes, demos.episodes):
        recorded_arrays = safetensors.numpy.load_file(str(directory / episode["file"]))
        assert sorted(transitions) == sorted(recorded_arrays)
        for key, value in recorded_arrays.items():
            np.testing.assert_array_equal(transitions[key], value, err_msg=key)


def test_a_new_recording_replaces_the_lerobot_copy_with_the_demo_set(pick_cube_state_yaml_path, tmp_path) -> None:
    from robot_stack.data.lerobot_v3 import read_dataset

    config = load_task_config(pick_cube_state_yaml_path)
    record_demos(config, episodes=1, out_dir=tmp_path, seed=0, progress=False)
    record_demos(config, episodes=1, out_dir=tmp_path, seed=5, progress=False)

    rows = read_dataset(tmp_path / LEROBOT_COPY).episodes_meta
    assert len(rows) == 1 and json.loads(rows[0]["outcome/detail"])["seed"] == json.loads((tmp_path / DEMOS_FILE).read_text())["episodes"][0]["seed"]


def test_a_directory_without_a_description_holds_no_demos(tmp_path) -> None:
    (tmp_path / "episode_000.safetensors").write_bytes(b"")

    assert not demos_exist(tmp_path)
    with pytest.raises(FileNotFoundError, match="demos.json is missing"):
        load_demos(tmp_path, STATE_SPEC, 4)


def test_a_device_lost_mid_demo_drops_that_attempt_and_recording_goes_on(pick_cube_state_yaml_path, tmp_path) -> None:
    from robot_stack.sim.teleop import ScriptedTeleop

    config = load_task_config(pick_cube_state_yaml_path)
    sim = make_sim_env(config)
    expert = ScriptedTeleop(sim.expert, sim.backend, config.teleop, np.random.default_rng(0))

    class FlakyDevice:
        """The scripted expert behind a device that drops out for a few reads in the first attempt."""

        def __init__(self):
            self.reads = 0

        def reset(self) -> None:
            expert.reset()

        def read(self) -> TeleopCommand:
            self.reads += 1
            if 5 <= self.reads < 8:
                raise TeleopDisconnected("SpaceMouse at /dev/spacemouse stopped reporting")
            return expert.read()

    demos = record_demos_with(sim.env, FlakyDevice(), "flaky", episodes=1, out_dir=tmp_path, progress=False)
    sim.env.close()

    assert demos.attempts == 2 and len(demos.episodes) == 1
    assert demos.episodes[0]["seed"] == 1  # the attempt with seed 0 was dropped
    assert demos_exist(tmp_path)


def test_a_teleoperator_that_never_succeeds_gives_up_after_bounded_attempts(pick_cube_state_yaml_path, tmp_path) -> None:
    config = load_task_config(pick_cube_state_yaml_path)
    config = config.model_copy(update={"task": config.task.model_copy(update={"max_episode_steps": 3})})
    sim = make_sim_env(config)

    class IdleDevice:
        def read(self) -> TeleopCommand:
            return TeleopCommand(twist=np.zeros(6), gripper=None, intervening=True)

    with pytest.raises(RuntimeError, match=r"only 0 of 3 demo episodes .* succeeded"):
        record_demos_with(sim.env, IdleDevice(), "idle", episodes=1, out_dir=tmp_path, progress=False)
    sim.env.close()
    assert not demos_exist(tmp_path)


def test_ctrl_c_keeps_the_finished_demos_as_a_demo_set_and_drops_the_one_under_way(pick_cube_state_yaml_path, tmp_path) -> None:
    from robot_stack.sim.teleop import ScriptedTeleop

    config = load_task_config(pick_cube_state_yaml_path)
    sim = make_sim_env(config)
    expert = ScriptedTeleop(sim.expert, sim.backend, config.teleop, np.random.default_rng(0))

    class InterruptedDevice:
        """The scripted expert, until the operator presses Ctrl-C early in the third episode."""

        def __init__(self):
            self.episodes = 0

        def reset(self) -> None:
            self.episodes += 1
            expert.reset()

        def read(self) -> TeleopCommand:
            if self.episodes == 3:
                raise KeyboardInterrupt
            return expert.read()

    try:
        demos = record_demos_with(sim.env, InterruptedDevice(), "stopped", episodes=10, out_dir=tmp_path, progress=False)
    except KeyboardInterrupt:  # escaping, it would stop the test run itself
        pytest.fail("Ctrl-C escaped record_demos_with")
    finally:
        sim.env.close()

    assert demos.interrupted and len(demos.episodes) == 2 and demos.requested == 10
    assert demos_exist(tmp_path)
    meta = json.loads((tmp_path / DEMOS_FILE).read_text())
    assert (meta["requested"], meta["interrupted"], [e["file"] for e in meta["episodes"]]) == (
        10, True, ["episode_000.safetensors", "episode_001.safetensors"]
    )
    assert len(load_demos(tmp_path, STATE_SPEC, action_dim=4)["actions"]) == demos.transitions
