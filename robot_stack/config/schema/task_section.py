"""The task section of a task file: rate, episode length, action, safety box, reset,
observation, reward and scene."""

from __future__ import annotations

import math
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from robot_stack.config.schema.primitives import Float, Int, StrictModel, Vec3
from robot_stack.config.schema.reward_section import RewardConfig
from robot_stack.config.schema.sim_section import SimConfig


class SafetyBoxConfig(StrictModel):
    """Limits on the TCP target: xyz in the robot base frame, rpy as the deviation from
    the reset orientation (so a gripper pointing down never straddles the +-pi wrap)."""

    xyz_min_m: Vec3 = (0.3, -0.2, 0.02)
    xyz_max_m: Vec3 = (0.7, 0.2, 0.4)
    rpy_min_rad: Vec3 = (-0.3, -0.3, -0.8)
    rpy_max_rad: Vec3 = (0.3, 0.3, 0.8)

    @model_validator(mode="after")
    def _ordered(self) -> "SafetyBoxConfig":
        for name, lo, hi in (("xyz", self.xyz_min_m, self.xyz_max_m), ("rpy", self.rpy_min_rad, self.rpy_max_rad)):
            for axis, a, b in zip("xyz" if name == "xyz" else ("roll", "pitch", "yaw"), lo, hi):
                if a >= b:
                    raise ValueError(f"{name} minimum must be below maximum on {axis} ({a} >= {b})")
        if not all(-math.pi < a <= 0 <= b < math.pi for a, b in zip(self.rpy_min_rad, self.rpy_max_rad)):
            raise ValueError("rpy limits must contain 0 and stay inside (-pi, pi)")
        return self


class ActionScaleConfig(StrictModel):
    translation_m: Float = Field(0.01, gt=0, le=0.05, description="TCP displacement per policy step at action 1.")
    rotation_rad: Float = Field(0.06, gt=0, le=0.3, description="TCP rotation per policy step at action 1.")


class ResetConfig(StrictModel):
    mode: Literal["scripted", "human"] = "scripted"
    tcp_position_m: Vec3 = Field((0.5, 0.0, 0.25), description="Reset TCP position in the base frame.")
    tcp_rpy_rad: Vec3 = Field(
        (math.pi, 0.0, 0.0), description="Reset TCP orientation (roll, pitch, yaw); pi about x points the gripper down."
    )
    random_xy_range_m: Float = Field(0.0, ge=0.0, le=0.1, description="Uniform +- offset of the reset xy.")
    random_z_range_m: Float = Field(0.0, ge=0.0, le=0.1)
    random_rz_range_rad: Float = Field(0.0, ge=0.0, le=0.5, description="Uniform +- yaw offset of the reset pose.")
    lift_before_reset_m: Float = Field(0.05, ge=0.0, le=0.2, description="Lift the TCP first, clear of the scene.")
    open_gripper: bool = True
    timeout_s: Float = Field(10.0, gt=0.0, le=120.0)


# object_position: the task object's position (cube; hole) relative to the reset pose or to the
# TCP (observation.object_frame). Only the simulated robot knows it; a state-based policy needs
# it, as a camera-based one does not.
StateKey = Literal["tcp_pose", "tcp_velocity", "tcp_wrench", "gripper_width", "object_position"]


class ObservationConfig(StrictModel):
    images: tuple[str, ...] = Field(
        (), description="Camera names to put in the observation; empty means state only (nothing is rendered)."
    )
    state: tuple[StateKey, ...] = ("tcp_pose", "tcp_velocity", "gripper_width")
    object_frame: Literal["reset", "tcp"] = Field(
        "reset",
        description="Where object_position is measured from, in the reset frame's axes: the reset pose, or the TCP. "
        "From the TCP, the offset a policy must close is one input; from the reset pose it is the difference of "
        "two inputs that each span centimetres, which the network must cancel to the task's tolerance.",
    )

    @field_validator("state")
    @classmethod
    def _unique_state(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(v)) != len(v):
            raise ValueError("state keys must not repeat")
        return v

    @model_validator(mode="after")
    def _object_frame_needs_object_position(self) -> "ObservationConfig":
        if self.object_frame != "reset" and "object_position" not in self.state:
            raise ValueError(f"object_frame is '{self.object_frame}' but state does not list object_position")
        return self


