"""The robot file: the arm, its gripper, its reflexes and the impedance law's gains.

Defaults are the ones that are safe on a real FR3; bounds are the ones accepted on one.
"""

from __future__ import annotations

import math
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from robot_stack.config.schema.primitives import Float, StrictModel, Vec3, Vec6, Vec7


# FR3 joint position limits (rad) from the Franka datasheet; the home pose and the
# nullspace posture must sit inside them.
FR3_JOINT_LOWER_RAD: Vec7 = (-2.7437, -1.7837, -2.9007, -3.0421, -2.8065, 0.5445, -3.0159)
FR3_JOINT_UPPER_RAD: Vec7 = (2.7437, 1.7837, 2.9007, -0.1518, 2.8065, 4.5169, 3.0159)
FR3_TORQUE_LIMITS_NM: Vec7 = (87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0)
FR3_HOME_RAD: Vec7 = (0.0, -math.pi / 4, 0.0, -3 * math.pi / 4, 0.0, math.pi / 2, math.pi / 4)


class ImpedanceConfig(StrictModel):
    """Cartesian impedance gains. Defaults follow the SERL controller on real Frankas."""

    translational_stiffness_n_per_m: Float = Field(2000.0, gt=0, le=5000)
    translational_damping_ns_per_m: Float = Field(89.0, ge=0, le=300)
    rotational_stiffness_nm_per_rad: Float = Field(150.0, gt=0, le=300)
    rotational_damping_nms_per_rad: Float = Field(7.0, ge=0, le=50)
    translational_error_clip_m: Vec3 = Field(
        (0.01, 0.01, 0.01),
        description="Per-axis clip of the position error before the gain (m); bounds the spring force.",
    )
    rotational_error_clip_rad: Vec3 = Field(
        (0.05, 0.05, 0.05),
        description="Per-axis clip of the orientation error before the gain (rad); bounds the spring torque.",
    )
    torque_rate_limit_nm_per_cycle: Float = Field(1.0, gt=0, le=5.0)
    nullspace_stiffness_nm_per_rad: Float = Field(0.2, ge=0, le=20)

    @field_validator("translational_error_clip_m")
    @classmethod
    def _translational_clip_range(cls, v: Vec3) -> Vec3:
        if not all(0 < c <= 0.1 for c in v):
            raise ValueError("each translational error clip must be in (0, 0.1] m")
        return v

    @field_validator("rotational_error_clip_rad")
    @classmethod
    def _rotational_clip_range(cls, v: Vec3) -> Vec3:
        if not all(0 < c <= 0.5 for c in v):
            raise ValueError("each rotational error clip must be in (0, 0.5] rad")
        return v

    @model_validator(mode="after")
    def _spring_force_bounded(self) -> "ImpedanceConfig":
        # The clip is the force bound: K * clip is the largest spring force the law can
        # ever command. Refuse combinations that would push harder than a contact-rich
        # task on a real FR3 should.
        force_n = self.translational_stiffness_n_per_m * max(self.translational_error_clip_m)
        torque_nm = self.rotational_stiffness_nm_per_rad * max(self.rotational_error_clip_rad)
        if force_n > 100.0:
            raise ValueError(
                f"stiffness x error clip allows {force_n:.1f} N of spring force; at most 100 N is allowed"
            )
        if torque_nm > 30.0:
            raise ValueError(
                f"rotational stiffness x error clip allows {torque_nm:.1f} Nm; at most 30 Nm is allowed"
            )
        return self


class GripperConfig(StrictModel):
    kind: Literal["franka_hand", "none"] = "franka_hand"
    min_width_m: Float = Field(0.0, ge=0.0, le=0.08)
    max_width_m: Float = Field(0.08, gt=0.0, le=0.08)
    grasp_force_n: Float = Field(20.0, gt=0.0, le=70.0, description="Franka Hand continuous force is 70 N.")
    speed_m_per_s: Float = Field(0.1, gt=0.0, le=0.2)

    @model_validator(mode="after")
    def _range(self) -> "GripperConfig":
        if self.min_width_m >= self.max_width_m:
            raise ValueError("min_width_m must be below max_width_m")
        return self


