"""The real devices a task config names, built behind the hardware interfaces.

Each maker imports its driver only when called, so a machine without the hardware extras
can still load configs and run the simulator.

- ``make_robot_backend``: robot backend 'franka' -> the driver ``robot.driver`` names
  (robot_stack.hardware.franka).
- ``make_cameras``: cameras of kind 'realsense' or 'replay' -> RealSenseCameras (a replay
  plays a recorded file through the same pipeline code).
- ``make_teleop``: teleop kind 'spacemouse' -> SpaceMouse; 'none' -> None.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from robot_stack.config.schema import TaskConfig
from robot_stack.control.from_config import safety_box_from_config
from robot_stack.hardware.interfaces import Cameras, RobotBackend, TeleopDevice


def make_robot_backend(config: TaskConfig) -> RobotBackend:
    from robot_stack.hardware.franka import make_franka_backend

    if config.robot.backend != "franka":
        raise ValueError(
            f"robot '{config.robot.name}' has backend '{config.robot.backend}'; the simulated robot is built by "
            "robot_stack.envs.factory.make_sim_env"
        )
    return make_franka_backend(config.robot, safety_box_from_config(config))


def make_cameras(config: TaskConfig, names: tuple[str, ...]) -> Optional[Cameras]:
    """The named cameras (None when there are none); every one must be a real kind."""
    if not names:
        return None
    unknown = [n for n in names if n not in config.cameras.cameras]
    if unknown:
        raise ValueError(f"camera(s) {unknown} are not in the cameras file (it has {sorted(config.cameras.cameras)})")
    simulated = [n for n in names if config.cameras.cameras[n].kind == "sim"]
    if simulated:
        raise ValueError(f"camera(s) {simulated} are kind 'sim': only the simulated robot renders them")
    from robot_stack.hardware.realsense import RealSenseCameras

    return RealSenseCameras(config.cameras.cameras, tuple(names))


def make_teleop(
    config: TaskConfig, tcp_rotation: Optional[Callable[[], np.ndarray]] = None
) -> Optional[TeleopDevice]:
    """The operator's device; ``tcp_rotation`` (the measured TCP rotation, base frame) is
    needed when the device's axes are read in the base frame (``teleop.frame: base``)."""
    kind = config.teleop.kind
    if kind == "none":
        return None
    if kind == "spacemouse":
        from robot_stack.hardware.spacemouse import SpaceMouse

        return SpaceMouse(config.teleop, tcp_rotation=tcp_rotation if config.teleop.frame == "base" else None)
    raise ValueError(f"teleop kind '{kind}' is not a device: the scripted teleoperator lives in the simulator")
