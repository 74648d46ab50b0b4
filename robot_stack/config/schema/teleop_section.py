"""The teleop file: the operator's device, and how the scripted operator steps in."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator

from robot_stack.config.schema.primitives import Float, Int, StrictModel, Vec3, Vec6


class ScriptedInterventionConfig(StrictModel):
    """How the scripted teleoperator behaves like a human watching the policy: it steps in
    when the policy strays from what the expert would do, with a probability that decays
    as the session goes on, and then drives for a burst of steps, as a human would."""

    stray_threshold: Float = Field(
        1.2, gt=0.0, le=4.0, description="Distance (action units, translation part) between the policy's and the expert's action that counts as straying."
    )
    stray_steps: Int = Field(5, ge=1, le=100, description="Consecutive strayed steps before the operator may step in.")
    initial_rate: Float = Field(0.5, ge=0.0, le=1.0, description="Probability of stepping in once the policy strayed, at the session start.")
    final_rate: Float = Field(0.02, ge=0.0, le=1.0, description="The probability it decays towards.")
    decay_env_steps: Float = Field(3000.0, gt=0.0, description="e-folding time of the decay, in env steps.")
    burst_steps: Int = Field(10, ge=1, le=1000, description="Steps the operator drives once it stepped in.")
    max_fraction: Float = Field(1.0, ge=0.0, le=1.0, description="Cap on the fraction of an episode's steps under intervention.")


# Gripper buttons are interventions; the others are operator commands (actor/console.py), taken once
# per press, and "pause" toggles.
TeleopButtonAction = Literal["gripper_close", "gripper_open", "success", "failure", "rerecord", "pause", "reset", "stop"]


class TeleopConfig(StrictModel):
    kind: Literal["spacemouse", "scripted", "none"] = "none"
    translation_scale: Float = Field(1.0, gt=0, le=5.0, description="Device translation (unit) -> action units.")
    rotation_scale: Float = Field(1.0, gt=0, le=5.0, description="Device rotation (unit) -> action units.")
    deadzone: Float = Field(
        0.001, ge=0.0, lt=1.0,
        description="Per axis, in device units normalised to [-1, 1]: smaller deflections read as zero (and are "
        "not an intervention); larger ones are rescaled so the command starts from zero at the edge.",
    )
    axis_signs: Vec6 = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    frame: Literal["end_effector", "base"] = Field(
        "end_effector",
        description="spacemouse: 'end_effector' reads the device's axes as the gripper's own (a device held "
        "or mounted with the hand); 'base' reads them in the robot base frame, turned by "
        "base_from_device_rpy_rad, and rotates them into the end-effector frame with the measured TCP pose.",
    )
    base_from_device_rpy_rad: Vec3 = Field(
        (0.0, 0.0, 0.0),
        description="spacemouse, frame 'base': the device's orientation in the robot base frame "
        "(an operator facing the robot across the table: yaw pi).",
    )
    device_path: Optional[str] = Field(
        None, description="spacemouse: the hidraw path to open (e.g. /dev/hidraw3); default: the first SpaceMouse found."
    )
    disconnect_timeout_s: Float = Field(
        0.5, gt=0.0, le=10.0, description="spacemouse: no report for this long while moving counts as a disconnect."
    )
    button_map: dict[Int, TeleopButtonAction] = Field(
        default_factory=lambda: {0: "gripper_close", 1: "gripper_open"},
        description="spacemouse: button index (its bit in the device's button report: 0 is the left button of a "
        "two-button device) -> action.",
    )
    expert_noise_std: Float = Field(
        0.0, ge=0.0, le=1.0, description="Gaussian noise (action units) added by the scripted teleoperator."
    )
    intervention: ScriptedInterventionConfig = Field(
        default_factory=ScriptedInterventionConfig,
        description="When the scripted teleoperator takes over from the policy (scripted devices only).",
    )

    @field_validator("axis_signs")
    @classmethod
    def _signs(cls, v: Vec6) -> Vec6:
        if not all(s in (-1.0, 1.0) for s in v):
            raise ValueError("axis signs must each be +1 or -1")
        return v
