"""The tanh-Gaussian actor, the action layout of each gripper mode, and ``Policy``."""

import numpy as np
import pytest
import torch
from torch.distributions import Normal, TanhTransform, TransformedDistribution
from torch.distributions.independent import Independent

from robot_stack.config.schema import AgentConfig, EncoderConfig
from robot_stack.policy import ActionLayout, Policy, TanhGaussianActor, WeightsMismatchError
from robot_stack.data.spec import ArraySpec

torch.set_num_threads(1)

SMALL = dict(hidden_dims=(32, 32), encoder=EncoderConfig(bottleneck_dim=16, state_embedding_dim=8))
STATE_SPEC = {"state": ArraySpec("<f4", (6,))}


def test_actor_log_prob_is_the_tanh_squashed_gaussian_density():
    torch.manual_seed(0)
    # float64 so that atanh in the reference inverts tanh accurately near +-1
    actor = TanhGaussianActor(feature_dim=5, action_dim=3, hidden_dims=(16,), log_std_min=-5.0, log_std_max=2.0).double()
    features = torch.randn(64, 5, dtype=torch.float64)
    with torch.no_grad():
        actions, log_prob = actor.sample(features, torch.Generator().manual_seed(1))
        mean, log_std = actor(features)
    reference = Independent(TransformedDistribution(Normal(mean, log_std.exp()), [TanhTransform()]), 1)
    assert actions.shape == (64, 3) and log_prob.shape == (64,)
    assert actions.abs().max() < 1.0
    assert torch.allclose(log_prob, reference.log_prob(actions), atol=1e-6)


def test_actor_log_prob_stays_finite_where_tanh_saturates():
    actor = TanhGaussianActor(feature_dim=2, action_dim=2, hidden_dims=(8,), log_std_min=-5.0, log_std_max=2.0)
    with torch.no_grad():
        actor.mean.bias.fill_(30.0)  # tanh(30) is exactly 1.0 in float32
        actions, log_prob = actor.sample(torch.zeros(4, 2))
    assert torch.all(actions == 1.0) and torch.isfinite(log_prob).all()


def test_actor_log_std_is_clamped_to_the_configured_range():
    actor = TanhGaussianActor(feature_dim=2, action_dim=2, hidden_dims=(8,), log_std_min=-3.0, log_std_max=1.5)
    with torch.no_grad():
        actor.log_std.bias.copy_(torch.tensor([100.0, -100.0]))
        _, log_std = actor(torch.zeros(1, 2))
    assert log_std.tolist() == [[1.5, -3.0]]


@pytest.mark.parametrize(
    "gripper, env_dim, binary, continuous, grasp",
    [("grasp_critic", 7, True, 6, True), ("continuous", 7, True, 7, False), ("grasp_critic", 6, False, 6, False)],
)
def test_action_layout_of_each_gripper_mode(gripper, env_dim, binary, continuous, grasp):
    layout = ActionLayout.of(AgentConfig(gripper=gripper), env_dim, binary)
    assert (layout.continuous_dim, layout.grasp_critic) == (continuous, grasp)


def test_action_layout_reads_the_grasp_critic_index_from_the_executed_gripper_command():
    layout = ActionLayout.of(AgentConfig(), 7, True)
    actions = torch.zeros(3, 7)
    actions[:, -1] = torch.tensor([-1.0, 0.0, 1.0])
    continuous, index = layout.split(actions)
    assert continuous.shape == (3, 6) and index.tolist() == [0, 1, 2]


@pytest.mark.parametrize("gripper, env_dim, binary", [("grasp_critic", 7, True), ("continuous", 7, True), ("grasp_critic", 6, False)])
def test_policy_acts_in_range_with_the_env_action_dim_and_is_deterministic_when_asked(gripper, env_dim, binary):
    policy = Policy.build(AgentConfig(gripper=gripper, **SMALL), STATE_SPEC, env_dim, binary)
    observation = {"state": np.linspace(-1, 1, 6, dtype=np.float32)}
    actions = [policy.act(observation, deterministic=False, rng=np.random.default_rng(seed)) for seed in range(5)]
    for action in actions:
        assert action.shape == (env_dim,) and action.dtype == np.float32
        assert np.all(np.abs(action) <= 1.0)
    if gripper == "grasp_critic" and binary:
        assert all(a[-1] in (-1.0, 0.0, 1.0) for a in actions)
    assert not np.allclose(actions[0], actions[1])
    again = policy.act(observation, deterministic=False, rng=np.random.default_rng(0))
    assert np.array_equal(actions[0], again)  # all randomness comes from the rng
    greedy = [policy.act(observation, deterministic=True, rng=np.random.default_rng(seed)) for seed in range(3)]
    assert all(np.array_equal(greedy[0], g) for g in greedy)


def test_policy_explores_the_gripper_with_grasp_epsilon_but_not_when_deterministic():
    policy = Policy.build(AgentConfig(grasp_epsilon=1.0, **SMALL), STATE_SPEC, 7, True)
    observation = {"state": np.zeros(6, np.float32)}
    rng = np.random.default_rng(0)
    explored = {float(policy.act(observation, deterministic=False, rng=rng)[-1]) for _ in range(30)}
    greedy = {float(policy.act(observation, deterministic=True, rng=rng)[-1]) for _ in range(5)}
    assert explored == {-1.0, 0.0, 1.0} and len(greedy) == 1


def test_policy_takes_the_env_observation_format_with_images():
    spec = {"state": ArraySpec("<f4", (4,)), "images/front": ArraySpec("|u1", (32, 32, 3)), "images/wrist": ArraySpec("|u1", (32, 32, 3))}
    policy = Policy.build(AgentConfig(**SMALL), spec, 7, True)
    rng = np.random.default_rng(0)
    images = {name: rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for name in ("front", "wrist")}
    observation = {"state": np.zeros(4, np.float32), "images": images}
    action = policy.act(observation, deterministic=True, rng=rng)
    assert action.shape == (7,)
    with pytest.raises(KeyError, match="images/wrist"):
        policy.act({"state": np.zeros(4, np.float32), "images": {"front": images["front"]}}, deterministic=True, rng=rng)


def test_policy_weights_round_trip_into_another_policy_and_give_the_same_actions():
    agent = AgentConfig(**SMALL)
    source = Policy.build(agent, STATE_SPEC, 7, True)
    target = Policy.build(agent, STATE_SPEC, 7, True)
    weights = source.weights()
    assert all(t.device.type == "cpu" and t.is_contiguous() for t in weights.values())
    target.load_weights(weights)
    observation = {"state": np.arange(6, dtype=np.float32) / 6}
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    assert np.array_equal(source.act(observation, False, rng_a), target.act(observation, False, rng_b))


def test_policy_refuses_weights_of_another_network_and_names_the_keys():
    policy = Policy.build(AgentConfig(**SMALL), STATE_SPEC, 7, True)
    weights = policy.weights()
    del weights["grasp_critic.q.bias"]
    weights["actor.mean.weight"] = torch.zeros(2, 2)
    with pytest.raises(WeightsMismatchError) as error:
        policy.load_weights(weights)
    assert "missing: grasp_critic.q.bias" in str(error.value)
    assert "actor.mean.weight [2, 2] (expected [6, 32])" in str(error.value)
