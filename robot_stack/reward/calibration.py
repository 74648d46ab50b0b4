"""Thresholds for precision, and the figures a reward model is judged by.

A false "success" ends an episode with reward 1 in a state that is not the goal, which
teaches the policy the wrong thing; a missed success only costs a longer episode. So the
threshold is the lowest one whose held-out precision reaches the target at that threshold
*and every threshold above it* (precision is not monotone in the threshold; a threshold
just above a lucky dip would not hold on new frames), moved to the middle of the gap
below it: every threshold in that gap calls the same calibration frames.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

MIN_THRESHOLD = 0.5  # never call a frame a success the model thinks more likely a failure


@dataclass(frozen=True)
class Confusion:
    true_positive: int
    false_positive: int
    true_negative: int
    false_negative: int

    @property
    def precision(self) -> float:
        called = self.true_positive + self.false_positive
        return self.true_positive / called if called else 1.0

    @property
    def recall(self) -> float:
        positives = self.true_positive + self.false_negative
        return self.true_positive / positives if positives else 1.0

    @property
    def accuracy(self) -> float:
        total = self.true_positive + self.false_positive + self.true_negative + self.false_negative
        return (self.true_positive + self.true_negative) / total if total else 1.0


def confusion(predicted: np.ndarray, actual: np.ndarray) -> Confusion:
    predicted = np.asarray(predicted, dtype=bool)
    actual = np.asarray(actual, dtype=bool)
    return Confusion(
        true_positive=int((predicted & actual).sum()), false_positive=int((predicted & ~actual).sum()),
        true_negative=int((~predicted & ~actual).sum()), false_negative=int((~predicted & actual).sum()),
    )


def precision_recall_curve(scores: np.ndarray, actual: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds ascending, precision, recall): calling "success" at score >= threshold, for
    every distinct score."""
    scores = np.asarray(scores, dtype=np.float64)
    actual = np.asarray(actual, dtype=bool)
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_actual = scores[order], actual[order]
    true_positives = np.cumsum(sorted_actual)
    called = np.arange(1, scores.size + 1)
    # The last index of each run of equal scores: calling at that score calls the whole run.
    last = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
    thresholds = sorted_scores[last]
    precision = true_positives[last] / called[last]
    positives = max(int(actual.sum()), 1)
    recall = true_positives[last] / positives
    return thresholds[::-1], precision[::-1], recall[::-1]


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    target_precision: float
    reached: bool  # False: no threshold reaches the target; the one with no false success was taken
    precision: float
    recall: float
    positives: int
    negatives: int


def choose_threshold(scores: np.ndarray, actual: np.ndarray, target_precision: float) -> ThresholdChoice:
    """The lowest threshold (>= 0.5) whose precision on these frames is at least the target
    there and at every higher threshold. If none is, the threshold just above the highest
    score of a negative frame (no false success on these frames)."""
    scores = np.asarray(scores, dtype=np.float64)
    actual = np.asarray(actual, dtype=bool)
    if not actual.any():
        raise ValueError("calibration frames contain no success: record (or hold out) episodes that end in success")
    if actual.all():
        raise ValueError("calibration frames contain no failure: record (or hold out) episodes with failures")
    thresholds, precision, recall = precision_recall_curve(scores, actual)
    keep = thresholds >= MIN_THRESHOLD
    thresholds, precision, recall = thresholds[keep], precision[keep], recall[keep]
    # good[i]: precision >= target at thresholds[i] and every threshold above it.
    good = np.flip(np.minimum.accumulate(np.flip(precision))) >= target_precision if thresholds.size else np.zeros(0, bool)
    if good.any():
        index = int(np.flatnonzero(good)[0])
        # Any threshold between this score and the next lower one calls the same frames;
        # take the middle (in logits) rather than the edge, so a new frame scored a hair
        # below the lowest calibration success is not lost, nor one a hair above the
        # highest failure below it called.
        lower = scores[scores < thresholds[index]]
        floor = max(float(lower.max()) if lower.size else MIN_THRESHOLD, MIN_THRESHOLD)
        threshold, reached = _logit_midpoint(float(thresholds[index]), floor), True
    else:
        highest_negative = float(scores[~actual].max())
        threshold, reached = float(np.nextafter(max(highest_negative, MIN_THRESHOLD), 1.0)), False
        threshold = min(threshold, float(np.nextafter(1.0, 0.0)))
    matrix = confusion(scores >= threshold, actual)
    return ThresholdChoice(
        threshold=threshold, target_precision=target_precision, reached=reached, precision=matrix.precision,
        recall=matrix.recall, positives=int(actual.sum()), negatives=int((~actual).sum()),
    )


