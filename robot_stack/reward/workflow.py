"""``robot-stack reward train`` and ``reward eval``: frames in, a calibrated model and its
figures out."""

from __future__ import annotations

import datetime
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from robot_stack.config.schema import TaskConfig, TaskSpec
from robot_stack.data.files import write_json_atomic
from robot_stack.reward.base import SuccessModel
from robot_stack.reward.detector import load_reward_model
from robot_stack.reward.calibration import EvalReport, choose_threshold, evaluate_scores, plot_pr_curve
from robot_stack.reward.frame_sets import LabelledFrames, concatenate, load_frames
from robot_stack.reward.state_checks import StateChecks

log = logging.getLogger(__name__)


def load_frame_sets(directories: Sequence[Path], cameras: Sequence[str] | None = None) -> LabelledFrames:
    if not directories:
        raise ValueError("no frame set given")
    return concatenate([load_frames(d, cameras) for d in directories])


def model_directory(task: TaskSpec, out: Optional[Path]) -> Path:
    if out is not None:
        return Path(out)
    if task.reward.classifier_path is None:
        raise ValueError(
            f"task '{task.name}' names no task.reward.classifier_path; pass --out for the model directory"
        )
    return Path(task.reward.classifier_path)


@dataclass
class TrainReport:
    directory: Path
    kind: str
    threshold: float
    summary: dict[str, Any]

    def __str__(self) -> str:
        c = self.summary.get("calibration", {})
        reached = "reached" if c.get("target_reached") else "NOT reached (no false success on the calibration frames instead)"
        return (
            f"{self.kind} reward model written to {self.directory}: threshold {self.threshold:.4f} for precision "
            f"{c.get('target_precision')} ({reached}); on the {self.summary.get('calibration_frames')} calibration frames: "
            f"precision {c.get('precision', 0):.1%}, recall {c.get('recall', 0):.1%}"
        )


def train_reward_model(config: TaskConfig, frame_dirs: Sequence[Path], out: Optional[Path] = None, progress: bool = True) -> TrainReport:
    """Train (classifier; VLM few-shot head) and calibrate the task's reward model."""
    from robot_stack.reward.detector import reward_cameras

    reward = config.task.reward
    if reward.source == "sim_ground_truth":
        raise ValueError(
            f"task '{config.task.name}' takes its reward from simulator ground truth (task.reward.source); set it to "
            "'classifier' or 'vlm' to train a reward model"
        )
    directory = model_directory(config.task, out)
    cameras = reward_cameras(config.task, config.cameras)
    frames = load_frame_sets(frame_dirs, cameras)
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    common = {"task": config.task.name, "frame_sets": [str(Path(d).resolve()) for d in frame_dirs], "created": created}
    if reward.source == "classifier":
        from robot_stack.reward.classifier import train_classifier

        trained = train_classifier(frames, reward.classifier, cameras, reward.target_precision, progress=progress)
        summary = trained.summary()
        trained.model.save(directory, {**common, "training": summary})
        _plot_training(trained.history, directory / "training_loss.png")
        return TrainReport(directory, "classifier", trained.model.threshold, summary)

    from robot_stack.reward.vlm import VlmSuccessModel

    model = VlmSuccessModel.from_config(reward.vlm, cameras)
    seed = reward.classifier.training.seed
    train, calibration = frames.split_by_episode(reward.classifier.training.calibration_fraction, seed)
    summary: dict[str, Any] = {"train_frames": len(train), "calibration_frames": len(calibration)}
    if reward.vlm.few_shot:
        summary["few_shot"] = model.fit_few_shot(train, reward.vlm.few_shot_steps, reward.vlm.few_shot_lr, seed=seed)
    scores = model.predict_proba(calibration.images)
    choice = choose_threshold(scores, calibration.is_success, reward.target_precision)
    model.threshold = choice.threshold
    summary["calibration"] = {
        "threshold": choice.threshold, "target_precision": choice.target_precision, "target_reached": choice.reached,
        "precision": choice.precision, "recall": choice.recall, "positives": choice.positives, "negatives": choice.negatives,
    }
    model.save(directory, {**common, "training": summary})
    return TrainReport(directory, "vlm", model.threshold, summary)


def _plot_training(history: list[dict[str, float]], path: Path) -> None:
    if not history:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5.5, 3.5))
    steps = [h["step"] for h in history]
    axes.plot(steps, [h["loss"] for h in history], label="loss")
    axes.plot(steps, [h["batch_accuracy"] for h in history], label="batch accuracy")
    axes.set_xlabel("step")
    axes.grid(alpha=0.3)
    axes.legend()
    axes.set_title("reward classifier training")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def load_task_model(config: TaskConfig, model_dir: Optional[Path] = None) -> SuccessModel:
    from robot_stack.reward.detector import load_task_reward_model

    if model_dir is not None:
        return load_reward_model(model_dir)
    return load_task_reward_model(config.task, config.cameras)


def evaluate_reward_model(
    config: TaskConfig, frame_dirs: Sequence[Path], out: Path, model_dir: Optional[Path] = None
) -> EvalReport:
    """Precision, recall, confusion matrix and PR curve of the task's reward model (at its
    threshold, with the task's state checks) on held-out frames; writes eval.json and
    pr_curve.png into ``out``."""
    model = load_task_model(config, model_dir)
    threshold = config.task.reward.threshold if config.task.reward.threshold is not None else model.threshold
    frames = load_frame_sets(frame_dirs, model.cameras)
    scores = model.predict_proba(frames.images)
    checks = StateChecks(config.task.reward.state_checks, frames.state_names)
    state_ok = checks.passes(frames.state) if checks else None
    report = evaluate_scores(scores, frames.is_success, threshold, state_ok)
    if len(frames.class_names) > 2 and hasattr(model, "class_proba"):
        predicted = model.class_proba(frames.images).argmax(-1)
        matrix = np.zeros((len(frames.class_names),) * 2, dtype=int)
        np.add.at(matrix, (frames.labels, predicted), 1)
        report.class_confusion = {"classes": list(frames.class_names), "rows_actual_columns_predicted": matrix.tolist()}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "eval.json", {
        "task": config.task.name, "model": str(Path(model_dir or config.task.reward.classifier_path or "zero-shot")),
        "kind": model.kind, "cameras": list(model.cameras), "state_checks": checks.describe(),
        "frame_sets": [str(d) for d in frame_dirs], **report.to_json(),
    })
    plot_pr_curve(report, out / "pr_curve.png", f"{config.task.name}: {model.kind} on {report.frames} held-out frames")
    return report


def eval_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
