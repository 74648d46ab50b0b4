"""robot_stack's interfaces over ROS 2: what the actor and reset nodes hand to the env and
the reset routine, so the logic that runs in-process in the plain simulated session runs
unchanged against the controller, camera, reward and reset nodes.

- ``RosRobotBackend``: RobotBackend over the controller's topics and services.
- ``RosCameras``: Cameras over image topics.
- ``RosSuccess``: SuccessSource over the reward service.
- ``RosReset``: the env's reset routine over the reset action.
- ``RosTeleop``: TeleopDevice over the SpaceMouse node's topics.
- ``MirrorFeed``: a SimMirror kept in step with the controller's world state topic.

Calls run on the caller's thread and wait on futures the node's executor (spinning on
another thread) completes; every wait is bounded and a timeout names the peer that did
not answer.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Optional

import numpy as np
from geometry_msgs.msg import PoseStamped, TwistStamped, WrenchStamped
from rclpy.action import ActionClient
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState, Joy
from std_msgs.msg import Float64

from robot_stack.config.schema import TaskConfig
from robot_stack.control.from_config import safety_box_from_config
from robot_stack.envs.franka_env import SuccessReading
from robot_stack.hardware.interfaces import CameraFrames, RobotState, TargetStatus, TeleopCommand
from robot_stack_interfaces.action import ResetTask
from robot_stack_interfaces.msg import WorldState
from robot_stack_interfaces.srv import ClassifySuccess, MoveToJoints

from robot_stack_ros.node_common import COMMAND_QOS, SENSOR_QOS, WORLD_QOS, Topics, stamp_seconds
from robot_stack_ros.convert import image_from_msg, image_msg, pose_from_msg, pose_msg, robot_state_from_messages, time_msg


class PeerTimeout(RuntimeError):
    """A node this one depends on did not answer in time."""


class StopRequested(RuntimeError):
    """The node is stopping (SIGINT/SIGTERM) while it waited on a peer."""


# Set by a stopping node: every wait on a peer ends at once.
STOPPING = threading.Event()


def wait_future(future, timeout_s: float, what: str, poll_s: float = 0.002):
    # Polled, not a done-callback: rclpy runs done-callbacks as executor tasks, which a
    # waiting executor thread (an action's execute callback) can starve.
    deadline = time.monotonic() + timeout_s
    while not future.done():
        if STOPPING.is_set():
            future.cancel()
            raise StopRequested(f"{what}: stopped while waiting")
        if time.monotonic() > deadline:
            future.cancel()
            raise PeerTimeout(f"{what}: no answer within {timeout_s:.1f} s")
        time.sleep(poll_s)
    if future.exception() is not None:
        raise RuntimeError(f"{what}: {future.exception()}")
    return future.result()


def call_service(client, request, timeout_s: float, what: str):
    if not client.wait_for_service(timeout_sec=min(timeout_s, 1.0)) and not client.service_is_ready():
        raise PeerTimeout(f"{what}: service '{client.srv_name}' is not available")
    return wait_future(client.call_async(request), timeout_s, what)


def _wait_ready(check, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if STOPPING.is_set():
            raise StopRequested("stopped while waiting for a peer")
        if time.monotonic() > deadline:
            return False
    return True


class StateCache:
    """The controller's newest state topics, assembled into a RobotState."""

    def __init__(self, node: Node, max_age_s: float):
        self.node = node
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._latest: dict[str, Any] = {}
        self._updated = threading.Condition(self._lock)
        group = ReentrantCallbackGroup()
        for topic, kind in (
            (Topics.JOINT_STATES, JointState), (Topics.TCP_POSE, PoseStamped),
            (Topics.TCP_TWIST, TwistStamped), (Topics.TCP_WRENCH, WrenchStamped),
        ):
            node.create_subscription(kind, topic, lambda msg, key=topic: self._store(key, msg), SENSOR_QOS, callback_group=group)

    def _store(self, key: str, msg) -> None:
        with self._updated:
            self._latest[key] = msg
            self._latest[key + "@"] = time.monotonic()
            self._updated.notify_all()

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with self._updated:
            while not all(k in self._latest for k in (Topics.JOINT_STATES, Topics.TCP_POSE, Topics.TCP_TWIST, Topics.TCP_WRENCH)):
                left = deadline - time.monotonic()
                if STOPPING.is_set():
                    raise StopRequested("stopped while waiting for the controller")
                if left <= 0:
                    raise PeerTimeout(
                        f"no controller state on '{Topics.TCP_POSE}' and friends within {timeout_s:.0f} s: "
                        "is the impedance controller node running (same ROS_DOMAIN_ID and namespace)?"
                    )
                self._updated.wait(min(left, 0.1))

    def read(self) -> RobotState:
        """The newest state; waits (up to ``max_age_s``) for a fresh one when the newest is
        older than ``max_age_s`` (a loaded machine delays a message or two), and names the
        controller when none comes."""
        keys = (Topics.JOINT_STATES, Topics.TCP_POSE, Topics.TCP_TWIST, Topics.TCP_WRENCH)
        with self._updated:
            if not all(k in self._latest for k in keys):
                raise PeerTimeout("no controller state received yet")
            deadline = time.monotonic() + self.max_age_s
            while time.monotonic() - self._latest[Topics.TCP_POSE + "@"] > self.max_age_s:
                left = deadline - time.monotonic()
                if left <= 0:
                    age = time.monotonic() - self._latest[Topics.TCP_POSE + "@"]
                    raise PeerTimeout(
                        f"controller state is {age * 1000:.0f} ms old (limit {self.max_age_s * 1000:.0f} ms): "
                        "the impedance controller stopped publishing"
                    )
                self._updated.wait(left)
            msgs = [self._latest[k] for k in keys]
        return robot_state_from_messages(*msgs)


