"""The gymnasium env over an injected robot backend, cameras and success source.

Action: a 6-D end-effector-frame delta in [-1, 1] (translation, then rotation vector),
scaled by the task's action scale, plus one gripper command in binary-gripper tasks
(>= 0.5 close, <= -0.5 open, between: keep). The target is the *measured* TCP pose plus
the delta (not the previous target), so a blocked arm never winds up a growing spring.

Observation: ``{"images": {camera: uint8 HxWx3}, "state": float32}`` ("images" is
absent in a state-only task, since gymnasium has no empty Dict space) where state
concatenates, in the order the task lists them: tcp_pose (xyz and rotation vector
relative to the reset pose, in the reset frame), tcp_velocity (linear and angular, reset
frame), tcp_wrench (force and torque, reset frame), gripper_width (m) and, in simulation,
object_position (reset frame, from the reset pose or the TCP: observation.object_frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

import gymnasium as gym
import numpy as np

from robot_stack.config.schema import TaskConfig
from robot_stack.control.rotations import matrix_from_rotvec, rotvec_from_matrix
from robot_stack.data.spec import GRIPPER_THRESHOLD, STATE_KEY_SIZES, env_action_dim
from robot_stack.hardware.interfaces import Cameras, RobotBackend, RobotState, TeleopCommand


class NonFiniteActionError(ValueError):
    pass


def action_from_teleop(command: TeleopCommand, action_dim: int) -> np.ndarray:
    """The env action a teleop reading asks for (gripper 0 = keep, when none is requested).
    ``action_dim``: 6 or 7 (twist, + gripper), 3 or 4 (translation only, + gripper)."""
    if action_dim not in (3, 4, 6, 7):
        raise ValueError(f"env action dim must be 3, 4, 6 or 7, got {action_dim}")
    twist = command.twist if action_dim >= 6 else command.twist[:3]
    if action_dim in (3, 6):
        return twist.astype(np.float64)
    gripper = command.gripper if command.gripper is not None else 0.0
    return np.concatenate([twist, [gripper]]).astype(np.float64)


def action_from_reading(reading: TeleopCommand | np.ndarray, action_dim: int) -> np.ndarray:
    """A teleoperator's reading as the env action: a TeleopCommand (a device's twist and
    gripper, the Franka's layout) or, from a gymnasium env's expert, the action itself."""
    if isinstance(reading, TeleopCommand):
        return action_from_teleop(reading, action_dim)
    action = np.asarray(reading, dtype=np.float64)
    if action.shape != (action_dim,):
        raise ValueError(f"the teleoperator's action has shape {action.shape}; the env's action is ({action_dim},)")
    return action


@dataclass(frozen=True)
class SuccessReading:
    success: bool
    metrics: dict[str, float]


class SuccessSource(Protocol):
    """Where reward comes from: simulator ground truth or a learned success detector."""

    def evaluate(self, observation: dict[str, Any], state: RobotState) -> SuccessReading: ...


class ResetRoutine(Protocol):
    """Brings the scene back to a start state; returns the start TCP pose."""

    def __call__(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]: ...


class FrankaEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        config: TaskConfig,
        backend: RobotBackend,
        cameras: Cameras | None,
        success_source: SuccessSource,
        reset_routine: ResetRoutine,
        render_mode: str | None = None,
        on_close: Callable[[], None] | None = None,
        object_position: Callable[[], np.ndarray] | None = None,
        reward_cameras: tuple[str, ...] = (),
    ):
        task = config.task
        self.config = config
        self.task = task
        self.backend = backend
        self.cameras = cameras
        self.success_source = success_source
        self.reset_routine = reset_routine
        self.render_mode = render_mode
        self._on_close = on_close
        if "object_position" in task.observation.state and object_position is None:
            raise ValueError(
                f"task '{task.name}' observes 'object_position' but the env was given no object position source "
                "(only the simulated robot has one)"
            )
        self._object_position = object_position
        self.control_period_s = 1.0 / task.control_rate_hz
        self.binary_gripper = task.gripper_mode == "binary"
        self.controls_rotation = task.policy_controls_rotation
        self.action_dim = env_action_dim(config)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (self.action_dim,), np.float32)

        image_names = tuple(task.observation.images)
        if image_names and cameras is None:
            raise ValueError(f"task observes images {image_names} but no cameras were given to the env")
        self.image_names = image_names
        # Cameras the success source looks at besides the observed ones (a learned reward
        # model on a state-based task): read every step, never put in the observation.
        self.reward_cameras = tuple(reward_cameras)
        if self.reward_cameras and cameras is None:
            raise ValueError(f"the reward model looks at cameras {self.reward_cameras} but no cameras were given to the env")
        self._read_cameras = bool(image_names or self.reward_cameras)
        self._reward_images: dict[str, np.ndarray] = {}
        image_spaces = {
            name: gym.spaces.Box(0, 255, (*config.cameras.cameras[name].output_size_hw, 3), np.uint8)
            for name in image_names
        }
        self.state_layout = tuple((key, STATE_KEY_SIZES[key]) for key in task.observation.state)
        state_dim = sum(size for _, size in self.state_layout)
        spaces = {"state": gym.spaces.Box(-np.inf, np.inf, (state_dim,), np.float32)}
        if image_spaces:
            # gymnasium refuses an empty Dict space: a state-only task has no "images" key.
            spaces = {"images": gym.spaces.Dict(image_spaces), **spaces}
        self.observation_space = gym.spaces.Dict(spaces)
        self._reset_position = np.zeros(3)
        self._reset_rotation = np.eye(3)
        self._steps = 0
        self._last_images: dict[str, np.ndarray] = {}
        self._gripper_closed = False
        self._needs_reset = True

    # ------------------------------------------------------------------ gym API

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._reset_position, self._reset_rotation = self.reset_routine(self.np_random)
        self._gripper_closed = not self.binary_gripper
        self._steps = 0
        self._needs_reset = False
        state = self.backend.read_state()
        observation = self._observe(state)
        reading = self.success_source.evaluate(self._success_view(observation), state)
        return observation, {"success": reading.success, **reading.metrics}

    def step(self, action):
        if self._needs_reset:
            raise RuntimeError("step() called before reset() or after the episode ended; call reset() first")
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (self.action_dim,):
            raise ValueError(
                f"action must have shape ({self.action_dim},) for task '{self.task.name}' "
                f"({6 if self.controls_rotation else 3}-D end-effector delta{' + gripper' if self.binary_gripper else ''}), "
                f"got shape {action.shape}"
            )
        bad = np.flatnonzero(~np.isfinite(action))
        if bad.size:
            # Refuse before anything moves: a NaN must never reach a target or a torque.
            raise NonFiniteActionError(
                f"action has non-finite values at indices {bad.tolist()}: {action.tolist()}; the robot was not moved"
            )
        clipped = np.clip(action, -1.0, 1.0)
        action_clipped = bool(np.any(clipped != action))

        state = self.backend.read_state()
        scale = self.task.action_scale
        position, rotation = state.tcp_position_m, state.tcp_rotation
        # The delta is expressed in the end-effector frame (as a SpaceMouse held in the
        # hand would move it), so rotate it into the base frame here.
        target_position = position + rotation @ (clipped[:3] * scale.translation_m)
        if self.controls_rotation:
            target_rotation = rotation @ matrix_from_rotvec(clipped[3:6] * scale.rotation_rad)
        else:
            target_rotation = self._reset_rotation  # held, so it cannot drift
        status = self.backend.set_target(target_position, target_rotation)

        if self.binary_gripper:
            command = clipped[-1]
            if command >= GRIPPER_THRESHOLD:
                self._gripper_closed = True
            elif command <= -GRIPPER_THRESHOLD:
                self._gripper_closed = False
            gripper = self.config.robot.gripper
            self.backend.set_gripper(gripper.min_width_m if self._gripper_closed else gripper.max_width_m)

        self.backend.advance(self.control_period_s)
        self._steps += 1

        state = self.backend.read_state()
        observation = self._observe(state)
        reading = self.success_source.evaluate(self._success_view(observation), state)
        reward = 1.0 if reading.success else 0.0
        terminated = bool(reading.success and self.task.reward.terminate_on_success)
        truncated = bool(not terminated and self._steps >= self.task.max_episode_steps)
        self._needs_reset = terminated or truncated
        info = {
            "success": reading.success,
            "safety_clamped": status.clamped,
            "action_clipped": action_clipped,
            "gripper_closed": self._gripper_closed,
            **reading.metrics,
        }
        return observation, reward, terminated, truncated, info

    def camera_images(self) -> dict[str, np.ndarray]:
        """The latest step's camera images: the observed ones, or (for a state-only task
        with cameras attached) a fresh reading of every camera."""
        if not self._last_images and self.cameras is not None:
            self._last_images = self.cameras.read().images
        return dict(self._last_images)

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        images = self.camera_images()
        return np.concatenate(list(images.values()), axis=1) if images else None

    def close(self):
        if self.cameras is not None:
            self.cameras.close()
        self.backend.close()
        if self._on_close is not None:
            self._on_close()
            self._on_close = None

    def close_with(self, fn: Callable[[], None]) -> None:
        """Also run ``fn`` when the env closes (a device that lives as long as the env)."""
        previous = self._on_close

        def both() -> None:
            try:
                fn()
            finally:
                if previous is not None:
                    previous()

        self._on_close = both

    # ------------------------------------------------------------------ observation

    @property
    def reset_pose(self) -> tuple[np.ndarray, np.ndarray]:
        return self._reset_position.copy(), self._reset_rotation.copy()

    def _observe(self, state: RobotState) -> dict[str, Any]:
        observation: dict[str, Any] = {"state": self._state_vector(state)}
        self._last_images = {}
        self._reward_images = {}
        if self._read_cameras:
            frames = self.cameras.read()
            self._reward_images = {name: frames.images[name] for name in self.reward_cameras}
            if self.image_names:
                self._last_images = {name: frames.images[name] for name in self.image_names}
                observation = {"images": self._last_images, **observation}
            else:
                self._last_images = dict(frames.images)
        return observation

    def _success_view(self, observation: dict[str, Any]) -> dict[str, Any]:
        """What the success source is shown: the observation, plus the reward cameras' images."""
        if not self._reward_images:
            return observation
        return {**observation, "images": {**observation.get("images", {}), **self._reward_images}}

    def _state_vector(self, state: RobotState) -> np.ndarray:
        # Relative to the reset pose and in its frame: the policy sees the same numbers
        # wherever the randomised reset put the arm.
        to_reset = self._reset_rotation.T
        parts = []
        for key, _ in self.state_layout:
            if key == "tcp_pose":
                parts.append(to_reset @ (state.tcp_position_m - self._reset_position))
                parts.append(rotvec_from_matrix(to_reset @ state.tcp_rotation))
            elif key == "tcp_velocity":
                parts.append(to_reset @ state.tcp_velocity[:3])
                parts.append(to_reset @ state.tcp_velocity[3:])
            elif key == "tcp_wrench":
                parts.append(to_reset @ state.tcp_wrench[:3])
                parts.append(to_reset @ state.tcp_wrench[3:])
            elif key == "gripper_width":
                parts.append([state.gripper_width_m])
            elif key == "object_position":
                origin = state.tcp_position_m if self.task.observation.object_frame == "tcp" else self._reset_position
                parts.append(to_reset @ (np.asarray(self._object_position()) - origin))
        return np.concatenate(parts).astype(np.float32)
