"""The lab task's env built by make_env from its YAML, with the real devices: the arm through
franky against franky-sim (127.0.0.1), the two wrist cameras played back from recordings, and
the learned success classifier as the reward. Reset, steps and the actor's env factory."""

from pathlib import Path

import numpy as np
import pytest

from franka_sim import FRANKY, FRANKY_SIM, missing_package, start_franky_sim, stop_franky_sim

REPO_ROOT = Path(__file__).resolve().parents[2]
_MISSING = missing_package(FRANKY, FRANKY_SIM)
pytestmark = pytest.mark.skipif(_MISSING is not None, reason=str(_MISSING))


@pytest.fixture(scope="module")
def lab_config(tmp_path_factory):
    pytest.importorskip("pyrealsense2", reason="pyrealsense2 is not installed (pip install -e '.[realsense]')")
    from realsense_recording import record

    from robot_stack.config import load_task_config
    from robot_stack.config.schema import ClassifierConfig, EncoderConfig
    from robot_stack.reward.classifier import SuccessClassifierModel, SuccessClassifierNet
    from robot_stack.config import with_fields

    work = tmp_path_factory.mktemp("lab")
    cameras = ("wrist_1", "wrist_2")
    # An untrained classifier (p near 0.5) behind a threshold it never reaches: no episode ends early.
    classifier = ClassifierConfig(encoder=EncoderConfig(bottleneck_dim=16, spatial_embeddings=2), hidden_dim=16)
    net = SuccessClassifierNet(cameras, {c: (128, 128) for c in cameras}, classifier, 2)
    model_dir = SuccessClassifierModel(net, classifier, {c: (128, 128) for c in cameras}, ("failure", "success"), 0.9999).save(
        work / "classifier"
    )
    config = load_task_config(REPO_ROOT / "hardware_configs" / "tasks" / "fr3_lab_insertion.yaml")
    replays = {}
    for index, name in enumerate(cameras):
        recording = record(work / f"{name}.db3", n_frames=90, fps=30, size_wh=(96, 64), serial=f"00000000000{index}")
        replays[name] = config.cameras.cameras[name].model_copy(
            update={"kind": "replay", "replay_path": recording.path, "resolution_wh": (96, 64), "crop_xywh": (16, 0, 64, 64)}
        )
    config = with_fields(config, "robot", address="127.0.0.1", realtime="ignore", joint_move_speed_factor=0.5)
    config = with_fields(config, "cameras", cameras=replays)
    config = with_fields(config, "teleop", kind="none")
    config = with_fields(config, "task.reward", classifier_path=model_dir, threshold=None)
    process = start_franky_sim(work / "franky_sim.log")
    yield config
    stop_franky_sim(process)


def test_the_lab_task_resets_and_steps_on_the_real_device_code(lab_config):
    from robot_stack.envs.factory import make_env

    env = make_env(lab_config)
    try:
        observation, info = env.reset(seed=0)
        start = env.backend.read_state().tcp_position_m
        # The scripted reset: joint move home, then the randomised start near (0.52, 0, 0.1).
        assert np.linalg.norm(start - np.array([0.52, 0.0, 0.1])) < 0.02, start
        assert set(observation["images"]) == {"wrist_1", "wrist_2"}
        assert observation["images"]["wrist_1"].shape == (128, 128, 3)
        assert "success_probability" in info
        for _ in range(3):
            # The action is in the gripper's frame; pointing down, its +z is the base's -z.
            observation, reward, terminated, truncated, info = env.step(np.array([0.0, 0.0, 1.0, 0.0, 0.0, 0.0]))
            assert reward == float(info["success"]) and 0.0 <= info["success_probability"] <= 1.0
        moved = env.backend.read_state().tcp_position_m
        assert moved[2] < start[2] - 0.01  # three 1 cm steps down, tracked in real time
        assert "true_success" not in info  # only the simulator knows the truth
    finally:
        env.close()


def test_the_actor_builds_the_real_env_for_a_franka_task(lab_config):
    from actor.actor_loop import actor_environment

    environment = actor_environment(lab_config, np.random.default_rng(0))
    try:
        assert type(environment.env.backend).__name__ == "FrankyBackend"
        assert environment.intervention is None  # teleop kind 'none'
    finally:
        environment.env.close()