class RosRobotBackend:
    """RobotBackend over the controller node. ``advance`` lets real time pass until
    ``duration`` after the target was sent, minus ``observation_lead_s`` (the caller reads its
    observation and asks for success that much before the next control tick; the actor's
    rate limiter waits out the rest). Counting from the target, not from the call, keeps the
    time spent between the two (the gripper command) inside the period."""

    def __init__(self, node: Node, config: TaskConfig, state: StateCache):
        self.node = node
        self.config = config
        self.state = state
        self.safety_box = safety_box_from_config(config.task)
        self.lead_s = config.ros.observation_lead_s
        self._pub_target = node.create_publisher(PoseStamped, Topics.TARGET_POSE, COMMAND_QOS)
        self._pub_gripper = node.create_publisher(Float64, Topics.GRIPPER_COMMAND, COMMAND_QOS)
        self._move = node.create_client(MoveToJoints, Topics.MOVE_TO_JOINTS, callback_group=ReentrantCallbackGroup())
        self._target_sent: Optional[float] = None

    def read_state(self) -> RobotState:
        return self.state.read()

    def set_target(self, position_m, rotation) -> TargetStatus:
        position = np.asarray(position_m, dtype=float)
        rotation = np.asarray(rotation, dtype=float)
        if not (np.all(np.isfinite(position)) and np.all(np.isfinite(rotation))):
            raise ValueError(f"non-finite target refused: position={position.tolist()}")
        # The controller clamps again; clamping here too tells the caller what it will track.
        position, rotation, clamped = self.safety_box.clamp(position, rotation)
        msg = PoseStamped()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.header.frame_id = "base"
        msg.pose = pose_msg(position, rotation)
        self._pub_target.publish(msg)
        self._target_sent = time.monotonic()
        return TargetStatus(position, rotation, clamped)

    def hold(self) -> None:
        state = self.read_state()
        self.set_target(state.tcp_position_m, state.tcp_rotation)

    def advance(self, duration_s: float) -> None:
        now = time.monotonic()
        start = self._target_sent if self._target_sent is not None else now
        self._target_sent = None
        time.sleep(max(0.0, start + duration_s - self.lead_s - now))

    def set_gripper(self, width_m: float) -> None:
        if not np.isfinite(width_m):
            raise ValueError(f"non-finite gripper width refused: {width_m}")
        self._pub_gripper.publish(Float64(data=float(width_m)))

    def move_to_joint_positions(self, q_rad, duration_s: float) -> None:
        request = MoveToJoints.Request()
        request.positions_rad = [float(v) for v in q_rad]
        request.duration_s = float(duration_s)
        response = call_service(
            self._move, request, duration_s + self.config.ros.service_timeout_s, "controller joint move"
        )
        if not response.success:
            raise RuntimeError(response.message)

    def recover(self) -> None:
        self.hold()

    def close(self) -> None:
        pass


