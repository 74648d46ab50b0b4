"""The real devices a task config names, built behind the hardware interfaces.

Each maker imports its driver only when called, so a machine without the hardware extras
can still load configs and run the simulator.

- ``make_robot_backend``: robot backend 'franka' -> the driver ``robot.driver`` names
  (``FRANKA_DRIVERS``: franky in robot_stack.hardware.franka, libfranka_torque in
  robot_stack.hardware.libfranka_torque).
- ``make_cameras``: cameras of kind 'realsense' or 'replay' -> RealSenseCameras (a replay
  plays a recorded file through the same pipeline code).
- ``make_teleop``: teleop kind 'spacemouse' -> SpaceMouse; 'none' -> None.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from robot_stack.config.schema import CamerasConfig, RobotConfig, TaskSpec, TeleopConfig
from robot_stack.control.from_config import safety_box_from_config
from robot_stack.control.safety import SafetyBox
from robot_stack.hardware.interfaces import Cameras, RobotBackend, TeleopDevice


def _franky_backend():
    from robot_stack.hardware.franka import FrankyBackend

    return FrankyBackend


def _libfranka_torque_backend():
    from robot_stack.hardware.libfranka_torque import LibfrankaTorqueBackend

    return LibfrankaTorqueBackend


# robot.driver -> the backend class. Looked up only when that driver is built: franky and
# pylibfranka each bundle libfranka's pybind11 types and cannot share a process.
FRANKA_DRIVERS: dict[str, Callable[[], type]] = {
    "franky": _franky_backend,
    "libfranka_torque": _libfranka_torque_backend,
}


def make_franka_backend(robot: RobotConfig, safety_box: SafetyBox | None = None):
    """The backend ``robot.driver`` names, connected to the arm at ``robot.address``."""
    if robot.backend != "franka":
        raise ValueError(f"make_franka_backend needs robot.backend 'franka', got '{robot.backend}'")
    if robot.driver not in FRANKA_DRIVERS:
        raise ValueError(f"unknown robot.driver '{robot.driver}' ({' or '.join(FRANKA_DRIVERS)})")
    return FRANKA_DRIVERS[robot.driver]()(robot, safety_box)


def make_robot_backend(robot: RobotConfig, task: TaskSpec) -> RobotBackend:
    """The real arm, its targets held inside the task's safety box."""
    if robot.backend != "franka":
        raise ValueError(
            f"robot '{robot.name}' has backend '{robot.backend}'; the simulated robot is built by "
            "robot_stack.envs.factory.make_sim_env"
        )
    return make_franka_backend(robot, safety_box_from_config(task))


def make_cameras(cameras: CamerasConfig, names: tuple[str, ...]) -> Optional[Cameras]:
    """The named cameras (None when there are none); every one must be a real kind."""
    if not names:
        return None
    unknown = [n for n in names if n not in cameras.cameras]
    if unknown:
        raise ValueError(f"camera(s) {unknown} are not in the cameras file (it has {sorted(cameras.cameras)})")
    simulated = [n for n in names if cameras.cameras[n].kind == "sim"]
    if simulated:
        raise ValueError(f"camera(s) {simulated} are kind 'sim': only the simulated robot renders them")
    from robot_stack.hardware.realsense import RealSenseCameras

    return RealSenseCameras(cameras.cameras, tuple(names))


def make_teleop(
    teleop: TeleopConfig, tcp_rotation: Optional[Callable[[], np.ndarray]] = None
) -> Optional[TeleopDevice]:
    """The operator's device; ``tcp_rotation`` (the measured TCP rotation, base frame) is
    needed when the device's axes are read in the base frame (``teleop.frame: base``)."""
    kind = teleop.kind
    if kind == "none":
        return None
    if kind == "spacemouse":
        from robot_stack.hardware.spacemouse import SpaceMouse

        return SpaceMouse(teleop, tcp_rotation=tcp_rotation if teleop.frame == "base" else None)
    raise ValueError(f"teleop kind '{kind}' is not a device: the scripted teleoperator lives in the simulator")
