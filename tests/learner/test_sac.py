"""The SAC agent: targets (terminated vs truncated, ensemble min, double-DQN grasp critic),
temperature, learning a trivial task, exporting policy weights, resuming from a state dict."""

import io
import types

import numpy as np
import pytest
import torch

from learner.sac import SACAgent
from robot_stack.config.schema import AgentConfig, EncoderConfig
from robot_stack.policy import Policy
from robot_stack.policy.critics import CriticEnsemble
from robot_stack.data.spec import ArraySpec

torch.set_num_threads(1)

STATE_SPEC = {"state": ArraySpec("<f4", (4,))}
SMALL = dict(hidden_dims=(32, 32), encoder=EncoderConfig(bottleneck_dim=16, state_embedding_dim=8))


def make_batch(observations, actions, rewards, terminated, next_observations=None, gripper_changed=None):
    """Anything with Batch's fields is a batch for the agent."""
    size = len(rewards)
    return types.SimpleNamespace(
        observations=observations,
        actions=torch.as_tensor(actions, dtype=torch.float32),
        rewards=torch.as_tensor(rewards, dtype=torch.float32),
        terminated=torch.as_tensor(terminated, dtype=torch.float32),
        next_observations=next_observations if next_observations is not None else observations,
        interventions=torch.zeros(size, dtype=torch.bool),
        gripper_changed=torch.as_tensor(gripper_changed if gripper_changed is not None else [0.0] * size, dtype=torch.float32),
    )


