"""What every robot-stack node shares: the task file parameter, QoS, topic names, and a
main that starts and stops a node cleanly on SIGINT and SIGTERM, and when its parent (launch)
dies."""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Callable, Optional

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

from robot_stack.config import ConfigError, load_task_config
from robot_stack.config.schema import TaskConfig
from robot_stack.lifetime import exit_with_parent

# Sensor streams: the newest reading is all that matters, a lost one is replaced by the next.
SENSOR_QOS = QoSProfile(reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST, depth=2)
# Commands and events: every one must arrive, in order.
COMMAND_QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=10)
# The simulated world's state: reliable (a mirror must not miss the frame a reset left).
WORLD_QOS = QoSProfile(
    reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=2,
    durability=DurabilityPolicy.VOLATILE,
)


class NodeConfigError(ValueError):
    """A node cannot run with what it was given (a missing task file, a task it cannot serve)."""


class Topics:
    """Names, relative to the nodes' namespace (a launch file may put a cell under one)."""

    JOINT_STATES = "joint_states"
    TCP_POSE = "franka/tcp_pose"
    TCP_TWIST = "franka/tcp_twist"
    TCP_WRENCH = "franka/tcp_wrench"
    TARGET_POSE = "franka/target_pose"
    TRACKED_TARGET = "franka/tracked_target"
    GRIPPER_COMMAND = "franka/gripper_command"
    SET_GAINS = "franka/set_impedance_gains"
    MOVE_TO_JOINTS = "franka/move_to_joints"
    WORLD_STATE = "sim/world_state"
    RANDOMISE_SCENE = "sim/randomise_scene"
    SPACEMOUSE_TWIST = "spacemouse/twist"
    SPACEMOUSE_JOY = "spacemouse/joy"
    CLASSIFY_SUCCESS = "reward/classify_success"
    RESET_TASK = "reset/reset_task"
    EPISODE_EVENTS = "actor/episode_events"
    INTERVENTION_EVENTS = "actor/intervention_events"

    @staticmethod
    def image(camera: str) -> str:
        return f"cameras/{camera}/image_raw"

    @staticmethod
    def camera_info(camera: str) -> str:
        return f"cameras/{camera}/camera_info"


def share_dir() -> Optional[Path]:
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("robot_stack_ros"))
    except Exception:
        return None


def resolve_config_path(value: str) -> Path:
    """A task file named absolutely, relative to the working directory, or relative to the
    package's share directory (where `hardware_configs/` is installed)."""
    if not value:
        raise NodeConfigError("parameter 'config' is required: the task YAML, e.g. config:=hardware_configs/tasks/sim_pick_cube_state.yaml")
    path = Path(value).expanduser()
    candidates = [path] if path.is_absolute() else [Path.cwd() / path]
    share = share_dir()
    if share is not None and not path.is_absolute():
        candidates.append(share / path)
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise NodeConfigError(f"task file '{value}' not found (looked in: {', '.join(str(c) for c in candidates)})")


def load_config(node: Node) -> TaskConfig:
    node.declare_parameter("config", "")
    value = node.get_parameter("config").get_parameter_value().string_value
    path = resolve_config_path(value)
    config = load_task_config(path)
    refusal = config.franka_only(f"the ROS 2 node '{node.get_name()}'")
    if refusal is not None:
        raise NodeConfigError(f"{path}: {refusal}")
    node.get_logger().info(f"task '{config.task.name}' from {path}")
    return config


def stamp_seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def run_node(
    build: Callable[[], Node],
    *,
    main_loop: Optional[Callable[[Node, threading.Event], None]] = None,
    threads: int = 4,
    args: Optional[list[str]] = None,
) -> int:
    """Start a node, spin it until SIGINT/SIGTERM (or until ``main_loop`` returns), then
    call its ``shutdown()`` (if any), destroy it and exit 0. ``main_loop(node, stop)``, when
    given, runs on the main thread while the executor spins on another one (the actor).
    ``threads=1``: a single-threaded executor (callbacks one at a time, as a node whose
    own work runs on the main thread wants them)."""
    rclpy.init(args=args if args is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    # A node outlives a launch that died (killed, or stopped by a launch argument error after
    # starting some processes) unless it watches its parent: it would keep the arm and the ports.
    exit_with_parent()
    # `kill -USR1 <pid>` prints every thread's stack: what a node that seems stuck is doing.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    node = None
    executor = SingleThreadedExecutor() if threads == 1 else MultiThreadedExecutor(num_threads=threads)
    code = 0
    try:
        node = build()
        executor.add_node(node)
        if main_loop is None:
            while not stop.is_set() and rclpy.ok():
                executor.spin_once(timeout_sec=0.1)
        else:
            spinner = threading.Thread(target=_spin, args=(executor, stop), name="ros-executor", daemon=True)
            spinner.start()
            main_loop(node, stop)
            stop.set()
            spinner.join(2.0)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ConfigError, NodeConfigError) as error:
        print(f"[{os.path.basename(sys.argv[0])}] configuration error: {error}", file=sys.stderr)
        code = 2
    except Exception:
        traceback.print_exc()
        code = 1
    finally:
        stop.set()
        if node is not None:
            shutdown = getattr(node, "shutdown", None)
            if shutdown is not None:
                try:
                    shutdown()
                except Exception:
                    traceback.print_exc()
                    code = code or 1
            executor.remove_node(node)
            node.destroy_node()
        executor.shutdown(timeout_sec=1.0)
        if rclpy.ok():
            rclpy.shutdown()
    return code


class FeedNode:
    """A second node in the same process for a node's high-rate sensor subscriptions (the
    controller's 100 Hz state and world topics), spun by its own single-threaded executor.

    rclpy's MultiThreadedExecutor pays a thread hand-off per callback: measured here, one
    node subscribing to the controller's five 100 Hz topics used 1.0 core under it and 0.2
    under a SingleThreadedExecutor. Nodes whose service or action callbacks block (waiting
    on the robot or the world) keep a multi-threaded executor for those few calls and take
    their streams here. The feed node is named ``<node>_feeds``; it shares the process's
    namespace and remappings."""

    def __init__(self, owner: Node):
        self.name = f"{owner.get_name()}_feeds"
        # A node-local rule outranks the process's `-r __node:=...` (which launch passes).
        self.node = rclpy.create_node(self.name, cli_args=["--ros-args", "-r", f"__node:={self.name}"])
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=_spin, args=(self._executor, self._stop), name=self.name, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self._executor.remove_node(self.node)
        self.node.destroy_node()
        self._executor.shutdown(timeout_sec=1.0)


def _spin(executor, stop: threading.Event) -> None:
    while not stop.is_set() and rclpy.ok():
        try:
            executor.spin_once(timeout_sec=0.1)
        except (KeyboardInterrupt, ExternalShutdownException):
            break
