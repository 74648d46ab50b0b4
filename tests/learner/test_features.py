"""Cached encoder features: the replay keeps a frozen trunk's maps in place of images, an update
on them computes what the uncached path computes for the same crop, the trunk runs once per
stored frame, and the cache costs less memory than the images it replaces."""

import numpy as np
import pytest
import torch

from learner.features import CachedTrunkFeatures
from learner.learner_loop import runs_per_stream
from learner.replay import MixedReplay, ReplayBuffer, ReplayFileError
from learner.sac import SACAgent
from robot_stack.config.schema import AgentConfig, EncoderConfig, TrainingConfig
from robot_stack.policy.encoders import crop_shifted, random_feature_shift
from robot_stack.data.spec import ArraySpec

torch.set_num_threads(1)

SPEC = {"state": ArraySpec("<f4", (4,)), "images/front": ArraySpec("|u1", (32, 32, 3)), "images/wrist": ArraySpec("|u1", (32, 32, 3))}
ACTION_DIM = 4


def agent_config(**encoder) -> AgentConfig:
    return AgentConfig(hidden_dims=(32, 32), critic_actor_ratio=1, batch_size=8,
                       encoder=EncoderConfig(bottleneck_dim=16, state_embedding_dim=8, projection_channels=8, **encoder))


def episode(n: int, seed: int, ends: bool = True) -> dict[str, np.ndarray]:
    """n transitions of one episode whose next observations continue each other."""
    rng = np.random.default_rng(seed)
    frames = {key: rng.integers(0, 256, (n + 1, *spec.shape), dtype=np.uint8) for key, spec in SPEC.items() if key != "state"}
    state = np.cumsum(rng.normal(size=(n + 1, 4)), axis=0).astype(np.float32)
    arrays = {"observations/state": state[:-1], "next_observations/state": state[1:]}
    for key, images in frames.items():
        arrays[f"observations/{key}"], arrays[f"next_observations/{key}"] = images[:-1], images[1:]
    done = np.zeros(n, bool)
    done[-1] = ends
    arrays.update(actions=rng.uniform(-1, 1, (n, ACTION_DIM)).astype(np.float32), rewards=done.astype(np.float32),
                  terminated=done, truncated=np.zeros(n, bool), interventions=np.zeros(n, bool), gripper_changed=np.zeros(n, bool))
    return arrays


class CountingCache(CachedTrunkFeatures):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.encoded = 0

    def encode(self, key, frames):
        self.encoded += len(frames)
        return super().encode(key, frames)


def make_agent(**encoder) -> SACAgent:
    return SACAgent.create(agent_config(**encoder), SPEC, ACTION_DIM, True, 0.97, device="cpu", seed=0)


def test_cached_and_uncached_forward_give_the_same_features_for_the_same_frame():
    agent = make_agent(cached_augmentation="none")
    cache = CachedTrunkFeatures(agent.encoder, agent.config.encoder)
    images = episode(5, seed=0)["observations/images/front"]
    stored = cache.encode("images/front", images)
    assert stored.dtype == np.float16 and stored.shape == (5, 8, 1, 1)
    camera = agent.encoder.cameras["front"].eval()
    with torch.no_grad():
        uncached = camera(torch.from_numpy(images))
        cached = camera.head(torch.from_numpy(stored).float())
    assert torch.allclose(cached, uncached, atol=2e-2)  # float16 storage, bfloat16 compute where the CPU has it
    assert torch.allclose(torch.from_numpy(stored).float(), camera.trunk_features(torch.from_numpy(images)), atol=1e-2, rtol=1e-2)


def test_stored_crops_are_the_trunk_features_of_crops_of_the_frame():
    agent = make_agent(cached_augmentation="stored_crops", stored_crops=3, random_crop_pad_px=2)
    cache = CachedTrunkFeatures(agent.encoder, agent.config.encoder, seed=1)
    images = torch.from_numpy(episode(2, seed=1)["observations/images/wrist"])
    stored = torch.from_numpy(cache.encode("images/wrist", images.numpy())).float()
    assert stored.shape == (2, 3, 8, 1, 1)
    camera = agent.encoder.cameras["wrist"]
    shifts = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]
    with torch.no_grad():
        every_crop = {
            shift: camera.trunk_features(crop_shifted(images, torch.tensor(shift).view(2, 1).expand(2, 2).contiguous()))
            for shift in shifts
        }
    for frame in range(2):
        for view in range(3):
            distances = [float((every_crop[shift][frame] - stored[frame, view]).abs().max()) for shift in shifts]
            assert min(distances) < 2e-2, "a stored view that is no crop of its frame"
    assert not torch.equal(stored[:, 0], stored[:, 1]) or not torch.equal(stored[:, 1], stored[:, 2])


def test_the_replay_runs_the_trunk_once_per_stored_frame_and_keeps_features():
    agent = make_agent(cached_augmentation="none")
    cache = CountingCache(agent.encoder, agent.config.encoder)
    replay = ReplayBuffer(SPEC, ACTION_DIM, 100, frame_encoder=cache)
    replay.add(episode(10, seed=2))
    assert cache.encoded == 2 * 11  # two cameras, 10 transitions = 11 frames each
    assert replay.frames["images/front"].dtype == np.float16 and replay.frames["images/front"].shape[1:] == (8, 1, 1)
    batch = replay.sample(6, np.random.default_rng(0))
    assert batch.observations["images/front"].dtype == torch.float16
    assert batch.observations["images/front"].shape == (6, 8, 1, 1)
    plain = ReplayBuffer(SPEC, ACTION_DIM, 100)
    assert replay.bytes_per_transition() < plain.bytes_per_transition() / 10