class TaskSpec(StrictModel):
    name: str
    description: str = ""
    control_rate_hz: Float = Field(10.0, gt=0.0, le=50.0, description="Policy rate.")
    max_episode_steps: Int = Field(100, gt=0, le=10000)
    discount: Float = Field(0.97, gt=0.0, le=1.0)
    policy_controls_rotation: bool = Field(
        True,
        description="False: the action is the TCP translation only (plus the gripper) and the orientation is held at the "
        "reset orientation, as SERL's and gym-hil's pick-cube tasks do; fewer dims to explore where rotation does not matter.",
    )
    gripper_mode: Literal["binary", "fixed_closed"] = Field(
        "binary", description="binary: a 7th action dimension opens/closes; fixed_closed: 6-D action, gripper held shut."
    )
    action_scale: ActionScaleConfig = ActionScaleConfig()
    safety_box: SafetyBoxConfig = SafetyBoxConfig()
    reset: ResetConfig = ResetConfig()
    reward: RewardConfig = RewardConfig()
    observation: ObservationConfig = ObservationConfig()
    sim: Optional[SimConfig] = Field(None, description="Scene for the simulated robot; required when the robot backend is sim.")

    @model_validator(mode="after")
    def _pick_cube_possible(self) -> "TaskSpec":
        # A variant written by YAML alone must not ask for the impossible: the TCP never leaves
        # the safety box. (An episode too short for the task shows when the demos are recorded:
        # the scripted expert fails them.)
        if self.sim is None or self.sim.scene.kind != "pick_cube":
            return self
        scene, box = self.sim.scene, self.safety_box
        for index, axis in enumerate("xy"):
            centre, half = scene.cube_xy_center_m[index], scene.cube_xy_half_range_m[index]
            lo, hi = box.xyz_min_m[index], box.xyz_max_m[index]
            if centre - half < lo or centre + half > hi:
                raise ValueError(
                    f"task.sim.scene.cube_xy_center_m {axis} = {centre} +- {half} m (cube_xy_half_range_m) leaves "
                    f"task.safety_box [{lo}, {hi}]: the gripper could not reach a cube that starts there"
                )
        rest_m = scene.cube_edge_m / 2
        if rest_m + scene.success_lift_m > box.xyz_max_m[2]:
            raise ValueError(
                f"task.sim.scene.success_lift_m = {scene.success_lift_m} m lifts the cube's centre to "
                f"{rest_m + scene.success_lift_m:.3f} m, above task.safety_box's top ({box.xyz_max_m[2]} m)"
            )
        return self

    @model_validator(mode="after")
    def _reset_inside_safety_box(self) -> "TaskSpec":
        # Every randomised start pose must be reachable: a reset target outside the box
        # would be clamped, and the arm would start somewhere the task did not ask for.
        r, box = self.reset, self.safety_box
        spread = (r.random_xy_range_m, r.random_xy_range_m, r.random_z_range_m)
        for axis, centre, half, lo, hi in zip("xyz", r.tcp_position_m, spread, box.xyz_min_m, box.xyz_max_m):
            if centre - half < lo or centre + half > hi:
                raise ValueError(
                    f"task.reset.tcp_position_m {axis} = {centre} +- {half} m leaves task.safety_box [{lo}, {hi}]"
                )
        if r.random_rz_range_rad > min(-box.rpy_min_rad[2], box.rpy_max_rad[2]):
            raise ValueError(
                f"task.reset.random_rz_range_rad = {r.random_rz_range_rad} exceeds the safety box yaw limits "
                f"[{box.rpy_min_rad[2]}, {box.rpy_max_rad[2]}]"
            )
        return self
