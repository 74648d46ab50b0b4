"""The success detector (the reward service's Python API) and the simulated env whose reward
comes from it."""

from __future__ import annotations

import numpy as np
import pytest

from reward_fakes import synthetic_frames
from robot_stack.config import load_task_config
from robot_stack.config.schema import (
    CameraConfig,
    CamerasConfig,
    ClassifierConfig,
    EncoderConfig,
    ObservationConfig,
    RewardConfig,
    StateCheckConfig,
    TaskSpec,
)
from robot_stack.envs.factory import make_sim_env
from robot_stack.reward.base import RewardModelError
from robot_stack.reward.classifier import SuccessClassifierModel, SuccessClassifierNet
from robot_stack.reward.detector import SuccessDetector, reward_cameras
from robot_stack.reward.frame_sets import STATE_QUANTITIES
from robot_stack.reward.state_checks import StateChecks


class ConstantModel:
    kind = "classifier"
    cameras = ("front",)
    threshold = 0.8

    def __init__(self, p):
        self.p = np.asarray(p, dtype=np.float64)

    def predict_proba(self, images):
        return self.p[: images["front"].shape[0]]

    def save(self, directory, extra=None):
        raise NotImplementedError


def test_threshold_and_state_checks_combine():
    frames = synthetic_frames(1, 4, seed=0, cameras=("front",))
    z = STATE_QUANTITIES.index("tcp_z_m")
    state = np.zeros((4, len(STATE_QUANTITIES)), np.float32)
    state[:, z] = (0.2, 0.2, 0.05, 0.2)
    checks = StateChecks([StateCheckConfig(quantity="tcp_z_m", op=">", value=0.1)])
    detector = SuccessDetector(ConstantModel([0.9, 0.5, 0.95, 0.8]), None, checks)
    answer = detector.query_batch(frames.images, state)
    np.testing.assert_array_equal(answer.model_success, [True, False, True, True])
    np.testing.assert_array_equal(answer.success, [True, False, False, True])
    single = detector.query({"front": frames.images["front"][2]}, state[2])
    assert single.model_success and not single.success and single.failed_checks == ("tcp_z_m > 0.1 (is 0.05)",)
    with pytest.raises(ValueError, match="needs the robot state"):
        detector.query({"front": frames.images["front"][0]})
    assert SuccessDetector(ConstantModel([0.9]), threshold=0.95).query({"front": frames.images["front"][0]}).success is False
    assert len(detector.latency_s) == 2


def save_random_classifier(directory, cameras=("front", "wrist"), hw=(128, 128), threshold=0.6):
    config = ClassifierConfig(encoder=EncoderConfig(bottleneck_dim=16, spatial_embeddings=2), hidden_dim=16)
    image_hw = {c: hw for c in cameras}
    net = SuccessClassifierNet(cameras, image_hw, config, 2)
    return SuccessClassifierModel(net, config, image_hw, ("failure", "success"), threshold).save(directory)


def with_reward(config, **reward):
    task = config.task
    return config.model_copy(update={"task": task.model_copy(update={"reward": task.reward.model_copy(update=reward)})})


def test_state_task_renders_the_reward_cameras_and_reports_the_truth(pick_cube_state_yaml, tmp_path):
    model_dir = save_random_classifier(tmp_path / "model")
    config = with_reward(load_task_config(pick_cube_state_yaml), source="classifier", classifier_path=model_dir,
                         classifier=ClassifierConfig(cameras=("front", "wrist")))
    sim = make_sim_env(config)
    try:
        observation, info = sim.env.reset(seed=0)
        assert "images" not in observation  # the policy still sees state only
        assert {"success_probability", "true_success", "cube_lift_m"} <= set(info)
        _, reward, terminated, _, info = sim.env.step(np.zeros(sim.env.action_dim))
        p = info["success_probability"]
        assert 0.0 <= p <= 1.0 and info["success"] == (p >= 0.6) and reward == float(info["success"])
        assert info["true_success"] == 0.0
        images = sim.env.camera_images()
        direct = SuccessDetector.from_task(config.task, config.cameras).query({c: images[c] for c in ("front", "wrist")}, sim.backend.read_state())
        assert direct.probability == pytest.approx(p, abs=1e-6)
    finally:
        sim.env.close()


def test_reward_model_that_does_not_fit_the_task_is_named(pick_cube_state_yaml, tmp_path):
    config = load_task_config(pick_cube_state_yaml)
    side = save_random_classifier(tmp_path / "side", cameras=("side",))
    with pytest.raises(RewardModelError, match="side"):
        SuccessDetector.from_task(with_reward(config, source="classifier", classifier_path=side).task, config.cameras)
    with pytest.raises(RewardModelError, match="no reward_model.json"):
        SuccessDetector.from_task(
            with_reward(config, source="classifier", classifier_path=tmp_path / "missing").task, config.cameras
        )
    with pytest.raises(ValueError, match="ground truth"):
        SuccessDetector.from_task(config.task, config.cameras)


def test_reward_cameras_are_the_configured_ones_else_the_observed_ones_else_every_camera():
    cameras = CamerasConfig(cameras={"front": CameraConfig(), "wrist": CameraConfig()})
    observed = ObservationConfig(images=("wrist",))
    configured = RewardConfig(classifier=ClassifierConfig(cameras=("front",)))

    assert reward_cameras(TaskSpec(name="t", observation=observed, reward=configured), cameras) == ("front",)
    assert reward_cameras(TaskSpec(name="t", observation=observed), cameras) == ("wrist",)
    assert reward_cameras(TaskSpec(name="t"), cameras) == ("front", "wrist")
    with pytest.raises(ValueError, match=r"\['front'\]; the task's cameras are \('wrist',\)"):
        reward_cameras(TaskSpec(name="t", reward=configured), CamerasConfig(cameras={"wrist": CameraConfig()}))