class CollisionConfig(StrictModel):
    """The arm's reflex thresholds (libfranka's collision behaviour): external torque or
    force above these stops the robot with a reflex, which the backend then recovers from."""

    joint_torque_nm: Vec7 = Field(
        (20.0, 20.0, 18.0, 18.0, 16.0, 14.0, 12.0), description="Per-joint external torque threshold (Nm)."
    )
    cartesian_force: Vec6 = Field(
        (20.0, 20.0, 20.0, 25.0, 25.0, 25.0),
        description="External wrench threshold at the end effector: force x, y, z (N), torque x, y, z (Nm).",
    )

    @field_validator("joint_torque_nm", "cartesian_force")
    @classmethod
    def _positive(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not all(0 < x <= 100.0 for x in v):
            raise ValueError("each collision threshold must be in (0, 100]")
        return v


class LoadConfig(StrictModel):
    """What hangs below the flange beyond the Franka Hand (a peg, a tool), for the robot's
    dynamic model. Zero mass: nothing extra."""

    mass_kg: Float = Field(0.0, ge=0.0, le=3.0)
    center_of_mass_m: Vec3 = Field((0.0, 0.0, 0.0), description="In the flange frame.")
    inertia_kg_m2: Vec3 = Field((0.0, 0.0, 0.0), description="Diagonal of the inertia about the centre of mass.")


class RobotConfig(StrictModel):
    name: str = "fr3"
    backend: Literal["sim", "franka"] = "sim"
    address: Optional[str] = Field(
        None, description="Hostname or IP of the robot's control interface (franka backend only)."
    )
    driver: Literal["franky", "libfranka_torque"] = Field(
        "franky",
        description="franka backend only. franky: a C++ 1 kHz Cartesian impedance tracking loop whose target "
        "Python sets at the policy rate (the default). libfranka_torque: this project's own impedance law in "
        "Python over pylibfranka's readOnce/writeOnce (control-law research; needs a fast real-time machine).",
    )
    realtime: Literal["enforce", "ignore"] = Field(
        "enforce",
        description="libfranka's real-time check: 'enforce' refuses to run without a real-time kernel "
        "(the safe choice on a robot); 'ignore' for simulators and development machines.",
    )
    collision: CollisionConfig = CollisionConfig()
    load: LoadConfig = LoadConfig()
    joint_move_speed_factor: Float = Field(
        0.1, gt=0.0, le=0.5,
        description="Fraction of the arm's velocity, acceleration and jerk limits used by joint-space moves "
        "(resets to the home pose).",
    )
    home_joint_positions_rad: Vec7 = FR3_HOME_RAD
    tcp_offset_m: Vec3 = Field(
        (0.0, 0.0, 0.1034), description="TCP position in the flange frame (m); 0.1034 is the Franka Hand's fingertip centre."
    )
    control_rate_hz: Float = Field(1000.0, ge=500.0, le=1000.0, description="Impedance loop rate.")
    watchdog_timeout_s: Float = Field(
        0.5, gt=0.0, le=2.0, description="Hold position when no target arrives for this long."
    )
    torque_limits_nm: Vec7 = FR3_TORQUE_LIMITS_NM
    gripper: GripperConfig = GripperConfig()
    impedance: ImpedanceConfig = ImpedanceConfig()

    @field_validator("home_joint_positions_rad")
    @classmethod
    def _home_within_limits(cls, v: Vec7) -> Vec7:
        for i, (q, lo, hi) in enumerate(zip(v, FR3_JOINT_LOWER_RAD, FR3_JOINT_UPPER_RAD)):
            if not lo <= q <= hi:
                raise ValueError(f"joint {i + 1} = {q:.4f} rad is outside the FR3 limits [{lo}, {hi}]")
        return v

    @field_validator("torque_limits_nm")
    @classmethod
    def _torque_limits(cls, v: Vec7) -> Vec7:
        for i, (t, hw) in enumerate(zip(v, FR3_TORQUE_LIMITS_NM)):
            if not 0 < t <= hw:
                raise ValueError(f"joint {i + 1} torque limit {t} Nm must be in (0, {hw}]")
        return v

    @model_validator(mode="after")
    def _address_for_real_robot(self) -> "RobotConfig":
        if self.backend == "franka" and not self.address:
            raise ValueError("backend 'franka' needs an address (the robot's hostname or IP)")
        return self
