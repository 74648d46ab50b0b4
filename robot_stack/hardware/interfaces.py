"""The interfaces every hardware implementation provides: robot backend, cameras, teleop.

The simulated Franka (robot_stack.sim) and the real devices implement these same
protocols, so the env, the actor and the ROS nodes never ask which one they hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class RobotState:
    """One reading of the arm, in the robot base frame unless a name says otherwise."""

    time_s: float
    q_rad: np.ndarray  # (7,)
    dq_rad_per_s: np.ndarray  # (7,)
    tcp_position_m: np.ndarray  # (3,)
    tcp_rotation: np.ndarray  # (3, 3)
    tcp_velocity: np.ndarray  # (6,) linear m/s, angular rad/s
    tcp_wrench: np.ndarray  # (6,) external force N, torque Nm acting on the TCP (estimate)
    gripper_width_m: float
    tau_commanded_nm: np.ndarray  # (7,) last torque the impedance law sent


@dataclass(frozen=True)
class TargetStatus:
    """What the controller did with a commanded target."""

    position_m: np.ndarray  # the target actually tracked (after the safety box)
    rotation: np.ndarray
    clamped: bool  # the safety box moved the target


@runtime_checkable
class RobotBackend(Protocol):
    """A Franka arm under Cartesian impedance control.

    The backend owns the 1 kHz loop: callers set a target pose at the policy rate and
    let time pass with ``advance``. On hardware ``advance`` waits in real time while
    the loop runs; in simulation it integrates the physics for that long.
    """

    def read_state(self) -> RobotState: ...

    def set_target(self, position_m: np.ndarray, rotation: np.ndarray) -> TargetStatus: ...

    def hold(self) -> None:
        """Track the current measured pose (target := where the arm is now)."""

    def advance(self, duration_s: float) -> None: ...

    def set_gripper(self, width_m: float) -> None:
        """Move the fingers towards ``width_m``; closing on an object squeezes with the
        configured grasp force."""

    def move_to_joint_positions(self, q_rad: np.ndarray, duration_s: float) -> None:
        """A smooth joint-space move (used by resets), blocking for ``duration_s``."""

    def recover(self) -> None:
        """Clear a reflex/error state so control can resume."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class CameraFrames:
    images: dict[str, np.ndarray]  # name -> (H, W, 3) uint8
    timestamps_s: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class Cameras(Protocol):
    names: tuple[str, ...]

    def read(self) -> CameraFrames: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class TeleopCommand:
    """A teleop reading, already in policy action units (end-effector frame)."""

    twist: np.ndarray  # (6,) in [-1, 1]
    gripper: float | None  # -1 open, +1 close, None: no gripper request
    intervening: bool  # the operator is moving the device or pressed a button
    buttons: tuple[str, ...] = ()  # mapped button actions pressed this reading


class TeleopDisconnected(RuntimeError):
    """The teleop device stopped delivering readings; the intervention has ended. Raised by
    ``TeleopDevice.read`` for as long as the device is gone."""


@runtime_checkable
class TeleopDevice(Protocol):
    def read(self) -> TeleopCommand: ...

    def close(self) -> None: ...
