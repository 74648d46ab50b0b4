"""What the learner trains, outside the learner process: the agent and buffers it starts from,
how many updates the received env steps make due, and what one update samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learner.features import CachedTrunkFeatures
from learner.learner_loop import build_agent_and_replay, update_once, updates_due
from robot_stack.config import load_task_config, with_fields
from robot_stack.config.schema import AgentConfig, TrainingConfig
from robot_stack.data.spec import env_action_dim, observation_spec

torch.set_num_threads(1)


@pytest.mark.parametrize(
    "env_steps, due",
    [(0, 0), (19, 0), (20, 10), (21, 10), (100, 50)],
)
def test_updates_fall_due_at_the_update_to_data_ratio_once_enough_online_transitions_arrived(env_steps, due):
    training = TrainingConfig(min_online_transitions=20, updates_per_env_step=0.5)

    assert updates_due(training, env_steps) == due


def test_one_update_trains_on_critic_actor_ratio_fresh_batches_of_batch_size():
    class Replay:
        def __init__(self):
            self.sampled = []

        def sample(self, size, rng):
            self.sampled.append(size)
            return f"batch {len(self.sampled)}"

    class Agent:
        def update(self, batches):
            self.batches = batches
            return {"critic_loss": 1.0}

    agent, replay = Agent(), Replay()

    metrics = update_once(agent, replay, AgentConfig(critic_actor_ratio=3, batch_size=16), np.random.default_rng(0))

    assert replay.sampled == [16, 16, 16]
    assert agent.batches == ["batch 1", "batch 2", "batch 3"]
    assert metrics == {"critic_loss": 1.0}


def test_a_frozen_trunk_gets_a_replay_that_stores_its_features_instead_of_images(pick_cube_yaml, tmp_path):
    from robot_stack.policy.encoders import ResNet10, orthogonal_projection, save_trunk_weights

    torch.manual_seed(0)
    trunk = tmp_path / "trunk.safetensors"
    save_trunk_weights(ResNet10(), trunk, orthogonal_projection(ResNet10.out_channels, 64))
    config = load_task_config(pick_cube_yaml)
    config = with_fields(config, "training", online_buffer_capacity=10, demo_buffer_capacity=10)
    config = with_fields(config, "agent.encoder", pretrained_path=trunk)
    config = with_fields(config, "agent", device="cpu")
    spec = observation_spec(config)

    agent, replay = build_agent_and_replay(config, spec, env_action_dim(config), True)

    assert agent.encoder.cache_features
    for buffer in (replay.online, replay.demo):
        assert isinstance(buffer.frame_encoder, CachedTrunkFeatures)
        assert buffer.stored_spec["images/front"] != spec["images/front"]


def test_a_state_task_gets_a_replay_of_its_observations_as_they_are(pick_cube_state_yaml):
    config = with_fields(load_task_config(pick_cube_state_yaml), "training", online_buffer_capacity=10, demo_buffer_capacity=10)
    spec = observation_spec(config)

    agent, replay = build_agent_and_replay(config, spec, env_action_dim(config), True, device="cpu")

    assert replay.online.frame_encoder is None and replay.online.stored_spec == spec
    assert agent.discount == pytest.approx(config.task.discount)
