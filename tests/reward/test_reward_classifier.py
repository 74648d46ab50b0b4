"""The success classifier: training with balanced batches and augmentation, calibration on
held-out episodes, strict save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from reward_fakes import synthetic_frames
from robot_stack.config.schema import ClassifierConfig, ClassifierTrainingConfig, EncoderConfig
from robot_stack.reward.base import KINDS, MODEL_FILE, WEIGHTS_FILE, RewardModelError, SuccessModel
from robot_stack.reward.detector import REWARD_MODEL_KINDS, load_reward_model
from robot_stack.reward.calibration import evaluate_scores
from robot_stack.reward.classifier import (
    SuccessClassifierModel, SuccessClassifierNet, balanced_indices, train_classifier,
)
from robot_stack.policy.encoders import augment_images


def small_config(steps=120, frozen=True, copies=1) -> ClassifierConfig:
    return ClassifierConfig(
        encoder=EncoderConfig(frozen=frozen, bottleneck_dim=32, spatial_embeddings=4, dropout=0.0, random_crop_pad_px=2),
        hidden_dim=32,
        training=ClassifierTrainingConfig(steps=steps, batch_size=32, lr=3e-3, augmented_copies=copies, calibration_fraction=0.3),
    )


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    frames = synthetic_frames(episodes=12, frames_per_episode=12, seed=0)
    return train_classifier(frames, small_config(), ("front", "wrist"), target_precision=0.99, progress=False)


def test_learns_and_calibrates_for_precision_on_new_episodes(trained):
    assert trained.calibration.reached
    assert 0.5 <= trained.model.threshold < 1.0
    held_out = synthetic_frames(episodes=8, frames_per_episode=12, seed=99)
    report = evaluate_scores(trained.model.predict_proba(held_out.images), held_out.is_success, trained.model.threshold)
    assert report.precision >= 0.95 and report.recall >= 0.8, report.summary()
    assert trained.history[-1]["loss"] < trained.history[0]["loss"]
    assert isinstance(trained.model, SuccessModel)


def test_save_load_round_trip_is_exact(trained, tmp_path):
    trained.model.save(tmp_path / "model", {"task": "t"})
    loaded = load_reward_model(tmp_path / "model")
    frames = synthetic_frames(2, 5, seed=5)
    np.testing.assert_array_equal(loaded.predict_proba(frames.images), trained.model.predict_proba(frames.images))
    assert loaded.threshold == trained.model.threshold and loaded.cameras == ("front", "wrist")
    assert json.loads((tmp_path / "model" / MODEL_FILE).read_text())["task"] == "t"


def test_every_reward_model_kind_a_directory_may_hold_has_a_loader():
    assert set(REWARD_MODEL_KINDS) == set(KINDS)


def test_broken_model_directories_are_named(trained, tmp_path):
    directory = trained.model.save(tmp_path / "model")
    (directory / WEIGHTS_FILE).write_bytes(b"garbage")
    with pytest.raises(RewardModelError, match=WEIGHTS_FILE):
        load_reward_model(directory)
    other = SuccessClassifierModel(
        SuccessClassifierNet(("front",), {"front": (32, 32)}, small_config(), 2), small_config(), {"front": (32, 32)},
        ("failure", "success"),
    )
    other.save(tmp_path / "other")
    meta = json.loads((directory / MODEL_FILE).read_text())
    (tmp_path / "other" / WEIGHTS_FILE).replace(directory / WEIGHTS_FILE)
    with pytest.raises(RewardModelError, match="do not fit"):
        load_reward_model(directory)
    (directory / MODEL_FILE).write_text(json.dumps({**meta, "threshold": 1.5}))
    with pytest.raises(RewardModelError, match="threshold"):
        load_reward_model(directory)
    (directory / MODEL_FILE).unlink()
    with pytest.raises(RewardModelError, match="no reward_model.json"):
        load_reward_model(directory)


def test_images_that_do_not_fit_are_refused_by_camera(trained):
    good = synthetic_frames(1, 2, seed=1).images
    with pytest.raises(RewardModelError, match="wrist"):
        trained.model.predict_proba({"front": good["front"]})
    with pytest.raises(RewardModelError, match="front.*\\(64, 64\\)"):
        trained.model.predict_proba({"front": np.zeros((2, 64, 64, 3), np.uint8), "wrist": good["wrist"]})
    with pytest.raises(RewardModelError, match="uint8"):
        trained.model.predict_proba({"front": good["front"].astype(np.float32), "wrist": good["wrist"]})
    assert trained.model.predict_proba({c: v[:0] for c, v in good.items()}).shape == (0,)


def test_balanced_batches_sample_classes_equally():
    labels = np.array([0] * 95 + [1] * 5)
    picks = balanced_indices(labels, 4000, np.random.default_rng(0), balanced=True)
    assert 0.45 < labels[picks].mean() < 0.55
    assert labels[balanced_indices(labels, 4000, np.random.default_rng(0), balanced=False)].mean() < 0.1


def test_augmentation_shifts_and_rescales_within_range():
    images = torch.full((8, 16, 16, 3), 100, dtype=torch.uint8)
    images[:, 6:10, 6:10] = 250
    out = augment_images(images, pad=2, brightness=0.3, contrast=0.3, generator=torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32 and out.shape == images.shape
    assert float(out.min()) >= 0.0 and float(out.max()) <= 255.0
    assert not torch.allclose(out, images.float())


def test_multi_class_and_fine_tuned_trunk():
    frames = synthetic_frames(episodes=8, frames_per_episode=9, seed=3, size=32, cameras=("front",),
                              classes=("failure", "grasped", "success"))
    result = train_classifier(frames, small_config(steps=15, frozen=False), ("front",), 0.9, progress=False)
    probabilities = result.model.class_proba(frames.images)
    assert probabilities.shape == (len(frames), 3)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(result.model.predict_proba(frames.images), probabilities[:, 2])


def test_training_needs_both_kinds_and_the_cameras():
    frames = synthetic_frames(4, 4, seed=0)
    with pytest.raises(ValueError, match="side"):
        train_classifier(frames, small_config(), ("side",), 0.99, progress=False)
    failures_only = frames.take(np.flatnonzero(~frames.is_success))
    with pytest.raises(ValueError, match="no 'success' frame"):
        train_classifier(failures_only, small_config(), ("front",), 0.99, progress=False)