def test_stored_views_are_picked_per_sample_for_obs_and_next_obs_independently():
    agent = make_agent(cached_augmentation="stored_crops", stored_crops=4)
    replay = ReplayBuffer(SPEC, ACTION_DIM, 100, frame_encoder=CachedTrunkFeatures(agent.encoder, agent.config.encoder))
    replay.add(episode(3, seed=3))
    stored = torch.from_numpy(replay.frames["images/front"][: replay.frames_added])  # (frames, 4 views, 8, 1, 1)
    every_view = stored.reshape(-1, 8)
    batch = replay.sample(200, np.random.default_rng(0))
    views = set()
    for observations in (batch.observations, batch.next_observations):
        for sample in observations["images/front"].reshape(200, 8):
            views.add(int((every_view == sample).all(dim=1).nonzero()[0]) % 4)
    assert views == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="needs an rng"):
        replay.gather(np.array([0]), batch, 0)


def test_a_replay_save_with_other_stored_features_is_refused(tmp_path):
    agent = make_agent(cached_augmentation="none")
    replay = ReplayBuffer(SPEC, ACTION_DIM, 50, frame_encoder=CachedTrunkFeatures(agent.encoder, agent.config.encoder))
    replay.add(episode(5, seed=4))
    replay.save(tmp_path / "replay")
    restored = ReplayBuffer(SPEC, ACTION_DIM, 50, frame_encoder=CachedTrunkFeatures(agent.encoder, agent.config.encoder))
    restored.load(tmp_path / "replay")
    assert len(restored) == 5 and np.array_equal(restored.frames["images/wrist"], replay.frames["images/wrist"])
    with pytest.raises(ReplayFileError, match="stored frame 'images/front'"):
        ReplayBuffer(SPEC, ACTION_DIM, 50).load(tmp_path / "replay")


def test_an_update_on_cached_features_trains_the_head_and_never_the_trunk():
    for augmentation in ("feature_shift", "stored_crops", "none"):
        agent = make_agent(cached_augmentation=augmentation)
        replay = MixedReplay.from_config(TrainingConfig(online_buffer_capacity=100, demo_buffer_capacity=100), SPEC, ACTION_DIM,
                                         frame_encoder=CachedTrunkFeatures(agent.encoder, agent.config.encoder))
        replay.add(episode(12, seed=5))
        before = {k: v.clone() for k, v in agent.encoder.state_dict().items()}
        metrics = agent.update(replay.sample(8, np.random.default_rng(0)))
        assert np.isfinite(metrics["critic_loss"]), augmentation
        after = agent.encoder.state_dict()
        frozen = [k for k in before if ".trunk." in k or ".projection." in k]
        head = [k for k in before if ".head." in k]
        assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
        assert any(not torch.equal(before[k], after[k]) for k in head)


def test_feature_shift_is_identity_at_zero_and_a_bilinear_move_with_the_border_replicated():
    maps = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    assert torch.equal(random_feature_shift(maps, 0.0), maps)
    shifted = random_feature_shift(maps, 0.5, torch.Generator().manual_seed(0))
    # Every value lies between the map's neighbours: a shift of at most half a cell.
    assert shifted.shape == maps.shape and not torch.equal(shifted, maps)
    assert (shifted - maps).abs().max() <= 0.5 * 4 + 0.5 * 1 + 1e-4  # rows step 4, columns step 1
    grid = torch.nn.functional.affine_grid  # the same shifts through grid_sample agree
    generator = torch.Generator().manual_seed(0)
    shifts = (torch.rand(2, 2, generator=generator) * 2 - 1) * 0.5
    theta = torch.zeros(2, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 2], theta[:, 1, 2] = shifts[:, 1] * 2 / 4, shifts[:, 0] * 2 / 4
    reference = torch.nn.functional.grid_sample(maps, grid(theta, list(maps.shape), align_corners=False),
                                                padding_mode="border", align_corners=False)
    assert torch.allclose(shifted, reference, atol=1e-4)


def test_received_batches_of_one_stream_are_joined_in_order_and_streams_kept_apart():
    class Received:
        def __init__(self, stream, arrays):
            self.stream_id, self.arrays = stream, arrays

    a1, a2, b1, a3 = (episode(2, seed=s, ends=False) for s in range(4))
    runs = runs_per_stream([Received("a", a1), Received("a", a2), Received("b", b1), Received("a", a3)])
    assert [(stream, count) for stream, _, count in runs] == [("a", 4), ("b", 2), ("a", 2)]
    assert np.array_equal(runs[0][1]["rewards"], np.concatenate([a1["rewards"], a2["rewards"]]))


def test_the_actors_policy_sees_the_features_the_learner_cached():
    from robot_stack.policy import Policy

    agent = make_agent(cached_augmentation="none")
    cache = CachedTrunkFeatures(agent.encoder, agent.config.encoder)
    policy = Policy.build(agent.config, SPEC, ACTION_DIM, True)  # built without the weights file, as an actor is
    policy.load_weights(agent.policy_weights())  # the projection travels with the policy's weights
    arrays = episode(1, seed=6)
    observation = {"state": arrays["observations/state"][0],
                   "images": {c: arrays[f"observations/images/{c}"][0] for c in ("front", "wrist")}}
    with torch.no_grad():
        acted_on = policy.networks.encoder.cameras["front"].trunk_features(torch.from_numpy(observation["images"]["front"][None]))
    stored = torch.from_numpy(cache.encode("images/front", observation["images"]["front"][None])).float()
    assert torch.allclose(acted_on, stored, atol=1e-2, rtol=1e-2)
    action = policy.act(observation, deterministic=True, rng=np.random.default_rng(0))
    assert action.shape == (ACTION_DIM,) and np.all(np.abs(action) <= 1)
