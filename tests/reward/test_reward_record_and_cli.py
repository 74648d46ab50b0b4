"""`robot-stack reward record | train | eval` on the simulated pick-cube task, shortened for
CI, and the operator's labels."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from robot_stack.cli import main
from robot_stack.config import config_to_yaml, load_task_config
from robot_stack.hardware.interfaces import TeleopCommand
from robot_stack.reward.frame_sets import load_frames
from robot_stack.reward.record import OperatorLabeller, record_frames


@pytest.fixture
def classifier_task(repo_root, tmp_path):
    """The classifier-rewarded pick-cube task with a small, fast classifier."""
    config = load_task_config(repo_root / "hardware_configs" / "tasks" / "sim_pick_cube_classifier.yaml")
    reward = config.task.reward
    classifier = reward.classifier.model_copy(update={
        "encoder": reward.classifier.encoder.model_copy(update={"bottleneck_dim": 16, "spatial_embeddings": 2}),
        "hidden_dim": 16,
        "training": reward.classifier.training.model_copy(update={"steps": 30, "batch_size": 32, "augmented_copies": 0,
                                                                  "calibration_fraction": 0.4}),
    })
    reward = reward.model_copy(update={"classifier": classifier, "classifier_path": tmp_path / "model"})
    config = config.model_copy(update={"task": config.task.model_copy(update={"reward": reward})})
    path = tmp_path / "task.yaml"
    path.write_text(config_to_yaml(config))
    return path


def test_record_train_eval(classifier_task, tmp_path, capsys):
    frames = tmp_path / "frames"
    mixture = "expert=0.5,near_miss=0.5"
    assert main(["reward", "record", str(classifier_task), "--episodes", "4", "--stride", "10", "--out", str(frames),
                 "--mixture", mixture, "--no-progress"]) == 0
    recorded = load_frames(frames)
    assert recorded.cameras == ("front", "wrist") and len(recorded) == 40
    assert recorded.is_success.any() and not recorded.is_success.all()
    # Labels are the simulator's: success frames are the ones with the hand up.
    z = recorded.state_names.index("tcp_z_m")
    assert recorded.state[recorded.is_success, z].min() > recorded.state[~recorded.is_success, z].min()

    assert main(["reward", "train", str(classifier_task), "--frames", str(frames), "--no-progress"]) == 0
    assert "threshold" in capsys.readouterr().out
    model = json.loads((tmp_path / "model" / "reward_model.json").read_text())
    assert model["kind"] == "classifier" and 0.5 <= model["threshold"] < 1.0
    assert (tmp_path / "model" / "training_loss.png").is_file()

    out = tmp_path / "eval"
    assert main(["reward", "eval", str(classifier_task), "--frames", str(frames), "--out", str(out)]) == 0
    report = json.loads((out / "eval.json").read_text())
    assert report["frames"] == 40 and set(report["confusion"]) == {"true_positive", "false_positive", "true_negative", "false_negative"}
    assert report["state_checks"] == "tcp_z_m >= 0.135"
    assert (out / "pr_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["reward", "eval", str(classifier_task), "--frames", str(frames), "--out", str(out), "--min-precision", "1.01"]) in (0, 3)


def test_cli_errors_name_the_problem(classifier_task, pick_cube_state_yaml, tmp_path, capsys):
    assert main(["reward", "train", str(pick_cube_state_yaml), "--frames", str(tmp_path), "--out", str(tmp_path / "m")]) == 1
    assert "ground truth" in capsys.readouterr().err
    assert main(["reward", "train", str(classifier_task), "--frames", str(tmp_path / "nothing")]) == 1
    assert "no frames.json" in capsys.readouterr().err
    assert main(["reward", "eval", str(classifier_task), "--frames", str(tmp_path), "--out", str(tmp_path / "e")]) == 1
    assert "reward_model.json" in capsys.readouterr().err
    assert main(["reward", "record", str(classifier_task), "--out", str(tmp_path / "f"), "--mixture", "expert"]) == 2
    assert main(["reward", "record", str(classifier_task), "--out", str(tmp_path / "f"), "--mixture", "dance=1"]) == 1
    assert "unknown behaviours" in capsys.readouterr().err


def test_near_miss_episodes_never_reach_success(pick_cube_state_yaml, tmp_path):
    config = load_task_config(pick_cube_state_yaml)
    report = record_frames(config, 3, tmp_path / "f", stride=5, mixture={"near_miss": 1.0}, progress=False)
    assert report.behaviours == {"near_miss": 3}
    assert report.counts["success"] == 0 and report.counts["failure"] == 60


def test_operator_labels_from_button_and_keys():
    read_end, write_end = os.pipe()
    try:
        labeller = OperatorLabeller(key_fd=read_end)
        idle = TeleopCommand(np.zeros(6), None, False)
        pressed = TeleopCommand(np.zeros(6), None, True, buttons=("success",))
        assert labeller.label({}, idle) == 0
        assert labeller.label({}, pressed) == 1
        os.write(write_end, b"s")
        assert labeller.label({}, idle) == 1 and labeller.label({}, None) == 1
        os.write(write_end, b"xf")
        assert labeller.label({}, idle) == 0
        os.write(write_end, b"S")
        labeller.reset()  # a new episode starts as failure
        assert labeller.label({}, idle) == 1  # ...unless the key came after the reset
        assert labeller.key_presses == 3
    finally:
        os.close(read_end)
        os.close(write_end)
