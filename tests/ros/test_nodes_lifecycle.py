"""Every node starts and stops cleanly (exit 0) on SIGINT and on SIGTERM; the camera node
publishes images and intrinsics of the controller's simulated world."""

import signal
import time

import numpy as np
import pytest
from rosproc import REPO, NodeProcess, enter_ros_environment, wait_for

TASKS = REPO / "hardware_configs" / "tasks"
UP = {
    "controller": "active: tracking targets",
    "reward": "serving",
    "reset": "reset mode",
    "camera": "publishing",
    "spacemouse": "publishing teleop",
    "actor": "from ",  # the task file was read; it then waits for the cell
}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("node", sorted(UP))
def test_node_stops_cleanly(node, sig, ros_env, tmp_path):
    process = NodeProcess(node, {"config": str(TASKS / "sim_pick_cube_state.yaml")}, ros_env, tmp_path)
    try:
        wait_for(lambda: UP[node] in process.log(), 30, f"{node} to come up", [process])
        started = time.monotonic()
        assert process.stop(sig, timeout_s=10) == 0, process.log()[-3000:]
        assert time.monotonic() - started < 10
    finally:
        if process.alive():
            process.stop(signal.SIGKILL)


def test_bad_config_is_named(ros_env, tmp_path):
    process = NodeProcess("reward", {"config": str(tmp_path / "missing.yaml")}, ros_env, tmp_path)
    process.process.wait(30)
    assert process.process.returncode == 2
    assert "missing.yaml" in process.log() and "not found" in process.log()


@pytest.mark.parametrize("node", ["actor", "controller"])
def test_a_gymnasium_task_is_refused_by_the_cell_in_one_line(node, ros_env, tmp_path):
    # The cell drives the project's Franka; a gymnasium env runs in `robot-stack session`/`actor`.
    task = REPO / "tests" / "envs" / "point_mass_task.yaml"
    process = NodeProcess(node, {"config": str(task)}, ros_env, tmp_path)
    process.process.wait(30)
    assert process.process.returncode == 2, process.log()[-3000:]
    refusal = [line for line in process.log().splitlines() if "configuration error" in line]
    assert len(refusal) == 1 and "task 'point_mass' runs a gymnasium env (factory point_mass_env:make_point_mass)" in refusal[0]
    assert "and the ROS 2 node '" in refusal[0] and "' drives the project's Franka" in refusal[0]


def _first_image_and_info(ros_env, image_camera, info_camera, processes, timeout_s):
    """The first image of one camera and CameraInfo of another that the camera node publishes,
    read by a probe node in this process; the processes must stay alive meanwhile."""
    enter_ros_environment(ros_env)
    import rclpy
    from rclpy.node import Node
    from sensor_msgs.msg import CameraInfo, Image

    rclpy.init()
    node = Node("camera_probe")
    got = {}
    qos = rclpy.qos.qos_profile_sensor_data
    node.create_subscription(Image, f"cameras/{image_camera}/image_raw", lambda m: got.__setitem__("image", m), qos)
    node.create_subscription(CameraInfo, f"cameras/{info_camera}/camera_info", lambda m: got.__setitem__("info", m), qos)
    try:
        deadline = time.monotonic() + timeout_s
        while not ("image" in got and "info" in got) and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
            assert all(p.alive() for p in processes), processes[-1].log()[-3000:]
        assert "image" in got and "info" in got, processes[-1].log()[-3000:]
    finally:
        node.destroy_node()
        rclpy.shutdown()
    image = got["image"]
    assert (image.height, image.width, image.encoding) == (128, 128, "rgb8")
    return np.frombuffer(image.data, np.uint8).reshape(128, 128, 3), got["info"]


def test_camera_node_renders_the_controller_world(ros_env, tmp_path):
    config = {"config": str(TASKS / "sim_pick_cube.yaml")}
    controller = NodeProcess("controller", config, ros_env, tmp_path)
    camera = NodeProcess("camera", {**config, "fps": 10.0}, ros_env, tmp_path)
    try:
        pixels, info = _first_image_and_info(ros_env, "front", "wrist", [controller, camera], 60)
        assert pixels.std() > 5  # a rendered scene, not a blank frame
        assert (info.height, info.width) == (128, 128) and info.k[0] > 0 and info.k[8] == 1.0
    finally:
        assert camera.stop() == 0
        assert controller.stop() == 0


