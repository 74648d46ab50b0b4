"""The reward service node with a learned classifier: it answers a query with the same
probability as the Python API, and a query it cannot answer gets -1 and a message naming
the problem (the node goes on serving)."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest
from rosproc import REPO, NodeProcess

from robot_stack.config import config_to_yaml, load_task_config
from robot_stack.config.schema import ClassifierConfig, EncoderConfig
from robot_stack.reward.detector import load_reward_model
from robot_stack.reward.classifier import SuccessClassifierModel, SuccessClassifierNet

CONFIG = REPO / "hardware_configs" / "tasks" / "sim_pick_cube_classifier.yaml"


@pytest.fixture
def classifier_config(tmp_path):
    config = ClassifierConfig(encoder=EncoderConfig(bottleneck_dim=16, spatial_embeddings=2), hidden_dim=16)
    image_hw = {"front": (128, 128), "wrist": (128, 128)}
    net = SuccessClassifierNet(("front", "wrist"), image_hw, config, 2)
    model_dir = SuccessClassifierModel(net, config, image_hw, ("failure", "success"), threshold=0.55).save(tmp_path / "model")
    task = load_task_config(CONFIG)
    # No state checks here: they read the controller's state, which this test does not run.
    reward = task.task.reward.model_copy(update={"classifier_path": model_dir, "state_checks": ()})
    task = task.model_copy(update={"task": task.task.model_copy(update={"reward": reward})})
    path = tmp_path / "task.yaml"
    path.write_text(config_to_yaml(task))
    return path, model_dir


PROBE = """
import json, sys, time
import numpy as np
import rclpy
from rclpy.node import Node
from robot_stack_interfaces.srv import ClassifySuccess
from robot_stack_ros.convert import image_msg, time_msg

data = np.load(sys.argv[1])
rclpy.init()
node = Node("reward_probe")
client = node.create_client(ClassifySuccess, "reward/classify_success")
deadline = time.monotonic() + 60
while not client.wait_for_service(timeout_sec=0.2):
    if time.monotonic() > deadline:
        sys.exit("reward service did not come up")

def call(names, images):
    request = ClassifySuccess.Request()
    request.stamp = time_msg(1.0)
    request.camera_names = list(names)
    request.images = [image_msg(image, request.stamp, name) for name, image in zip(names, images)]
    future = client.call_async(request)
    rclpy.spin_until_future_complete(node, future, timeout_sec=20)
    r = future.result()
    print(json.dumps({"success": bool(r.success), "probability": float(r.probability), "message": r.message}), flush=True)

front, wrist = data["front"], data["wrist"]
call(["wrist", "front"], [wrist, front])
call(["front"], [front])
call(["front", "wrist"], [front[:64], wrist])
call(["front", "wrist"], [front, wrist])
node.destroy_node()
rclpy.shutdown()
"""


def test_classifier_reward_service(ros_env, tmp_path, classifier_config):
    # The probe runs in its own process: the interface package's C libraries are found
    # through the environment the process starts with.
    path, model_dir = classifier_config
    rng = np.random.default_rng(0)
    front, wrist = (rng.integers(0, 255, (128, 128, 3), dtype=np.uint8) for _ in range(2))
    np.savez(tmp_path / "images.npz", front=front, wrist=wrist)
    (tmp_path / "probe.py").write_text(PROBE)
    expected = load_reward_model(model_dir).predict_proba({"front": front[None], "wrist": wrist[None]})[0]

    reward = NodeProcess("reward", {"config": str(path)}, ros_env, tmp_path)
    try:
        probe = subprocess.run([sys.executable, str(tmp_path / "probe.py"), str(tmp_path / "images.npz")], env=ros_env,
                               capture_output=True, text=True, timeout=120)
        assert probe.returncode == 0, f"{probe.stdout}\n{probe.stderr[-3000:]}\n{reward.log()[-3000:]}"
        answers = [json.loads(line) for line in probe.stdout.splitlines() if line.startswith("{")]
        assert len(answers) == 4, probe.stdout
        first, missing, small, again = answers
        assert first["message"] == ""
        assert first["probability"] == pytest.approx(expected, abs=1e-5)
        assert first["success"] == (expected >= 0.55)
        assert missing["probability"] == -1.0 and "wrist" in missing["message"] and not missing["success"]
        assert small["probability"] == -1.0 and "(64, 128)" in small["message"]
        assert again["probability"] == pytest.approx(expected, abs=1e-5)
        assert reward.alive()
    finally:
        assert reward.stop() == 0


def test_reward_node_names_a_missing_model(ros_env, tmp_path):
    task = load_task_config(CONFIG)
    reward = task.task.reward.model_copy(update={"classifier_path": tmp_path / "nowhere"})
    task = task.model_copy(update={"task": task.task.model_copy(update={"reward": reward})})
    path = tmp_path / "task.yaml"
    path.write_text(config_to_yaml(task))
    process = NodeProcess("reward", {"config": str(path)}, ros_env, tmp_path)
    deadline = time.monotonic() + 60
    while process.alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert process.stop() == 2
    assert "nowhere" in process.log() and "reward_model.json" in process.log()
