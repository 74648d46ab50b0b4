"""The impedance controller node in its own process: NaN targets refused, targets outside
the safety box clamped, the watchdog holds position, the loop keeps its rate, a
deactivated controller refuses targets; a probe node in this process drives it."""

import json
import math
import time

import numpy as np
import pytest
from rosproc import REPO, NodeProcess, enter_ros_environment

CONFIG = REPO / "hardware_configs" / "tasks" / "sim_pick_cube_state.yaml"


@pytest.fixture
def probe(ros_env, tmp_path):
    enter_ros_environment(ros_env)
    import rclpy
    from geometry_msgs.msg import PoseStamped
    from rclpy.node import Node
    from std_msgs.msg import String

    controller = NodeProcess("controller", {"config": str(CONFIG)}, ros_env, tmp_path)
    rclpy.init()
    node = Node("probe")
    seen = {"stats": None, "pose": None, "tracked": None}
    qos_sensor = rclpy.qos.qos_profile_sensor_data
    node.create_subscription(String, "franka/controller_stats", lambda m: seen.__setitem__("stats", json.loads(m.data)), 10)
    node.create_subscription(PoseStamped, "franka/tcp_pose", lambda m: seen.__setitem__("pose", m), qos_sensor)
    node.create_subscription(PoseStamped, "franka/tracked_target", lambda m: seen.__setitem__("tracked", m), 10)
    target = node.create_publisher(PoseStamped, "franka/target_pose", 10)

    def spin_until(predicate, timeout_s, what):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.02)
            if predicate():
                return
            assert controller.alive(), controller.log()[-3000:]
        raise AssertionError(f"timed out waiting for {what}\n{controller.log()[-3000:]}")

    def spin_for(seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.01)

    def send(position, quat=(0.0, 1.0, 0.0, 0.0)):
        msg = PoseStamped()
        msg.header.frame_id = "base"
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = position
        msg.pose.orientation.w, msg.pose.orientation.x, msg.pose.orientation.y, msg.pose.orientation.z = quat
        target.publish(msg)

    def position():
        p = seen["pose"].pose.position
        return np.array([p.x, p.y, p.z])

    spin_until(lambda: seen["pose"] is not None and seen["stats"] is not None and seen["stats"]["active"], 30, "controller up")
    yield {"node": node, "seen": seen, "send": send, "spin_until": spin_until, "spin_for": spin_for, "position": position, "process": controller}
    node.destroy_node()
    rclpy.shutdown()
    assert controller.stop() == 0


def test_nan_target_refused_and_box_clamps(probe):
    seen, send, spin_until, position = probe["seen"], probe["send"], probe["spin_until"], probe["position"]
    start = position()
    refused = seen["stats"]["targets_refused"]
    send((math.nan, 0.0, 0.2))
    spin_until(lambda: seen["stats"]["targets_refused"] > refused, 5, "the NaN target to be refused")
    assert np.linalg.norm(position() - start) < 0.005  # the arm did not move

    # 1 m above the box's ceiling (0.35 m) and far to the side: tracked at the box's edge.
    clamped = seen["stats"]["targets_clamped"]
    for _ in range(20):
        send((0.5, 0.9, 1.35))
        probe["spin_for"](0.05)
    spin_until(lambda: seen["stats"]["targets_clamped"] > clamped and seen["tracked"] is not None, 5, "a clamped target")
    p = seen["tracked"].pose.position
    assert p.y == pytest.approx(0.2, abs=1e-6) and p.z == pytest.approx(0.35, abs=1e-6)


def test_watchdog_holds_and_loop_keeps_its_rate(probe):
    seen, send, spin_until, position = probe["seen"], probe["send"], probe["spin_until"], probe["position"]
    start = position()
    trips = seen["stats"]["watchdog_trips"]
    # A stream of targets 3 cm lower, then silence: the controller holds where the arm is.
    goal = start + np.array([0.0, 0.0, -0.03])
    for _ in range(5):
        send(tuple(goal))
        probe["spin_for"](0.05)
    spin_until(lambda: seen["stats"]["watchdog_trips"] > trips, 5, "the watchdog to trip")
    held = position()
    probe["spin_for"](1.0)
    assert np.linalg.norm(position() - held) < 0.01
    stats = seen["stats"]
    assert stats["control_rate_hz"] >= 0.95 * stats["nominal_control_rate_hz"], stats


def test_deactivated_controller_refuses_targets(probe):
    import rclpy
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    node, seen, send, spin_until = probe["node"], probe["seen"], probe["send"], probe["spin_until"]
    client = node.create_client(ChangeState, "impedance_controller/change_state")
    assert client.wait_for_service(timeout_sec=10)
    future = client.call_async(ChangeState.Request(transition=Transition(id=Transition.TRANSITION_DEACTIVATE)))
    rclpy.spin_until_future_complete(node, future, timeout_sec=10)
    assert future.result() is not None and future.result().success
    spin_until(lambda: not seen["stats"]["active"], 5, "the controller to report inactive")
    refused = seen["stats"]["targets_refused"]
    send(tuple(probe["position"]()))
    spin_until(lambda: seen["stats"]["targets_refused"] > refused, 5, "the target to be refused")