def test_camera_node_publishes_a_recorded_realsense_camera(ros_env, tmp_path):
    pytest.importorskip("pyrealsense2", reason="pyrealsense2 is not installed (pip install -e '.[realsense]')")
    import sys

    sys.path.insert(0, str(REPO / "tests" / "hardware"))
    from realsense_recording import record

    from robot_stack.config import load_task_config
    from robot_stack.config.loader import config_to_yaml
    from robot_stack.config import with_fields

    recording = record(tmp_path / "wrist.db3", n_frames=90, fps=30, size_wh=(96, 64))
    config = load_task_config(TASKS / "fr3_lab_insertion.yaml")
    replay = config.cameras.cameras["wrist_1"].model_copy(
        update={"kind": "replay", "replay_path": recording.path, "resolution_wh": (96, 64), "crop_xywh": (16, 0, 64, 64)}
    )
    config = with_fields(config, "cameras", cameras={"wrist_1": replay})
    config = with_fields(config, "task.observation", images=("wrist_1",))
    path = tmp_path / "lab.yaml"
    path.write_text(config_to_yaml(config))

    camera = NodeProcess("camera", {"config": str(path), "cameras": ["wrist_1"], "fps": 10.0}, ros_env, tmp_path)
    try:
        pixels, info = _first_image_and_info(ros_env, "wrist_1", "wrist_1", [camera], 30)
        # The recording's quadrants (red, green / blue, yellow) survive the crop and resize.
        assert pixels[10, 10, 0] > pixels[10, 10, 1] and pixels[10, 117, 1] > pixels[10, 117, 0]
        assert pixels[117, 10, 2] > pixels[117, 10, 0]
        # The recording's intrinsics (fx = fy = 96, centre (48, 32)), moved by the crop and
        # scaled by the resize (64 -> 128 px).
        assert (info.height, info.width) == (128, 128)
        np.testing.assert_allclose([info.k[0], info.k[4], info.k[2], info.k[5], info.k[8]], [192, 192, 64, 64, 1])
    finally:
        assert camera.stop() == 0


def test_reset_and_reward_nodes_take_their_streams_on_a_feeds_node_with_its_own_name(ros_env, tmp_path):
    # Launch renames a node with `-r __node:=<name>`, which applies to every node in the
    # process: the feeds node must still get its own name, in the launched namespace.
    config = {"config": str(TASKS / "sim_pick_cube_state.yaml")}
    remaps = {"__ns": "/cell1"}
    reset = NodeProcess("reset", config, ros_env, tmp_path, remaps={**remaps, "__node": "resetter"})
    reward = NodeProcess("reward", config, ros_env, tmp_path, remaps=remaps)
    processes = [reset, reward]
    enter_ros_environment(ros_env)
    import rclpy
    from rclpy.node import Node

    rclpy.init()
    probe = Node("names_probe")
    expected = {("resetter", "/cell1"), ("resetter_feeds", "/cell1"), ("reward_service", "/cell1"),
                ("reward_service_feeds", "/cell1")}
    try:
        wait_for(lambda: UP["reset"] in reset.log() and UP["reward"] in reward.log(), 30, "reset and reward", processes)

        def seen():
            rclpy.spin_once(probe, timeout_sec=0.05)
            return expected <= set(probe.get_node_names_and_namespaces())

        wait_for(seen, 20, "the nodes and their feeds nodes in the ROS graph", processes, poll_s=0.0)
        names = [name for name, _ in probe.get_node_names_and_namespaces()]
        assert names.count("resetter") == 1 and names.count("reward_service") == 1
        subscribed = {topic for topic, _ in probe.get_subscriber_names_and_types_by_node("resetter_feeds", "/cell1")}
        assert "/cell1/franka/tcp_pose" in subscribed
        for process in processes:
            assert process.stop(signal.SIGINT, timeout_s=10) == 0, process.log()[-3000:]
    finally:
        probe.destroy_node()
        rclpy.shutdown()
        for process in processes:
            if process.alive():
                process.stop(signal.SIGKILL)
