"""`robot-stack encoder pretrain`: targets a real cell records (TCP, gripper, the demo's grasp and
final poses), a trunk trained on demo frames, a projection fitted to them, a weights file the
task's encoder loads; bad inputs are named."""

import json

import numpy as np
import pytest
import safetensors.numpy
import torch

from learner.encoder_pretrain import PretrainError, PretrainFrames, load_pretrain_frames, regression_targets
from robot_stack.cli import main as cli_main
from robot_stack.config import config_to_yaml, load_task_config
from robot_stack.config.schema import TaskSpec
from robot_stack.data.demo_sets import DEMOS_FILE
from robot_stack.policy.encoders import ImageEncoder
from robot_stack.config import with_fields

torch.set_num_threads(1)
SIZE = 32


def write_demo_set(directory, episodes=6, steps=8, seed=0):
    """Demos in the recorded format: a bright square where the TCP is, the gripper closing half-way."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True)
    entries = []
    for index in range(episodes):
        start, goal = rng.uniform(-0.05, 0.05, 3), rng.uniform(-0.05, 0.05, 3)
        tcp = np.linspace(start, goal, steps + 1).astype(np.float32)
        width = np.where(np.arange(steps + 1) < steps // 2, 0.08, 0.04).astype(np.float32)
        state = np.zeros((steps + 1, 13), np.float32)  # tcp_pose (6), tcp_velocity (6), gripper_width (1)
        state[:, :3], state[:, 12] = tcp, width
        images = np.full((steps + 1, SIZE, SIZE, 3), 30, np.uint8)
        for t, (x, y, _) in enumerate(tcp):
            row, col = int((x + 0.05) / 0.1 * (SIZE - 6)), int((y + 0.05) / 0.1 * (SIZE - 6))
            images[t, row : row + 6, col : col + 6] = 250
        arrays = {"observations/state": state[:-1], "next_observations/state": state[1:]}
        for camera in ("front", "wrist"):
            arrays[f"observations/images/{camera}"], arrays[f"next_observations/images/{camera}"] = images[:-1], images[1:]
        arrays["actions"] = np.zeros((steps, 4), np.float32)
        name = f"episode_{index:03d}.safetensors"
        safetensors.numpy.save_file(arrays, str(directory / name))
        entries.append({"file": name, "seed": index, "length": steps, "return": 1.0})
    (directory / DEMOS_FILE).write_text(json.dumps({"task": "sim_pick_cube", "episodes": entries}))


@pytest.fixture
def task(pick_cube_yaml, tmp_path):
    config = load_task_config(pick_cube_yaml)
    config = with_fields(config, "agent.encoder", projection_channels=16, pretrained_path=tmp_path / "encoder.safetensors")
    path = tmp_path / "task.yaml"
    path.write_text(config_to_yaml(config))
    return path


def test_keypoint_targets_are_the_demos_grasp_and_final_poses_relative_to_the_tcp():
    tcp = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0], [5, 5, 5], [6, 5, 5]], np.float32)
    frames = PretrainFrames(images={}, episodes=np.array([0, 0, 0, 0, 1, 1]), tcp_xyz=tcp,
                            gripper_width=np.array([0.08, 0.08, 0.02, 0.02, 0.05, 0.05], np.float32))
    targets, mask, names = regression_targets(frames, "keypoints")
    grasp = [names.index(n) for n in ("grasp_dx", "grasp_dy", "grasp_dz")]
    final = [names.index(n) for n in ("final_dx", "final_dy", "final_dz")]
    assert np.allclose(targets[:4, grasp], tcp[2] - tcp[:4])  # the gripper closed at step 2
    assert np.allclose(targets[:4, final], tcp[3] - tcp[:4])
    assert mask[:4, grasp].all() and not mask[4:, grasp].any()  # episode 1 never moved its gripper
    assert np.allclose(targets[4:, final], tcp[5] - tcp[4:])
    _, _, proprioception = regression_targets(frames, "proprioception")
    assert proprioception == ["tcp_x", "tcp_y", "tcp_z", "gripper_width"]


def test_pretrain_writes_a_trunk_and_a_fitted_projection_the_task_encoder_loads(task, tmp_path, capsys):
    write_demo_set(tmp_path / "demos")
    out = tmp_path / "encoder.safetensors"
    code = cli_main(["encoder", "pretrain", str(task), "--frames", str(tmp_path / "demos"), "--steps", "40",
                     "--threads", "1", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "encoder.safetensors.json").read_text())
    assert report["objective"] == "keypoints" and report["steps"] == 40 and report["frames"] == 6 * 9
    assert report["loss_end"] < report["loss_start"]
    assert set(report["validation_r2"]) == {"front", "wrist"} and "grasp_dx" in report["validation_r2"]["front"]
    assert report["projection"]["channels"] == 16 and 0 < report["projection"]["variance_kept"] <= 1
    config = load_task_config(task)
    encoder = ImageEncoder((SIZE, SIZE), config.agent.encoder, mixed_precision=False).eval()
    frames = load_pretrain_frames([tmp_path / "demos"], config.task).images["front"]
    with torch.no_grad():
        features = encoder.trunk_features(torch.from_numpy(frames))
    assert features.shape == (len(frames), 16, 1, 1)
    # The projection centres the trunk's channels and scales them to unit average variance.
    assert features.mean(dim=0).abs().max() < 0.5
    assert 0.3 < features.var(dim=0).mean() < 3.0


def test_pretrain_refuses_folders_that_hold_no_frames_and_states_without_the_tcp(task, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli_main(["encoder", "pretrain", str(task), "--frames", str(tmp_path / "empty"), "--no-progress"]) == 1
    assert "neither a demo set (demos.json) nor a frame set (frames.json)" in capsys.readouterr().err
    write_demo_set(tmp_path / "demos", episodes=2)
    config = load_task_config(task)
    config = with_fields(config, "task.observation", state=("gripper_width",))
    with pytest.raises(PretrainError, match="has no 'tcp_pose'"):
        load_pretrain_frames([tmp_path / "demos"], config.task)


def test_steps_zero_only_fits_the_projection_of_the_given_trunk(task, tmp_path):
    from robot_stack.policy.encoders import ResNet10, save_trunk_weights

    write_demo_set(tmp_path / "demos", episodes=3)
    torch.manual_seed(5)
    given = ResNet10()
    save_trunk_weights(given, tmp_path / "imagenet.safetensors")
    assert cli_main(["encoder", "pretrain", str(task), "--frames", str(tmp_path / "demos"), "--init",
                     str(tmp_path / "imagenet.safetensors"), "--steps", "0", "--no-progress"]) == 0
    tensors = safetensors.numpy.load_file(str(tmp_path / "encoder.safetensors"))
    assert tensors["projection.weight"].shape == (16, 512, 1, 1)
    assert np.array_equal(tensors["stages.3.conv2.weight"], given.state_dict()["stages.3.conv2.weight"].numpy())


def test_the_pretrain_summary_line_skips_targets_without_an_r2() -> None:
    from robot_stack.cli.encoder_commands import pretrain_summary

    report = {"objective": "keypoints", "steps": 600, "frames": 421, "loss_start": 1.2, "loss_end": 0.3,
              "validation_r2": {"front": {"tcp_x": 0.5, "gripper_width": None}, "wrist": {"tcp_x": 0.9, "gripper_width": None}},
              "projection": {"channels": 64, "variance_kept": 0.93}}
    line = pretrain_summary(report)
    assert "loss 1.2 -> 0.3" in line and "median 0.70 over 2 targets" in line and "keeps 93%" in line
    bare = pretrain_summary({"objective": "keypoints", "steps": 0, "frames": 10, "loss_start": None, "validation_r2": {}})
    assert "no training" in bare and "R^2" not in bare


def test_a_task_section_without_cameras_has_nothing_to_pretrain_on(tmp_path):
    with pytest.raises(PretrainError, match="task 't' has no cameras in task.observation.images"):
        load_pretrain_frames([tmp_path], TaskSpec(name="t"))