class RosCameras:
    """The newest frame of each camera topic."""

    def __init__(self, node: Node, names: tuple[str, ...], max_age_s: float = 1.0):
        self.names = tuple(names)
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._latest: dict[str, tuple[Image, float]] = {}
        group = ReentrantCallbackGroup()
        for name in self.names:
            node.create_subscription(
                Image, Topics.image(name), lambda msg, n=name: self._store(n, msg), SENSOR_QOS, callback_group=group
            )

    def _store(self, name: str, msg: Image) -> None:
        with self._lock:
            self._latest[name] = (msg, time.monotonic())

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                missing = [n for n in self.names if n not in self._latest]
            if not missing:
                return
            if STOPPING.is_set():
                raise StopRequested("stopped while waiting for the cameras")
            if time.monotonic() > deadline:
                raise PeerTimeout(f"no images from camera(s) {missing} within {timeout_s:.0f} s: is the camera node running?")
            time.sleep(0.05)

    def read(self) -> CameraFrames:
        images, stamps = {}, {}
        now = time.monotonic()
        with self._lock:
            latest = dict(self._latest)
        for name in self.names:
            if name not in latest:
                raise PeerTimeout(f"no image from camera '{name}' yet")
            msg, received = latest[name]
            if now - received > self.max_age_s:
                raise PeerTimeout(f"camera '{name}' last sent an image {now - received:.1f} s ago")
            images[name] = image_from_msg(msg)
            stamps[name] = stamp_seconds(msg.header.stamp)
        return CameraFrames(images=images, timestamps_s=stamps)

    def close(self) -> None:
        pass


class RosSuccess:
    """SuccessSource over the reward service node."""

    def __init__(self, node: Node, timeout_s: float):
        self.timeout_s = timeout_s
        self.client = node.create_client(ClassifySuccess, Topics.CLASSIFY_SUCCESS, callback_group=ReentrantCallbackGroup())

    def wait_ready(self, timeout_s: float) -> None:
        if not _wait_ready(lambda: self.client.wait_for_service(timeout_sec=0.1), timeout_s):
            raise PeerTimeout(f"reward service '{Topics.CLASSIFY_SUCCESS}' not available within {timeout_s:.0f} s")

    def evaluate(self, observation: dict[str, Any], state: RobotState) -> SuccessReading:
        request = ClassifySuccess.Request()
        request.stamp = time_msg(state.time_s)
        images = observation.get("images", {})
        request.camera_names = list(images)
        request.images = [image_msg(image, request.stamp, name) for name, image in images.items()]
        response = call_service(self.client, request, self.timeout_s, "reward service")
        if response.probability < 0:  # the service's way of saying it has no answer
            raise RuntimeError(f"reward service could not answer: {response.message}")
        return SuccessReading(bool(response.success), {"success_probability": float(response.probability)})