def random_batch(size, action_dim=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    actions = torch.rand(size, action_dim, generator=g) * 2 - 1
    actions[:, -1] = torch.randint(-1, 2, (size,), generator=g).float()
    return make_batch(
        {"state": torch.randn(size, 4, generator=g)},
        actions,
        torch.rand(size, generator=g),
        (torch.rand(size, generator=g) < 0.2).float(),
        {"state": torch.randn(size, 4, generator=g)},
        (torch.rand(size, generator=g) < 0.2).float(),
    )


def constant_output(linear: torch.nn.Linear, values) -> None:
    """Make a head ignore its input: zero weights, the bias is the output."""
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.copy_(torch.as_tensor(values, dtype=torch.float32))


def constant_critics(ensemble, values) -> None:
    """Make every member of a critic ensemble ignore its input: member i outputs values[i]."""
    with torch.no_grad():
        ensemble.q_weight.zero_()
        ensemble.q_bias.copy_(torch.as_tensor(values, dtype=torch.float32).view(-1, 1, 1))


def test_critic_ensemble_members_are_independent_layer_norm_mlps():
    ensemble = CriticEnsemble(feature_dim=5, action_dim=2, hidden_dims=(8, 8), size=3)
    features, actions = torch.randn(4, 5), torch.randn(4, 2)
    q = ensemble(features, actions)
    assert q.shape == (3, 4)
    x = torch.cat([features, actions], dim=-1)
    for i in range(3):  # member i by hand: Linear -> LayerNorm -> tanh, twice, then the Q head
        h = x
        for layer in range(2):
            h = h @ ensemble.weights[layer][i] + ensemble.biases[layer][i]
            h = torch.tanh(torch.nn.functional.layer_norm(h, (8,)) * ensemble.norm_weights[layer][i] + ensemble.norm_biases[layer][i])
        expected = (h @ ensemble.q_weight[i] + ensemble.q_bias[i]).squeeze(-1)
        assert torch.allclose(q[i], expected, atol=1e-5)
    assert not torch.allclose(q[0], q[1])  # independently initialised


def test_critic_target_bootstraps_truncated_transitions_from_the_min_of_the_target_critics():
    agent = SACAgent.create(AgentConfig(critic_actor_ratio=1, **SMALL), STATE_SPEC, 6, False, discount=0.9, device="cpu", seed=0)
    constant_critics(agent.target_critic, (2.0, 3.0))
    constant_critics(agent.critic, (0.0, 0.0))
    # 0: terminated (no bootstrap); 1: truncated by the time limit (bootstraps); 2: mid-episode
    batch = make_batch({"state": torch.randn(3, 4)}, torch.zeros(3, 6), rewards=[1.0, 0.5, 0.0], terminated=[1.0, 0.0, 0.0])
    metrics = agent.update(batch)
    y = np.array([1.0, 0.5 + 0.9 * 2.0, 0.0 + 0.9 * 2.0])
    assert metrics["target_q_mean"] == pytest.approx(y.mean(), abs=1e-6)
    assert metrics["critic_loss"] == pytest.approx(np.mean(y**2), abs=1e-5)  # Q = 0 everywhere


def test_critic_target_with_a_subsample_takes_the_min_over_that_many_random_critics():
    config = AgentConfig(critic_actor_ratio=1, critic_ensemble_size=3, critic_subsample_size=1, tau=1e-9, **SMALL)
    agent = SACAgent.create(config, STATE_SPEC, 6, False, discount=1.0, device="cpu", seed=0)
    constant_critics(agent.target_critic, (1.0, 2.0, 3.0))
    batch = make_batch({"state": torch.zeros(1, 4)}, torch.zeros(1, 6), rewards=[0.0], terminated=[0.0])
    seen = {round(agent.update(batch)["target_q_mean"], 4) for _ in range(30)}
    assert seen == {1.0, 2.0, 3.0}


def test_grasp_critic_target_is_double_dqn_with_the_gripper_penalty():
    config = AgentConfig(critic_actor_ratio=1, grasp_penalty=-0.02, **SMALL)
    agent = SACAgent.create(config, STATE_SPEC, 7, True, discount=0.9, device="cpu", seed=0)
    constant_output(agent.grasp_critic.q, [1.0, 3.0, 2.0])  # online: argmax is "stay"
    constant_output(agent.target_grasp_critic.q, [10.0, 20.0, 30.0])  # target values "stay" at 20, not max 30
    actions = torch.zeros(3, 7)
    actions[:, -1] = torch.tensor([-1.0, 0.0, 1.0])  # open, stay, close -> Q = 1, 3, 2
    batch = make_batch(
        {"state": torch.randn(3, 4)}, actions, rewards=[0.0, 1.0, 0.0], terminated=[0.0, 0.0, 1.0], gripper_changed=[1.0, 0.0, 1.0]
    )
    metrics = agent.update(batch)
    y = np.array([0.0 - 0.02 + 0.9 * 20.0, 1.0 + 0.9 * 20.0, 0.0 - 0.02])
    q = np.array([1.0, 3.0, 2.0])
    assert metrics["grasp_critic_loss"] == pytest.approx(np.mean((q - y) ** 2), rel=1e-6)
    assert metrics["grasp_q_mean"] == pytest.approx(q.mean(), rel=1e-6)


@pytest.mark.parametrize("target_entropy, direction", [(50.0, 1), (-50.0, -1)])
def test_temperature_rises_below_the_target_entropy_and_falls_above_it(target_entropy, direction):
    config = AgentConfig(target_entropy=target_entropy, temperature_lr=1e-2, **SMALL)
    agent = SACAgent.create(config, STATE_SPEC, 7, True, discount=0.97, device="cpu", seed=0)
    batch = random_batch(32)
    for _ in range(10):
        metrics = agent.update(batch)
    with torch.no_grad():
        alpha = float(agent.temperature())
    assert np.sign(alpha - config.temperature_init) == direction
    assert metrics["temperature"] != config.temperature_init


def test_default_target_entropy_is_minus_half_the_continuous_action_dims():
    grasp = SACAgent.create(AgentConfig(**SMALL), STATE_SPEC, 7, True, 0.97, device="cpu", seed=0)
    continuous = SACAgent.create(AgentConfig(gripper="continuous", **SMALL), STATE_SPEC, 7, True, 0.97, device="cpu", seed=0)
    assert (grasp.target_entropy, continuous.target_entropy) == (-3.0, -3.5)


def test_agent_learns_a_one_step_continuous_bandit():
    target = torch.tensor([0.5, -0.3])
    lr = 1e-3
    config = AgentConfig(hidden_dims=(64, 64), actor_lr=lr, critic_lr=lr, temperature_lr=lr, encoder=EncoderConfig(state_embedding_dim=0))
    agent = SACAgent.create(config, {"state": ArraySpec("<f4", (3,))}, 2, False, discount=0.97, device="cpu", seed=0)
    g = torch.Generator().manual_seed(0)
    state = torch.ones(64, 3)
    for _ in range(300):
        actions = torch.rand(64, 2, generator=g) * 2 - 1
        rewards = -((actions - target) ** 2).sum(-1)
        agent.update(make_batch({"state": state}, actions, rewards, terminated=torch.ones(64)))
    with torch.no_grad():
        greedy = agent.actor.mode(agent.encoder({"state": state[:1]}))[0]
    assert torch.linalg.norm(greedy - target) < 0.15


def test_policy_weights_load_into_a_policy_that_acts_like_the_agent():
    config = AgentConfig(**SMALL)
    agent = SACAgent.create(config, STATE_SPEC, 7, True, 0.97, device="cpu", seed=0)
    for seed in range(3):
        agent.update(random_batch(16, seed=seed))
    policy = Policy.build(config, STATE_SPEC, 7, True)
    policy.load_weights(agent.policy_weights())
    state = np.array([0.3, -0.1, 0.7, 0.2], np.float32)
    with torch.no_grad():
        features = agent.encoder({"state": torch.from_numpy(state)[None]})
        continuous = agent.actor.mode(features)[0].numpy()
        gripper = (-1.0, 0.0, 1.0)[int(agent.grasp_critic(features).argmax())]
    action = policy.act({"state": state}, deterministic=True, rng=np.random.default_rng(0))
    np.testing.assert_allclose(action, np.append(continuous, gripper), atol=1e-6)


def test_a_state_dict_round_trip_resumes_training_identically():
    config = AgentConfig(**SMALL)
    original = SACAgent.create(config, STATE_SPEC, 7, True, 0.97, device="cpu", seed=0)
    for seed in range(3):
        original.update(random_batch(16, seed=seed))
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    buffer.seek(0)
    resumed = SACAgent.create(config, STATE_SPEC, 7, True, 0.97, device="cpu", seed=1)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    batch = random_batch(16, seed=10)
    assert original.update(batch) == resumed.update(batch)
    a, b = original.state_dict(), resumed.state_dict()
    for name in ("networks", "critic", "target_critic", "target_encoder", "temperature"):
        assert all(torch.equal(a[name][k], b[name][k]) for k in a[name])


def test_one_backward_for_each_steps_losses_trains_as_one_backward_per_loss(monkeypatch):
    """The critic and grasp-critic losses (and the actor and temperature losses) share one backward
    pass: the weights must come out as when each optimiser steps on its own loss's backward."""

    def one_backward_per_loss(optimizers, losses):
        for optimizer, loss in zip(optimizers, losses):
            optimizer.zero_grad(set_to_none=True)
            loss.backward(retain_graph=True)
            optimizer.step()

    config = AgentConfig(critic_actor_ratio=2, **SMALL)
    shared, separate = (SACAgent.create(config, STATE_SPEC, 7, True, 0.97, device="cpu", seed=0) for _ in range(2))
    batches = [[random_batch(16, seed=2 * step), random_batch(16, seed=2 * step + 1)] for step in range(3)]
    shared_metrics = [shared.update(pair) for pair in batches]
    monkeypatch.setattr("learner.sac._step", one_backward_per_loss)
    separate_metrics = [separate.update(pair) for pair in batches]

    for mine, theirs in zip(shared_metrics, separate_metrics):
        assert mine == pytest.approx(theirs, rel=1e-5, abs=1e-6)
    a, b = shared.state_dict(), separate.state_dict()
    for name in ("networks", "critic", "target_critic", "target_encoder", "target_grasp_critic", "temperature"):
        for key in a[name]:
            torch.testing.assert_close(a[name][key], b[name][key], rtol=1e-5, atol=1e-6, msg=f"{name}.{key}")


def test_update_takes_one_batch_per_critic_update_or_one_batch_for_all():
    agent = SACAgent.create(AgentConfig(critic_actor_ratio=2, **SMALL), STATE_SPEC, 7, True, 0.97, device="cpu", seed=0)
    metrics = agent.update([random_batch(8, seed=0), random_batch(8, seed=1)])
    assert {"critic_loss", "q_mean", "actor_loss", "temperature", "entropy", "grasp_critic_loss"} <= set(metrics)
    assert all(isinstance(v, float) and np.isfinite(v) for v in metrics.values())
    agent.update(random_batch(8, seed=2))
    with pytest.raises(ValueError, match="critic_actor_ratio is 2"):
        agent.update([random_batch(8)])


def test_a_pixel_agent_without_cached_features_trains_the_embedding_but_never_the_frozen_trunk():
    spec = {"state": ArraySpec("<f4", (4,)), "images/front": ArraySpec("|u1", (32, 32, 3)), "images/wrist": ArraySpec("|u1", (32, 32, 3))}
    uncached = dict(SMALL, encoder=SMALL["encoder"].model_copy(update={"cache_features": False}))
    agent = SACAgent.create(AgentConfig(critic_actor_ratio=1, **uncached), spec, 7, True, 0.97, device="cpu", seed=0)
    g = torch.Generator().manual_seed(0)

    def observation():
        obs = {key: torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8, generator=g) for key in spec if key != "state"}
        return {**obs, "state": torch.randn(4, 4, generator=g)}

    batch = random_batch(4)
    batch.observations, batch.next_observations = observation(), observation()
    before = {k: v.clone() for k, v in agent.encoder.state_dict().items()}
    agent.update(batch)
    after = agent.encoder.state_dict()
    trunk = [k for k in before if ".trunk." in k]
    head = [k for k in before if ".head." in k]
    assert trunk and all(torch.equal(before[k], after[k]) for k in trunk)
    assert head and any(not torch.equal(before[k], after[k]) for k in head)
    policy = Policy.build(AgentConfig(**SMALL), spec, 7, True)
    policy.load_weights(agent.policy_weights())


def test_an_agent_moved_with_to_keeps_training():
    agent = SACAgent.create(AgentConfig(**SMALL), STATE_SPEC, 7, True, 0.97, device="cpu", seed=0)
    agent.update(random_batch(8))
    metrics = agent.to("cpu").update(random_batch(8, seed=1))
    assert np.isfinite(metrics["critic_loss"])
