"""The built-in generalist (instruction-conditioned chunk transformer), chunk execution, the
plug-in seam, and checkpoints."""

import sys
from pathlib import Path

import numpy as np
import pytest

from learner.rldg.generalist import (
    BuiltinGeneralist,
    ChunkExecutor,
    PolicyFeatures,
    TrainingSample,
    build_generalist,
    hash_words,
    load_generalist,
)
from robot_stack.config.rldg import GeneralistConfig

FEATURES = PolicyFeatures(("x", "y"), ("dx", "dy", "gripper"), (), 10.0)


def _sample(rng, frames_per_episode=10, episodes=12, cameras=()):
    """Two instructions, opposite behaviour: 'go left' moves -state, 'go right' moves +state;
    the gripper closes where the first state entry is positive."""
    states, actions, starts, ends, texts = [], [], [], [], []
    for e in range(episodes):
        text = "go left" if e % 2 else "go right"
        sign = -1.0 if e % 2 else 1.0
        state = rng.uniform(-1, 1, (frames_per_episode, 2)).astype(np.float32)
        action = np.concatenate([sign * 0.5 * state, np.where(state[:, :1] > 0, 1.0, -1.0)], 1)
        start = e * frames_per_episode
        states.append(state), actions.append(action.astype(np.float32))
        starts.append(np.full(frames_per_episode, start)), ends.append(np.full(frames_per_episode, start + frames_per_episode))
        texts += [text] * frames_per_episode
    total = episodes * frames_per_episode
    images = {name: rng.integers(0, 255, (total, 24, 24, 3), dtype=np.uint8) for name in cameras}
    return TrainingSample(np.concatenate(states), np.concatenate(actions), np.concatenate(starts), np.concatenate(ends), texts, images)


def test_words_hash_stably_and_pad():
    ids = hash_words("Pick up the SMALL cube!", 1024, 8)
    assert ids.tolist() == hash_words("pick up the small cube", 1024, 8).tolist()
    assert (ids[:5] > 0).all() and (ids[5:] == 0).all() and ids.max() < 1024
    assert hash_words("pick up the large cube", 1024, 8)[3] != ids[3]


def test_receding_horizon_replans_every_execute_steps():
    executor = ChunkExecutor(GeneralistConfig(chunk=4, execute_steps=2, execution="receding"))
    predictions = 0
    actions = []
    for step in range(6):
        if executor.needs_prediction():
            predictions += 1
            executor.add(np.full((4, 1), step * 0.1) + np.arange(4)[:, None] * 0.01)
        actions.append(float(executor.next_action()[0]))
    assert predictions == 3
    np.testing.assert_allclose(actions, [0.0, 0.01, 0.2, 0.21, 0.4, 0.41], atol=1e-6)


def test_temporal_ensemble_weights_older_chunks_more():
    executor = ChunkExecutor(GeneralistConfig(chunk=3, execute_steps=1, execution="ensemble", ensemble_decay=1.0))
    executor.add(np.zeros((3, 1)))
    assert executor.next_action()[0] == 0.0
    executor.add(np.ones((3, 1)))
    # weights: the older chunk exp(0) = 1, the newer exp(-1)
    expected = np.exp(-1.0) / (1.0 + np.exp(-1.0))
    assert executor.next_action()[0] == pytest.approx(expected, rel=1e-6)


def test_builtin_learns_instruction_conditioned_actions_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    config = GeneralistConfig(d_model=32, layers=1, heads=2, feedforward=64, chunk=1, execute_steps=1, steps=400, batch_size=64,
                              learning_rate=3e-3, warmup_steps=20, dropout=0.0)
    model = BuiltinGeneralist(config, FEATURES)
    summary = model.fit(_sample(rng), tmp_path, progress=False)
    assert summary["final_loss"] < summary["losses"][0] / 3
    state = np.array([0.6, -0.4], np.float32)
    right = model.predict_chunk({"state": state}, "go right")
    left = model.predict_chunk({"state": state}, "go left")
    assert right[0, 0] > 0.1 and left[0, 0] < -0.1  # the instruction flips the motion
    model.save(tmp_path / "ckpt", {k: v for k, v in summary.items() if k != "losses"})
    loaded = load_generalist(tmp_path / "ckpt")
    np.testing.assert_allclose(loaded.predict_chunk({"state": state}, "go right"), right, atol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        loaded.act({"state": np.zeros(5, np.float32)}, "go right")


def test_builtin_with_a_camera_trains_and_needs_its_images(tmp_path):
    rng = np.random.default_rng(1)
    features = PolicyFeatures(("x", "y"), ("dx", "dy", "gripper"), ("front",), 10.0)
    config = GeneralistConfig(cameras=("front",), image_size=16, d_model=32, layers=1, heads=2, feedforward=64, chunk=2, execute_steps=1, steps=5)
    model = BuiltinGeneralist(config, features)
    model.fit(_sample(rng, cameras=("front",)), tmp_path, progress=False)
    action = model.act({"state": np.zeros(2, np.float32), "images": {"front": np.zeros((24, 24, 3), np.uint8)}}, "go left")
    assert action.shape == (3,) and np.all(np.abs(action) <= 1)
    with pytest.raises(KeyError, match="camera 'front'"):
        model.act({"state": np.zeros(2, np.float32), "images": {}}, "go left")


def test_init_from_a_checkpoint_keeps_weights_and_refuses_another_architecture(tmp_path):
    rng = np.random.default_rng(2)
    config = GeneralistConfig(d_model=32, layers=1, heads=2, feedforward=64, chunk=2, execute_steps=1, steps=3)
    first = BuiltinGeneralist(config, FEATURES)
    first.fit(_sample(rng), tmp_path, progress=False)
    first.save(tmp_path / "a", {})
    resumed = build_generalist(config.model_copy(update={"init": tmp_path / "a", "steps": 1}), FEATURES)
    state = {"state": np.array([0.1, 0.2], np.float32)}
    np.testing.assert_allclose(resumed.predict_chunk(state, "go left"), first.predict_chunk(state, "go left"), atol=1e-6)
    with pytest.raises(ValueError, match="d_model: 32 saved, 64 asked for"):
        build_generalist(config.model_copy(update={"init": tmp_path / "a", "d_model": 64}), FEATURES)
    with pytest.raises(FileNotFoundError, match="holds no generalist"):
        load_generalist(tmp_path / "nothing")


def test_plugin_seam(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    rng = np.random.default_rng(3)
    config = GeneralistConfig(kind="plugin_generalist:build")
    model = build_generalist(config, FEATURES)
    model.fit(_sample(rng), tmp_path, progress=False)
    model.save(tmp_path / "p", {})
    loaded = load_generalist(tmp_path / "p")
    action = loaded.act({"state": np.array([0.8, 0.0], np.float32)}, "go right")
    assert action[0] == pytest.approx(0.4, abs=1e-4)
    with pytest.raises(ValueError, match="cannot import"):
        build_generalist(GeneralistConfig(kind="no_such_module:build"), FEATURES)
    with pytest.raises(ValueError, match="expected 'builtin' or 'package.module:factory'"):
        build_generalist(GeneralistConfig(kind="nonsense"), FEATURES)
    sys.modules.pop("plugin_generalist", None)