class RosReset:
    """The env's reset routine: asks the reset node, returns the start pose it reached."""

    def __init__(self, node: Node, config: TaskConfig):
        self.config = config
        self.client = ActionClient(node, ResetTask, Topics.RESET_TASK, callback_group=ReentrantCallbackGroup())

    def wait_ready(self, timeout_s: float) -> None:
        if not _wait_ready(lambda: self.client.wait_for_server(timeout_sec=0.1), timeout_s):
            raise PeerTimeout(f"reset action '{Topics.RESET_TASK}' not available within {timeout_s:.0f} s")

    def __call__(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        goal = ResetTask.Goal()
        goal.task = self.config.task.name
        goal.mode = ResetTask.Goal.MODE_TASK
        goal.seed = int(rng.integers(0, 2**63 - 1))
        timeout = self.config.ros.reset_timeout_s
        handle = wait_future(self.client.send_goal_async(goal), self.config.ros.service_timeout_s, "reset node (goal)")
        if not handle.accepted:
            raise RuntimeError("reset node refused the reset goal")
        result = wait_future(handle.get_result_async(), timeout, "reset node (result)").result
        if not result.success:
            raise RuntimeError(f"reset failed: {result.message}")
        return pose_from_msg(result.start_pose)


class RosTeleop:
    """TeleopDevice over the SpaceMouse node: twist in action units, gripper from buttons."""

    def __init__(self, node: Node, config: TaskConfig, max_age_s: float = 0.5):
        self.config = config.teleop
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._twist: Optional[tuple[np.ndarray, float]] = None
        self._buttons: tuple[int, ...] = ()
        node.create_subscription(TwistStamped, Topics.SPACEMOUSE_TWIST, self._on_twist, COMMAND_QOS)
        node.create_subscription(Joy, Topics.SPACEMOUSE_JOY, self._on_joy, COMMAND_QOS)

    def _on_twist(self, msg: TwistStamped) -> None:
        t = msg.twist
        twist = np.array([t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z])
        with self._lock:
            self._twist = (twist, time.monotonic())

    def _on_joy(self, msg: Joy) -> None:
        with self._lock:
            self._buttons = tuple(int(b) for b in msg.buttons)

    def read(self) -> TeleopCommand:
        with self._lock:
            reading, buttons = self._twist, self._buttons
        if reading is None or time.monotonic() - reading[1] > self.max_age_s or not np.all(np.isfinite(reading[0])):
            return TeleopCommand(twist=np.zeros(6), gripper=None, intervening=False)
        twist = np.clip(reading[0], -1.0, 1.0)
        pressed = tuple(self.config.button_map[i] for i, b in enumerate(buttons) if b and i in self.config.button_map)
        gripper = 1.0 if "gripper_close" in pressed else -1.0 if "gripper_open" in pressed else None
        moving = float(np.linalg.norm(twist)) > self.config.deadzone
        # Gripper buttons are interventions; command buttons go to the operator console.
        return TeleopCommand(twist=twist, gripper=gripper, intervening=moving or gripper is not None, buttons=pressed)

    def close(self) -> None:
        pass


class MirrorFeed:
    """A SimMirror applied from the controller's world state topic, on the caller's demand
    (``sync()``), so a reader (the scripted expert, the reward) sees one consistent world."""

    def __init__(self, node: Node, config: TaskConfig):
        from robot_stack.sim.mirror import SimMirror

        self.mirror = SimMirror(config)
        self._lock = threading.Condition()
        self._latest: Optional[WorldState] = None
        self.applied_stamp_s = -1.0
        node.create_subscription(WorldState, Topics.WORLD_STATE, self._on_state, WORLD_QOS, callback_group=ReentrantCallbackGroup())

    def _on_state(self, msg: WorldState) -> None:
        with self._lock:
            self._latest = msg
            self._lock.notify_all()

    def sync(self, not_older_than_s: Optional[float] = None, timeout_s: float = 1.0) -> float:
        """Apply the newest world state (waiting, bounded, for one stamped at or after
        ``not_older_than_s``); returns its stamp."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while True:
                msg = self._latest
                fresh = msg is not None and (not_older_than_s is None or stamp_seconds(msg.header.stamp) >= not_older_than_s - 1e-6)
                if fresh:
                    break
                left = deadline - time.monotonic()
                if STOPPING.is_set():
                    raise StopRequested("stopped while waiting for the simulated world")
                if left <= 0:
                    raise PeerTimeout(
                        f"no simulated world state{' that new' if msg is not None else ''} on '{Topics.WORLD_STATE}' "
                        f"within {timeout_s:.1f} s: is the controller running the same simulated task?"
                    )
                self._lock.wait(min(left, 0.1))
        stamp = stamp_seconds(msg.header.stamp)
        if stamp != self.applied_stamp_s:
            self.mirror.apply(msg.state)
            self.applied_stamp_s = stamp
        return stamp
