"""The success detector: a reward model, its threshold and the task's state checks, behind
one call. This is the Python API of the reward service; the ROS 2 reward node and the env
(``LearnedSuccess``) both call it.

    detector = SuccessDetector.from_task(config.task, config.cameras)   # task.reward: source, model, checks
    answer = detector.query({"front": img, "wrist": img}, state)        # one frame
    answers = detector.query_batch({"front": (B,H,W,3), ...}, states)   # many at once
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np

from robot_stack.config.schema import CamerasConfig, TaskSpec
from robot_stack.envs.franka_env import SuccessReading
from robot_stack.hardware.interfaces import RobotState
from robot_stack.reward.base import RewardModelError, SuccessModel, read_model_json
from robot_stack.reward.frame_sets import STATE_QUANTITIES, state_quantities
from robot_stack.reward.state_checks import StateChecks


@dataclass(frozen=True)
class SuccessAnswer:
    probability: float
    success: bool  # probability >= threshold and every state check passes
    model_success: bool  # probability >= threshold alone
    failed_checks: tuple[str, ...] = ()


@dataclass(frozen=True)
class BatchAnswer:
    probability: np.ndarray  # (B,)
    success: np.ndarray  # (B,) bool
    model_success: np.ndarray  # (B,) bool


class SuccessDetector:
    def __init__(self, model: SuccessModel, threshold: Optional[float] = None, state_checks: Optional[StateChecks] = None):
        self.model = model
        self.threshold = float(model.threshold if threshold is None else threshold)
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        self.state_checks = state_checks or StateChecks(())
        self.latency_s: list[float] = []

    @property
    def cameras(self) -> tuple[str, ...]:
        return tuple(self.model.cameras)

    @classmethod
    def from_task(cls, task: TaskSpec, cameras: CamerasConfig, device: str = "cpu") -> "SuccessDetector":
        reward = task.reward
        if reward.source == "sim_ground_truth":
            raise ValueError(f"task '{task.name}' takes its reward from simulator ground truth, not a learned detector")
        model = load_task_reward_model(task, cameras, device)
        known = tuple(cameras.cameras)
        unknown = [c for c in model.cameras if c not in known]
        if unknown:
            raise RewardModelError(
                f"the reward model looks at camera(s) {unknown}, which task '{task.name}' does not configure "
                f"(its cameras: {known})"
            )
        return cls(model, reward.threshold, StateChecks(reward.state_checks))

    def query(self, images: Mapping[str, np.ndarray], state: RobotState | np.ndarray | None = None) -> SuccessAnswer:
        """One frame: images[camera] uint8 (H, W, 3); ``state`` a RobotState or its
        ``STATE_QUANTITIES`` vector (needed when the task has state checks)."""
        batch = {c: np.asarray(images[c])[None] if c in images else None for c in self.cameras}
        batch = {c: v for c, v in batch.items() if v is not None}
        vector = None if state is None else (state_quantities(state) if isinstance(state, RobotState) else np.asarray(state))
        answer = self.query_batch(batch, None if vector is None else vector[None])
        failed = tuple(self.state_checks.failed(vector)) if self.state_checks and vector is not None else ()
        return SuccessAnswer(float(answer.probability[0]), bool(answer.success[0]), bool(answer.model_success[0]), failed)

    def query_batch(self, images: Mapping[str, np.ndarray], states: Optional[np.ndarray] = None) -> BatchAnswer:
        start = time.perf_counter()
        probability = np.asarray(self.model.predict_proba(images), dtype=np.float64)
        model_success = probability >= self.threshold
        success = model_success
        if self.state_checks:
            if states is None:
                raise ValueError(
                    f"the task's reward has state checks ({self.state_checks.describe()}): a query needs the robot state"
                )
            success = model_success & self.state_checks.passes(np.asarray(states).reshape(probability.size, len(STATE_QUANTITIES)))
        self.latency_s.append(time.perf_counter() - start)
        if len(self.latency_s) > 10_000:
            del self.latency_s[:5_000]
        return BatchAnswer(probability, success, model_success)


def _classifier_model():
    from robot_stack.reward.classifier import SuccessClassifierModel

    return SuccessClassifierModel


def _vlm_model():
    from robot_stack.reward.vlm import VlmSuccessModel

    return VlmSuccessModel


# reward_model.json "kind" -> the model class that loads it. Imported only when a model of
# that kind is loaded: both pull in torch, the VLM also transformers.
REWARD_MODEL_KINDS: dict[str, Callable[[], type]] = {"classifier": _classifier_model, "vlm": _vlm_model}


def load_reward_model(directory: Path | str, device: str = "cpu") -> SuccessModel:
    """Load a saved reward model of either kind."""
    directory = Path(directory)
    meta = read_model_json(directory)
    return REWARD_MODEL_KINDS[meta["kind"]]().load(directory, device=device)


def load_task_reward_model(task: TaskSpec, cameras: CamerasConfig, device: str = "cpu") -> SuccessModel:
    """The reward model a task names: the trained directory ``task.reward.classifier_path``;
    for a vision-language model without one, the zero-shot model from ``task.reward.vlm``."""
    reward = task.reward
    path: Optional[Path] = reward.classifier_path
    if reward.source == "vlm" and (path is None or not (Path(path) / "reward_model.json").is_file()):
        return _vlm_model().from_config(reward.vlm, reward_cameras(task, cameras), device=device)
    if path is None:
        raise RewardModelError(f"task '{task.name}': task.reward.classifier_path names no reward model directory")
    model = load_reward_model(path, device=device)
    if model.kind != reward.source:
        raise RewardModelError(f"{path}: holds a '{model.kind}' reward model but task.reward.source is '{reward.source}'")
    return model


def reward_cameras(task: TaskSpec, cameras: CamerasConfig) -> tuple[str, ...]:
    """Cameras a task's reward model looks at: as configured, else the observed ones, else all."""
    reward = task.reward
    configured = reward.vlm.cameras if reward.source == "vlm" and reward.vlm is not None else reward.classifier.cameras
    names = tuple(configured) or tuple(task.observation.images) or tuple(cameras.cameras)
    unknown = [c for c in names if c not in cameras.cameras]
    if unknown:
        raise ValueError(f"task.reward names camera(s) {unknown}; the task's cameras are {tuple(cameras.cameras)}")
    return names


class LearnedSuccess:
    """SuccessSource over a detector. ``ground_truth`` (simulation only) adds the true answer
    as the metric ``true_success``, for evaluation; the reward never sees it."""

    def __init__(self, detector: SuccessDetector, ground_truth: Any = None):
        self.detector = detector
        self.ground_truth = ground_truth

    @property
    def cameras(self) -> tuple[str, ...]:
        return self.detector.cameras

    def evaluate(self, observation: dict[str, Any], state: RobotState) -> SuccessReading:
        images = observation.get("images", {})
        missing = [c for c in self.detector.cameras if c not in images]
        if missing:
            raise RewardModelError(f"the reward model needs camera(s) {missing}; the env read {sorted(images)}")
        answer = self.detector.query({c: images[c] for c in self.detector.cameras}, state)
        metrics = {"success_probability": answer.probability}
        if self.ground_truth is not None:
            truth = self.ground_truth.evaluate(observation, state)
            metrics["true_success"] = float(truth.success)
            metrics.update(truth.metrics)
        return SuccessReading(answer.success, metrics)
