"""Thresholds for precision, PR curves and the evaluation report."""

from __future__ import annotations

import numpy as np
import pytest

from robot_stack.reward.calibration import (
    average_precision, choose_threshold, confusion, evaluate_scores, plot_pr_curve, precision_recall_curve,
)


def test_precision_recall_curve_by_hand():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.2])
    actual = np.array([1, 0, 1, 0, 0], bool)
    thresholds, precision, recall = precision_recall_curve(scores, actual)
    np.testing.assert_allclose(thresholds, [0.2, 0.6, 0.7, 0.8, 0.9])
    np.testing.assert_allclose(precision, [2 / 5, 2 / 4, 2 / 3, 1 / 2, 1.0])
    np.testing.assert_allclose(recall, [1.0, 1.0, 1.0, 0.5, 0.5])
    assert average_precision(scores, actual) == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)


def test_tied_scores_are_called_together():
    thresholds, precision, _ = precision_recall_curve(np.array([0.9, 0.9, 0.1]), np.array([1, 0, 0], bool))
    np.testing.assert_allclose(thresholds, [0.1, 0.9])
    np.testing.assert_allclose(precision, [1 / 3, 1 / 2])


def test_threshold_reaches_the_target_and_holds_above_it():
    # Negatives at 0.75 and 0.95: precision dips at 0.95, so any threshold <= 0.95 is unsafe.
    scores = np.array([0.99, 0.98, 0.97, 0.95, 0.9, 0.85, 0.8, 0.75, 0.3])
    actual = np.array([1, 1, 1, 0, 1, 1, 1, 0, 0], bool)
    choice = choose_threshold(scores, actual, target_precision=0.99)
    assert choice.reached
    assert 0.95 < choice.threshold <= 0.97  # above the negative, in the gap below the lowest safe score
    assert choice.precision == 1.0 and choice.recall == pytest.approx(3 / 6)
    lenient = choose_threshold(scores, actual, target_precision=0.7)
    assert 0.5 <= lenient.threshold < 0.75 and lenient.precision >= 0.7


def test_separated_scores_get_a_threshold_in_the_middle_of_the_gap():
    scores = np.array([0.999, 0.998, 0.6, 0.1])
    actual = np.array([1, 1, 0, 0], bool)
    choice = choose_threshold(scores, actual, 0.99)
    assert 0.6 < choice.threshold < 0.998
    assert choice.recall == 1.0 and choice.precision == 1.0


def test_no_threshold_reaches_the_target_then_no_false_success_on_the_frames():
    scores = np.array([0.99, 0.97, 0.96, 0.2])
    actual = np.array([0, 1, 1, 0], bool)
    choice = choose_threshold(scores, actual, 0.99)
    assert not choice.reached
    assert choice.threshold > 0.99
    assert confusion(scores >= choice.threshold, actual).false_positive == 0


def test_calibration_needs_both_kinds():
    with pytest.raises(ValueError, match="no success"):
        choose_threshold(np.array([0.1, 0.2]), np.array([0, 0], bool), 0.99)
    with pytest.raises(ValueError, match="no failure"):
        choose_threshold(np.array([0.1, 0.2]), np.array([1, 1], bool), 0.99)


def test_report_counts_state_check_vetoes_and_plots(tmp_path):
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    actual = np.array([1, 0, 1, 0], bool)
    state_ok = np.array([True, False, True, True])
    report = evaluate_scores(scores, actual, 0.75, state_ok)
    assert report.state_checks_rejected == 1
    assert (report.confusion.true_positive, report.confusion.false_positive, report.confusion.false_negative) == (1, 0, 1)
    assert report.precision == 1.0 and report.recall == 0.5
    assert set(report.to_json()) >= {"precision", "recall", "confusion", "average_precision"}
    path = plot_pr_curve(report, tmp_path / "pr.png", "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