def _logit_midpoint(high: float, low: float) -> float:
    eps = 1e-12
    logit = lambda p: float(np.log(max(p, eps)) - np.log(max(1.0 - p, eps)))  # noqa: E731
    if high <= low:
        return high
    middle = 1.0 / (1.0 + np.exp(-(logit(high) + logit(low)) / 2.0))
    return float(min(max(middle, low), high))


@dataclass
class EvalReport:
    """A reward model on labelled frames at one threshold."""

    frames: int
    positives: int
    threshold: float
    confusion: Confusion
    state_checks_rejected: int = 0  # frames the model called a success that a state check vetoed
    average_precision: float = 0.0
    curve: dict[str, list[float]] = field(default_factory=dict)
    class_confusion: Optional[dict[str, Any]] = None  # multi-class models: the full matrix

    @property
    def precision(self) -> float:
        return self.confusion.precision

    @property
    def recall(self) -> float:
        return self.confusion.recall

    def to_json(self) -> dict[str, Any]:
        return {
            "frames": self.frames, "positives": self.positives, "threshold": self.threshold,
            "precision": self.precision, "recall": self.recall, "accuracy": self.confusion.accuracy,
            "average_precision": self.average_precision, "confusion": asdict(self.confusion),
            "state_checks_rejected": self.state_checks_rejected,
            **({"class_confusion": self.class_confusion} if self.class_confusion else {}),
        }

    def summary(self) -> str:
        c = self.confusion
        return (
            f"{self.frames} frames ({self.positives} success): precision {self.precision:.1%}, recall {self.recall:.1%} "
            f"at threshold {self.threshold:.4f}; TP {c.true_positive} FP {c.false_positive} TN {c.true_negative} "
            f"FN {c.false_negative}; average precision {self.average_precision:.3f}"
        )


def average_precision(scores: np.ndarray, actual: np.ndarray) -> float:
    """Area under the precision-recall curve (step-wise, as recall rises)."""
    thresholds, precision, recall = precision_recall_curve(scores, actual)
    recall_desc, precision_desc = recall[::-1], precision[::-1]
    steps = np.diff(np.r_[0.0, recall_desc])
    return float(np.sum(steps * precision_desc))


def evaluate_scores(scores: np.ndarray, actual: np.ndarray, threshold: float, state_ok: Optional[np.ndarray] = None) -> EvalReport:
    scores = np.asarray(scores, dtype=np.float64)
    actual = np.asarray(actual, dtype=bool)
    called = scores >= threshold
    rejected = 0
    if state_ok is not None:
        rejected = int((called & ~state_ok).sum())
        called = called & state_ok
    thresholds, precision, recall = precision_recall_curve(scores, actual) if scores.size else (np.zeros(0),) * 3
    return EvalReport(
        frames=int(scores.size), positives=int(actual.sum()), threshold=float(threshold),
        confusion=confusion(called, actual), state_checks_rejected=rejected,
        average_precision=average_precision(scores, actual) if actual.any() else 0.0,
        curve={"threshold": thresholds.tolist(), "precision": precision.tolist(), "recall": recall.tolist()},
    )


def plot_pr_curve(report: EvalReport, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = report.curve
    figure, axes = plt.subplots(figsize=(5.5, 4.5))
    axes.plot(curve["recall"], curve["precision"], drawstyle="steps-post", label=f"AP {report.average_precision:.3f}")
    axes.plot([report.recall], [report.precision], "o", color="C3",
              label=f"threshold {report.threshold:.4f}: P {report.precision:.1%}, R {report.recall:.1%}")
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.set_xlim(0.0, 1.02)
    axes.set_ylim(min(0.5, min(curve["precision"] or [0.5])) - 0.02, 1.02)
    axes.grid(alpha=0.3)
    axes.set_title(title)
    axes.legend(loc="lower left")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
