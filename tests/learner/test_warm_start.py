"""Warm start (training.init_from): a new run begins with another run's networks, and optionally
its recorded episodes as demos, with counters at 0 and an empty online buffer; a source of
another spec or trunk is refused, and a restarted warm-started run resumes its own checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
import torch

from learner.learner_loop import Learner, update_once
from robot_stack.config import load_task_config, with_fields
from robot_stack.config.schema import InitFromConfig
from robot_stack.data.demo_sets import DEMOS_FILE
from robot_stack.data.warm_start import WarmStartError, with_init_from
from robot_stack.run_dir import RunPaths, demo_dir

SOURCE_UPDATES = 10


def episode(length: int, rng: np.random.Generator, first_id: float = 0.0, state_dim: int = 16) -> dict[str, np.ndarray]:
    """A synthetic episode in the transition layout; state[0] numbers its observations from ``first_id``."""
    states = rng.normal(size=(length + 1, state_dim)).astype(np.float32)
    states[:, 0] = first_id + np.arange(length + 1)
    actions = rng.uniform(-1, 1, size=(length, 4)).astype(np.float32)
    actions[:, -1] = rng.choice([-1.0, 0.0, 1.0], size=length)
    terminated = np.zeros(length, bool)
    terminated[-1] = True
    return {
        "observations/state": states[:-1], "next_observations/state": states[1:], "actions": actions,
        "rewards": terminated.astype(np.float32), "terminated": terminated, "truncated": np.zeros(length, bool),
        "interventions": np.zeros(length, bool), "gripper_changed": np.zeros(length, bool),
    }


def in_run_dir(config, run_dir: Path):
    paths = RunPaths.under(run_dir)
    return with_fields(config, "session", run_dir=run_dir, checkpoint_dir=paths.checkpoints, log_dir=paths.logs)


@pytest.fixture
def config(pick_cube_state_yaml):
    config = load_task_config(pick_cube_state_yaml)
    config = with_fields(config, "agent", batch_size=16, hidden_dims=(32, 32))
    config = with_fields(config, "task.observation", object_frame="reset")  # the frame the demos here are written in
    return with_fields(config, "training", torch_threads=1, online_buffer_capacity=1000, demo_buffer_capacity=1000)


@pytest.fixture
def source(config, tmp_path) -> Learner:
    """A learner that trained a few updates on its own data and checkpointed."""
    learner = Learner(in_run_dir(config, tmp_path / "source"))
    learner.resume_or_start()
    rng = np.random.default_rng(0)
    for _ in range(4):
        learner.replay.add(episode(10, rng), stream="a0")
    for _ in range(SOURCE_UPDATES):
        update_once(learner.agent, learner.replay, learner.config.agent, learner.rng)
    learner.counters.updates, learner.counters.env_steps = SOURCE_UPDATES, 40
    learner.save_checkpoint(None)
    learner.metrics.close()
    return learner


def warm_started(config, run_dir: Path, source_dir: Path, **init_from) -> Learner:
    config = with_fields(in_run_dir(config, run_dir), "training", init_from=InitFromConfig(run_dir=source_dir, **init_from))
    learner = Learner(config, demo_dir=demo_dir(config))
    learner.resume_or_start()
    return learner


def networks(learner: Learner) -> dict[str, torch.Tensor]:
    state = learner.agent.state_dict()
    return {f"{module}.{name}": tensor for module, tensors in state.items() if module not in ("optimizers", "generator")
            for name, tensor in tensors.items()}


def assert_same_tensors(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> None:
    assert ours.keys() == theirs.keys()
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], rtol=0, atol=0, msg=name)


def test_a_warm_started_run_of_another_task_begins_with_the_sources_networks_and_nothing_else(config, source, tmp_path):
    other_task = with_fields(config, "task", name="sim_pick_cube_state_variant")
    fresh = Learner(in_run_dir(other_task, tmp_path / "fresh"))
    assert not torch.equal(networks(fresh)["networks.actor.mean.weight"], networks(source)["networks.actor.mean.weight"])

    learner = warm_started(other_task, tmp_path / "new", tmp_path / "source")

    assert_same_tensors(networks(learner), networks(source))
    assert learner.counters.updates == 0 and learner.counters.env_steps == 0 and learner.counters.weights_version == -1
    assert len(learner.replay.online) == 0 and learner.resumed_from is None
    assert all(not optimizer.state for optimizer in learner.agent.optimizers.values())
    assert learner.warm_started_from == {
        "run_dir": str((tmp_path / "source").resolve()), "checkpoint": str(source.checkpoints.owned()[-1].path.resolve()),
        "task": "sim_pick_cube_state", "updates": SOURCE_UPDATES, "env_steps": 40,
    }
    own = learner.save_checkpoint(None)
    assert own.path.parent == tmp_path / "new" / "checkpoints" and own.meta["task"] == "sim_pick_cube_state_variant"
    assert json.loads((own.path / "complete.json").read_text())["warm_started_from"] == learner.warm_started_from


def test_a_source_of_another_observation_spec_is_refused_naming_both(config, source, tmp_path):
    fewer_state_keys = with_fields(config, "task.observation", state=("tcp_pose", "gripper_width"))

    with pytest.raises(WarmStartError, match=r"another observation/action spec: observation.state 'float32\[16\]' in the "
                                             r"checkpoint, 'float32\[7\]' here$"):
        warm_started(fewer_state_keys, tmp_path / "new", tmp_path / "source")


def test_a_source_whose_networks_do_not_fit_the_agent_section_is_refused(config, source, tmp_path):
    wider = with_fields(config, "agent", hidden_dims=(48, 48))

    with pytest.raises(WarmStartError, match="do not fit this task's agent section .*mis-shaped"):
        warm_started(wider, tmp_path / "new", tmp_path / "source")


def test_a_restarted_warm_started_run_resumes_its_own_checkpoint_not_the_source(config, source, tmp_path):
    first = warm_started(config, tmp_path / "new", tmp_path / "source")
    rng = np.random.default_rng(1)
    first.replay.add(episode(10, rng), stream="a0")
    for _ in range(3):
        update_once(first.agent, first.replay, first.config.agent, first.rng)
    first.counters.updates = 3
    own = first.save_checkpoint(None)
    first.metrics.close()

    restarted = warm_started(config, tmp_path / "new", tmp_path / "source")

    assert restarted.resumed_from.path == own.path and restarted.counters.updates == 3
    assert_same_tensors(networks(restarted), networks(first))
    assert not torch.equal(networks(restarted)["networks.actor.mean.weight"], networks(source)["networks.actor.mean.weight"])
    assert restarted.warm_started_from == first.warm_started_from


def test_a_run_without_checkpoints_cannot_warm_start_another(config, tmp_path):
    (tmp_path / "empty" / "checkpoints").mkdir(parents=True)

    with pytest.raises(WarmStartError, match=f"no complete checkpoint under {tmp_path / 'empty' / 'checkpoints'}$"):
        warm_started(config, tmp_path / "new", tmp_path / "empty")


def test_a_frozen_image_trunk_other_than_the_sources_is_refused(pick_cube_yaml, tmp_path):
    from robot_stack.policy.encoders import ResNet10, orthogonal_projection, save_trunk_weights

    trunks = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        trunks.append(tmp_path / f"trunk_{seed}.safetensors")
        save_trunk_weights(ResNet10(), trunks[-1], orthogonal_projection(ResNet10.out_channels, 64))
    config = load_task_config(pick_cube_yaml)
    config = with_fields(config, "agent", batch_size=4, hidden_dims=(16, 16))
    config = with_fields(config, "training", online_buffer_capacity=100, demo_buffer_capacity=100, torch_threads=1)
    Learner(in_run_dir(with_fields(config, "agent.encoder", pretrained_path=trunks[0]), tmp_path / "source")).save_checkpoint(None)

    with pytest.raises(WarmStartError, match=r"frozen image trunk sha256:[0-9a-f]+, this task's \(agent.encoder.pretrained_path "
                                             rf"{trunks[1]}\) is sha256:[0-9a-f]+"):
        warm_started(with_fields(config, "agent.encoder", pretrained_path=trunks[1]), tmp_path / "new", tmp_path / "source")


def test_the_init_from_flag_replaces_the_yaml_run_dir_and_keeps_what_to_take(config, tmp_path):
    from_yaml = with_fields(config, "training", init_from=InitFromConfig(run_dir=tmp_path / "a", networks=False,
                                                                         datasets_as_demos=True))

    flagged = with_init_from(from_yaml, tmp_path / "b").training.init_from

    assert flagged == InitFromConfig(run_dir=tmp_path / "b", networks=False, datasets_as_demos=True)
    assert with_init_from(config, tmp_path / "b").training.init_from == InitFromConfig(run_dir=tmp_path / "b")


def test_an_init_from_that_takes_nothing_is_a_config_error(tmp_path):
    with pytest.raises(ValueError, match="init_from takes nothing: set networks or datasets_as_demos"):
        InitFromConfig(run_dir=tmp_path, networks=False)


# ------------------------------------------------------------------ recorded episodes as demos


def write_demo_set(directory: Path, episodes: list[dict[str, np.ndarray]]) -> None:
    directory.mkdir(parents=True)
    for index, arrays in enumerate(episodes):
        safetensors.numpy.save_file(arrays, str(directory / f"episode_{index:03d}.safetensors"))
    (directory / DEMOS_FILE).write_text(json.dumps({"episodes": [{"file": f"episode_{i:03d}.safetensors"} for i in range(len(episodes))]}))


def record(folder: Path, episodes: list[dict[str, np.ndarray]], state_dim: int = 16) -> None:
    """The episodes as an actor records them (a LeRobot v3 session dataset)."""
    from robot_stack.data.session_dataset import EpisodeRecorder
    from robot_stack.data.spec import action_spec_of, observation_spec_of

    recorder = EpisodeRecorder(folder, "recorded", observation_spec_of((state_dim,), {}), action_spec_of(4), fps=10.0)
    for index, arrays in enumerate(episodes):
        recorder.add_episode(arrays, {"episode": index, "success": 1, "label": "detector"})
    recorder.close()


def stored_demo_ids(learner: Learner) -> np.ndarray:
    demo = learner.replay.demo
    return demo.frames["state"][demo.obs_frame[: len(demo)] % demo.frame_capacity][:, 0]


def test_recorded_episodes_join_the_demo_buffer_after_the_tasks_own_demos(config, tmp_path):
    rng = np.random.default_rng(0)
    write_demo_set(tmp_path / "demos", [episode(5, rng, first_id=0.0)])
    # Two actors' datasets, read in actor order.
    record(tmp_path / "source" / "dataset" / "actor0", [episode(4, rng, first_id=100.0), episode(3, rng, first_id=200.0)])
    record(tmp_path / "source" / "dataset" / "actor1", [episode(2, rng, first_id=300.0)])
    config = with_fields(config, "training", demo_dir=tmp_path / "demos")

    learner = warm_started(config, tmp_path / "new", tmp_path / "source", networks=False, datasets_as_demos=True)

    assert learner.counters.demo_transitions == len(learner.replay.demo) == 14
    np.testing.assert_array_equal(stored_demo_ids(learner), [0, 1, 2, 3, 4, 100, 101, 102, 103, 200, 201, 202, 300, 301])
    assert len(learner.replay.online) == 0 and learner.warm_started_from is None


def test_a_recorded_dataset_of_another_spec_is_refused_naming_it(config, tmp_path):
    rng = np.random.default_rng(0)
    record(tmp_path / "source" / "dataset" / "actor0", [episode(4, rng)])
    record(tmp_path / "source" / "dataset" / "actor1", [episode(4, rng, state_dim=7)], state_dim=7)

    with pytest.raises(WarmStartError, match=rf"{tmp_path / 'source' / 'dataset' / 'actor1'} episode 0: 'observations/state' is "
                                             r"float32\[4, 7\]; expected float32\['N', 16\]"):
        warm_started(config, tmp_path / "new", tmp_path / "source", networks=False, datasets_as_demos=True)


def test_datasets_as_demos_from_a_run_that_recorded_none_is_refused(config, tmp_path):
    (tmp_path / "source").mkdir()

    with pytest.raises(WarmStartError, match="has no recorded dataset"):
        warm_started(config, tmp_path / "new", tmp_path / "source", networks=False, datasets_as_demos=True)


def test_demos_recorded_in_another_object_frame_are_refused_naming_both(config, tmp_path):
    from learner.learner_loop import load_demos_into
    from robot_stack.data.demo_sets import DemoMismatchError

    rng = np.random.default_rng(0)
    write_demo_set(tmp_path / "demos", [episode(5, rng)])  # written before demo sets named their frame: 'reset'
    learner = Learner(in_run_dir(config, tmp_path / "run"))
    with pytest.raises(DemoMismatchError, match=r"observe the object from 'reset' but this task observes it from 'tcp'"):
        load_demos_into(learner.replay, tmp_path / "demos", learner.observation_spec, learner.action_dim, object_frame="tcp")
    meta = json.loads((tmp_path / "demos" / DEMOS_FILE).read_text())
    (tmp_path / "demos" / DEMOS_FILE).write_text(json.dumps({**meta, "object_frame": "tcp"}))
    assert load_demos_into(learner.replay, tmp_path / "demos", learner.observation_spec, learner.action_dim, object_frame="tcp") == 5
