"""The YAML schema: the single source of truth for every tunable of a task session.

Units live in the field names (``_m``, ``_rad``, ``_hz``, ``_n_per_m``...). Every default
is one that is safe on a real FR3; bounds are the ones we accept on real hardware.
Unknown keys are errors everywhere (``extra="forbid"``): a typo must never fall back to a
default silently.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator


def _not_a_boolean(value: Any) -> Any:
    # YAML reads true, yes and on as booleans, and pydantic would take them as 1: a slip
    # that must never become a stiffness or a pose coordinate on a real arm.
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got the boolean {str(value).lower()}")
    return value


# The schema's numbers: every float and int field is one of these, so a boolean is refused
# wherever a number is expected. Floats are also finite (StrictModel's allow_inf_nan=False):
# NaN passes every `<` and `>` bound check, and inf in a safety box is no box.
Float = Annotated[float, BeforeValidator(_not_a_boolean)]
Int = Annotated[int, BeforeValidator(_not_a_boolean)]

Vec3 = tuple[Float, Float, Float]
Vec2 = tuple[Float, Float]
Vec6 = tuple[Float, Float, Float, Float, Float, Float]
Vec7 = tuple[Float, Float, Float, Float, Float, Float, Float]

# FR3 joint position limits (rad) from the Franka datasheet; the home pose and the
# nullspace posture must sit inside them.
FR3_JOINT_LOWER_RAD: Vec7 = (-2.7437, -1.7837, -2.9007, -3.0421, -2.8065, 0.5445, -3.0159)
FR3_JOINT_UPPER_RAD: Vec7 = (2.7437, 1.7837, 2.9007, -0.1518, 2.8065, 4.5169, 3.0159)
FR3_TORQUE_LIMITS_NM: Vec7 = (87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0)
FR3_HOME_RAD: Vec7 = (0.0, -math.pi / 4, 0.0, -3 * math.pi / 4, 0.0, math.pi / 2, math.pi / 4)


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)


# --------------------------------------------------------------------------- robot


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


# --------------------------------------------------------------------------- cameras


class CameraConfig(StrictModel):
    kind: Literal["sim", "realsense", "replay"] = "sim"
    serial: Optional[str] = Field(None, description="RealSense serial number (realsense only).")
    sim_camera: Optional[str] = Field(
        None, description="Name of the MuJoCo camera to render (sim only; defaults to this camera's name)."
    )
    replay_path: Optional[Path] = Field(None, description="Recorded file to play back (replay only).")
    resolution_wh: tuple[Int, Int] = Field((640, 480), description="Capture resolution (width, height) in px.")
    fps: Int = Field(30, gt=0, le=90)
    exposure_us: Optional[Int] = Field(None, gt=0, le=200000)
    crop_xywh: Optional[tuple[Int, Int, Int, Int]] = Field(
        None, description="Crop (x, y, width, height) in capture pixels, applied before the resize."
    )
    output_size_hw: tuple[Int, Int] = Field((128, 128), description="Image size given to the policy (h, w).")
    depth: bool = Field(False, description="Also stream depth (realsense and replay only).")

    @field_validator("resolution_wh", "output_size_hw")
    @classmethod
    def _positive_size(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not all(16 <= s <= 4096 for s in v):
            raise ValueError("image sizes must be between 16 and 4096 px")
        return v

    @model_validator(mode="after")
    def _kind_fields(self) -> "CameraConfig":
        if self.kind == "realsense" and not self.serial:
            raise ValueError("a realsense camera needs its serial")
        if self.kind == "replay" and self.replay_path is None:
            raise ValueError("a replay camera needs replay_path")
        if self.crop_xywh is not None:
            x, y, w, h = self.crop_xywh
            cw, ch = self.resolution_wh
            if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > cw or y + h > ch:
                raise ValueError(f"crop {self.crop_xywh} does not fit inside the {cw}x{ch} capture")
        return self


class CamerasConfig(StrictModel):
    cameras: dict[str, CameraConfig] = Field(default_factory=dict)


# --------------------------------------------------------------------------- teleop

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


TeleopButtonAction = Literal["gripper_close", "gripper_open", "success", "failure", "rerecord"]


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


# --------------------------------------------------------------------------- task


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


class EncoderPretrainConfig(StrictModel):
    """How ``robot-stack encoder pretrain`` trains the trunk on the lab's own recorded frames (the
    session runs it first when ``pretrained_path`` does not exist yet). Every target comes from
    what a real cell records with its frames: proprioception and the demos' own poses."""

    objective: Literal["keypoints", "proprioception", "contrastive"] = Field(
        "keypoints",
        description="keypoints: regress the TCP pose, the demo's grasp pose (where the gripper first closed) and "
        "its final pose, relative to the TCP, from the images; proprioception: the TCP pose and gripper width "
        "only; contrastive: two augmented views of a frame against the rest of the batch (SimCLR).",
    )
    steps: Int = Field(600, ge=0, le=1_000_000, description="Optimiser steps; 0 only fits the projection.")
    batch_size: Int = Field(32, ge=2, le=4096, description="Frames per step (each camera's image of each).")
    lr: Float = Field(1e-3, gt=0.0, le=1.0)
    weight_decay: Float = Field(1e-4, ge=0.0, le=1.0)
    max_minutes: Float = Field(8.0, gt=0.0, le=24 * 60.0, description="Training stops after this long, whatever steps are left.")
    seed: Int = Field(0, ge=0)


class EncoderConfig(StrictModel):
    """Per-camera image encoder: ResNet-10 with GroupNorm, then spatial learned embeddings."""

    pretrained_path: Optional[Path] = Field(
        None,
        description="Local safetensors file with ResNet-10 weights (`robot-stack encoder pretrain` or `encoder "
        "convert` writes one); none means random initialisation.",
    )
    frozen: bool = Field(True, description="Keep the ResNet trunk fixed (HIL-SERL freezes its pretrained encoder).")
    projection_channels: Optional[Int] = Field(
        None, ge=1, le=512,
        description="A fixed 1x1 map of the trunk's 512 channels to this many before the head (the weights file "
        "carries it: `encoder pretrain` fits it to the lab's frames); none keeps all 512.",
    )
    cache_features: bool = Field(
        True,
        description="With a frozen trunk, the learner's replay keeps trunk features per frame in place of the "
        "images and updates train only what follows the trunk; false runs the trunk at every update.",
    )
    cached_augmentation: Literal["feature_shift", "stored_crops", "none"] = Field(
        "stored_crops",
        description="Augmentation of cached features: a random sub-cell shift of the feature map at every sample "
        "(as far as the random crop moves the image), or stored_crops random crops per frame run through the "
        "trunk when the frame is stored, one picked per sample.",
    )
    stored_crops: Int = Field(2, ge=1, le=16, description="Crops per frame for cached_augmentation: stored_crops.")
    pooling: Literal["spatial_learned_embeddings", "flatten"] = Field(
        "spatial_learned_embeddings",
        description="How the head reads the feature map: HIL-SERL's learned spatial embeddings, or the map "
        "flattened into the dense layer (cheaper on a CPU when projection_channels is small).",
    )
    spatial_embeddings: Int = Field(8, ge=1, le=64, description="Learned spatial embedding channels per camera.")
    bottleneck_dim: Int = Field(256, ge=8, le=2048, description="Dense layer after the spatial embedding, per camera.")
    dropout: Float = Field(0.1, ge=0.0, lt=1.0)
    random_crop_pad_px: Int = Field(4, ge=0, le=32, description="Random-crop augmentation of obs and next_obs; 0 turns it off.")
    state_embedding_dim: Int = Field(64, ge=0, le=1024, description="Dense+LayerNorm+tanh on the state vector; 0 feeds it raw.")
    pretrain: Optional[EncoderPretrainConfig] = Field(
        None, description="How to make pretrained_path from the lab's frames when it does not exist yet."
    )

    @model_validator(mode="after")
    def _pretrain_needs_a_path(self) -> "EncoderConfig":
        if self.pretrain is not None and self.pretrained_path is None:
            raise ValueError("encoder.pretrain is set but encoder.pretrained_path is not: name the file it should write")
        return self


# --------------------------------------------------------------------------- reward

# Named quantities a state check can read (robot base frame; the wrench is the external
# force at the TCP).
StateQuantity = Literal[
    "tcp_x_m", "tcp_y_m", "tcp_z_m", "gripper_width_m", "force_x_n", "force_y_n", "force_z_n", "force_norm_n",
    "tcp_speed_m_per_s",
]


class StateCheckConfig(StrictModel):
    """One condition on the robot state that a success also needs, e.g. the TCP above a
    height or the gripper closed on something: ``quantity op value``."""

    quantity: StateQuantity
    op: Literal["<", "<=", ">", ">="]
    value: Float


class ClassifierTrainingConfig(StrictModel):
    steps: Int = Field(300, ge=1, le=100_000, description="Optimiser steps.")
    batch_size: Int = Field(128, ge=2, le=4096)
    lr: Float = Field(3e-4, gt=0.0, le=1.0)
    weight_decay: Float = Field(1e-4, ge=0.0, le=1.0)
    balanced: bool = Field(True, description="Sample every class equally often in a batch, whatever the frame counts.")
    brightness: Float = Field(0.15, ge=0.0, le=1.0, description="Random brightness change (+- fraction) per image.")
    contrast: Float = Field(0.15, ge=0.0, le=1.0, description="Random contrast change (+- fraction) per image.")
    augmented_copies: Int = Field(
        2, ge=0, le=64,
        description="Frozen trunk: trunk features are computed once for each frame and for this many augmented copies of it.",
    )
    calibration_fraction: Float = Field(
        0.25, gt=0.0, lt=1.0,
        description="Share of the recorded episodes kept out of training to calibrate the threshold (split by episode).",
    )
    seed: Int = Field(0, ge=0)


class ClassifierConfig(StrictModel):
    """A success classifier on labelled frames: a ResNet-10 encoder per camera (the
    learner's family), concatenated, then an MLP head. Of the encoder settings,
    ``random_crop_pad_px`` is the training's random-crop augmentation and
    ``state_embedding_dim`` is unused (the classifier sees images only)."""

    cameras: tuple[str, ...] = Field((), description="Cameras the classifier looks at; empty: the task's observed cameras.")
    encoder: EncoderConfig = Field(default_factory=lambda: EncoderConfig(dropout=0.0))
    hidden_dim: Int = Field(256, ge=8, le=4096)
    training: ClassifierTrainingConfig = ClassifierTrainingConfig()


class VlmConfig(StrictModel):
    """A vision-language model (CLIP/SigLIP family, loaded with ``transformers`` from a local
    directory: nothing is downloaded) scoring images against success/failure prompts."""

    model_path: Path = Field(description="Local directory of the model (config, weights, tokenizer, preprocessor config).")
    cameras: tuple[str, ...] = Field((), description="Cameras to score; empty: the task's observed cameras.")
    success_prompts: tuple[str, ...] = Field(min_length=1, description="Texts describing the finished task.")
    failure_prompts: tuple[str, ...] = Field(min_length=1, description="Texts describing anything else.")
    camera_reduction: Literal["mean", "min", "max"] = Field(
        "mean", description="How per-camera zero-shot scores combine into one (min: every camera must agree)."
    )
    few_shot: bool = Field(
        False, description="Train a small head on the frozen image embeddings from labelled frames (reward train)."
    )
    few_shot_steps: Int = Field(300, ge=1, le=100_000)
    few_shot_lr: Float = Field(1e-2, gt=0.0, le=1.0)


class RewardConfig(StrictModel):
    source: Literal["sim_ground_truth", "classifier", "vlm"] = "sim_ground_truth"
    classifier_path: Optional[Path] = Field(
        None, description="Trained reward model directory (reward train writes it); the classifier and vlm sources load it."
    )
    threshold: Optional[Float] = Field(
        None, gt=0.0, lt=1.0,
        description="Success probability above which a step is a success; none: the threshold calibrated and saved with the model.",
    )
    target_precision: Float = Field(
        0.99, gt=0.5, le=1.0, description="Calibration picks the lowest threshold whose held-out precision reaches this."
    )
    terminate_on_success: bool = True
    state_checks: tuple[StateCheckConfig, ...] = Field(
        (), description="Conditions on the robot state that a success also needs (all of them)."
    )
    classifier: ClassifierConfig = ClassifierConfig()
    vlm: Optional[VlmConfig] = None

    @model_validator(mode="after")
    def _source_needs(self) -> "RewardConfig":
        if self.source == "classifier" and self.classifier_path is None:
            raise ValueError("reward source 'classifier' needs classifier_path (the directory reward train writes)")
        if self.source == "vlm" and self.vlm is None:
            raise ValueError("reward source 'vlm' needs a 'vlm' section (model_path, success_prompts, failure_prompts)")
        return self


# object_position: the task object's position (cube; hole) relative to the reset pose. Only
# the simulated robot knows it; a state-based policy needs it, as a camera-based one does not.
StateKey = Literal["tcp_pose", "tcp_velocity", "tcp_wrench", "gripper_width", "object_position"]


class ObservationConfig(StrictModel):
    images: tuple[str, ...] = Field(
        (), description="Camera names to put in the observation; empty means state only (nothing is rendered)."
    )
    state: tuple[StateKey, ...] = ("tcp_pose", "tcp_velocity", "gripper_width")

    @field_validator("state")
    @classmethod
    def _unique_state(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(v)) != len(v):
            raise ValueError("state keys must not repeat")
        return v


class PickCubeScene(StrictModel):
    kind: Literal["pick_cube"] = "pick_cube"
    cube_edge_m: Float = Field(0.04, ge=0.015, le=0.06, description="Must fit the 0.08 m gripper opening.")
    cube_mass_kg: Float = Field(0.05, gt=0.0, le=1.0)
    cube_xy_center_m: Vec2 = (0.5, 0.0)
    cube_xy_half_range_m: Vec2 = Field((0.08, 0.08), description="Cube start is uniform in center +- half range.")
    cube_yaw_half_range_rad: Float = Field(0.0, ge=0.0, le=math.pi / 4)
    success_lift_m: Float = Field(0.1, gt=0.0, le=0.3, description="Lift above the table that counts as success.")


class PegInsertionScene(StrictModel):
    kind: Literal["peg_insertion"] = "peg_insertion"
    peg_radius_m: Float = Field(0.01, ge=0.005, le=0.02)
    peg_length_m: Float = Field(0.08, ge=0.04, le=0.12)
    hole_clearance_m: Float = Field(
        0.0015, gt=0.0, le=0.002, description="Radial gap between peg and hole (precision insertion: <= 2 mm)."
    )
    hole_depth_m: Float = Field(0.03, ge=0.01, le=0.05)
    hole_xy_center_m: Vec2 = (0.5, 0.0)
    hole_xy_half_range_m: Vec2 = (0.03, 0.03)
    success_depth_m: Float = Field(0.02, gt=0.0, le=0.05, description="Insertion depth that counts as success.")

    @model_validator(mode="after")
    def _depths(self) -> "PegInsertionScene":
        if self.success_depth_m > self.hole_depth_m:
            raise ValueError("success_depth_m cannot exceed hole_depth_m")
        return self


SimScene = Annotated[Union[PickCubeScene, PegInsertionScene], Field(discriminator="kind")]


class SimConfig(StrictModel):
    scene: SimScene
    physics_timestep_s: Float = Field(
        0.001, ge=0.0005, le=0.002, description="MuJoCo step; the impedance law runs every step."
    )


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


# --------------------------------------------------------------------------- session


class TransportConfig(StrictModel):
    """Actor <-> learner link over ZeroMQ (robot_stack.transport)."""

    heartbeat_interval_s: Float = Field(0.5, gt=0, le=10, description="both sides send a heartbeat this often")
    peer_timeout_s: Float = Field(
        5.0, gt=0, le=120, description="silence after which a peer counts as gone and the actor reconnects"
    )
    handshake_timeout_s: Float = Field(3.0, gt=0, le=60, description="wait for the learner's welcome before retrying")
    max_message_mb: Float = Field(256.0, gt=0, le=4096, description="larger received messages are dropped")
    max_in_flight_batches: Int = Field(256, ge=1, le=100000, description="batches sent but not yet acknowledged")
    max_in_flight_mb: Float = Field(
        64.0, gt=0, le=4096, description="bytes sent but not yet acknowledged (one batch is always let through)"
    )
    outbox_dir: Path = Field(Path("runs/outbox"), description="actor: where unacknowledged batches spill and persist")
    outbox_memory_mb: Float = Field(256.0, gt=0, description="actor: unacknowledged batches kept in memory")
    outbox_max_disk_gb: Float = Field(20.0, gt=0, description="actor: disk bound of the outbox")
    durable_outbox: bool = Field(
        True, description="actor: write every batch to the outbox directory so a killed actor loses nothing"
    )
    receive_queue_mb: Float = Field(512.0, gt=0, description="learner: received batches not yet taken by training")
    weights_chunk_mb: Float = Field(4.0, gt=0, le=512, description="learner: weights travel in chunks of this size")


class SessionConfig(StrictModel):
    learner_host: str = "127.0.0.1"
    transitions_port: Int = Field(5555, ge=1024, le=65535)
    weights_port: Int = Field(5556, ge=1024, le=65535)
    # CurveZMQ: authentication and encryption are on when these name key files made by
    # `robot-stack keys generate`. The learner needs its secret key and the directory of
    # public keys of the actors it accepts; an actor needs its secret key and the learner's
    # public key.
    server_public_key_file: Optional[Path] = None
    server_secret_key_file: Optional[Path] = None
    client_secret_key_file: Optional[Path] = None
    authorized_client_keys_dir: Optional[Path] = None
    # Per task by default: tasks that shared one checkpoint dir resumed or pruned each other's
    # checkpoints. A task file resolves the defaults (TaskConfig); a session's --run-dir wins.
    run_dir: Optional[Path] = Field(None, description="Where a task's runs go; none: runs/<task.name>.")
    checkpoint_dir: Optional[Path] = Field(None, description="none: <run_dir>/checkpoints.")
    log_dir: Optional[Path] = Field(None, description="none: <run_dir>/logs.")
    transport: TransportConfig = TransportConfig()

    @model_validator(mode="after")
    def _consistent(self) -> "SessionConfig":
        if self.transitions_port == self.weights_port:
            raise ValueError("transitions_port and weights_port must differ")
        keys = {
            "server_public_key_file": self.server_public_key_file,
            "server_secret_key_file": self.server_secret_key_file,
            "client_secret_key_file": self.client_secret_key_file,
            "authorized_client_keys_dir": self.authorized_client_keys_dir,
        }
        named = [name for name, value in keys.items() if value is not None]
        if named and len(named) != len(keys):
            missing = [name for name in keys if name not in named]
            raise ValueError(
                f"authentication is half configured: {', '.join(named)} set but {', '.join(missing)} not; "
                "set all four (robot-stack keys generate makes the files) or none"
            )
        return self

    @property
    def authenticated(self) -> bool:
        return self.server_secret_key_file is not None

    def for_task(self, task_name: str) -> "SessionConfig":
        """This section with its directories resolved for ``task_name``."""
        run_dir = self.run_dir if self.run_dir is not None else Path("runs") / task_name
        return self.model_copy(update={
            "run_dir": run_dir,
            "checkpoint_dir": self.checkpoint_dir if self.checkpoint_dir is not None else run_dir / "checkpoints",
            "log_dir": self.log_dir if self.log_dir is not None else run_dir / "logs",
        })


# --------------------------------------------------------------------------- agent and training


class AgentConfig(StrictModel):
    """SAC in the RLPD style, as HIL-SERL runs it. The discount is the task's (task.discount)."""

    kind: Literal["sac"] = "sac"
    hidden_dims: tuple[Int, ...] = Field((256, 256), min_length=1, max_length=6, description="MLP widths (LayerNorm after each).")
    critic_ensemble_size: Int = Field(2, ge=1, le=20)
    critic_subsample_size: Optional[Int] = Field(
        None, ge=1, le=20, description="Critics whose minimum forms the target (RLPD/REDQ); none uses all of them."
    )
    critic_actor_ratio: Int = Field(2, ge=1, le=20, description="Critic updates per actor and temperature update.")
    actor_lr: Float = Field(3e-4, gt=0, le=1e-1)
    critic_lr: Float = Field(3e-4, gt=0, le=1e-1)
    temperature_lr: Float = Field(3e-4, gt=0, le=1e-1)
    temperature_init: Float = Field(1e-2, gt=0, le=10.0)
    target_entropy: Optional[Float] = Field(None, description="None means -|A|/2 (A: the continuous action dims).")
    tau: Float = Field(0.005, gt=0, le=1.0, description="Soft target update rate.")
    backup_entropy: bool = Field(False, description="Entropy term in the critic's target (HIL-SERL: off).")
    log_std_min: Float = Field(-5.0, ge=-20.0, le=0.0)
    log_std_max: Float = Field(2.0, ge=-2.0, le=5.0)
    gripper: Literal["grasp_critic", "continuous"] = Field(
        "grasp_critic",
        description="Binary-gripper tasks: a double-DQN grasp critic over {open, stay, close} (HIL-SERL), or one more continuous action dim.",
    )
    grasp_critic_lr: Float = Field(3e-4, gt=0, le=1e-1)
    grasp_penalty: Float = Field(-0.02, ge=-1.0, le=0.0, description="Reward added for each gripper state change (grasp critic only).")
    grasp_epsilon: Float = Field(0.1, ge=0.0, le=1.0, description="Exploration: chance of a random gripper choice by the actor.")
    encoder: EncoderConfig = EncoderConfig()
    batch_size: Int = Field(256, ge=1, le=65536)
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA if available, else CPU.")
    mixed_precision: bool = Field(
        True,
        description="bfloat16 matmuls and convolutions (float32 weights, output heads and losses) where the hardware "
        "computes bfloat16 natively: CUDA, CPUs with AVX-512 BF16 or AMX; float32 elsewhere.",
    )
    compile: bool = Field(False, description="torch.compile the update step on CUDA; ignored on CPU.")

    @model_validator(mode="after")
    def _consistent(self) -> "AgentConfig":
        if self.critic_subsample_size is not None and self.critic_subsample_size > self.critic_ensemble_size:
            raise ValueError(
                f"critic_subsample_size {self.critic_subsample_size} exceeds critic_ensemble_size {self.critic_ensemble_size}"
            )
        if self.log_std_min >= self.log_std_max:
            raise ValueError("log_std_min must be below log_std_max")
        return self


class ActorConfig(StrictModel):
    """The actor's control loop."""

    rate_locked: Optional[bool] = Field(
        None,
        description="Hold the loop to task.control_rate_hz. None: locked on a real robot, free-running on the "
        "simulated one (its clock is simulated, so waiting would only slow learning down).",
    )
    send_every_steps: Int = Field(1, ge=1, le=10000, description="Transitions per message; an episode's end always sends.")
    stats_every_s: Float = Field(5.0, gt=0.0, description="Loop jitter and rate go to the learner this often.")
    torch_threads: Int = Field(1, ge=1, le=64, description="CPU threads for policy inference.")
    stop_timeout_s: Float = Field(
        10.0, gt=0.0, le=600.0,
        description="On stop, wait this long for the learner to receive what was sent and checkpoint it (what it has "
        "not checkpointed stays in the outbox for the next start).",
    )
    deterministic_every_episodes: Int = Field(
        0, ge=0, le=1000,
        description="Every Nth episode the policy acts deterministically (its mean action, as an evaluation runs "
        "it) and nobody intervenes: a running measure of what an evaluation would show, which "
        "training.stop_on can stop on; 0: never.",
    )
    sim_max_lead_env_steps: Int = Field(
        400, ge=1,
        description="A free-running simulated actor waits while it is this many env steps ahead of what the learner's "
        "updates cover (weights version / training.updates_per_env_step), so a fast simulator cannot outrun training; "
        "a rate-locked actor never waits.",
    )


class TrainingConfig(StrictModel):
    """The learner process and the session around it."""

    seed: Int = Field(0, ge=0)
    torch_threads: Optional[Int] = Field(None, ge=1, le=256, description="Learner CPU threads; none: torch's default.")
    online_buffer_capacity: Int = Field(200_000, ge=100, le=10_000_000, description="Transitions.")
    demo_buffer_capacity: Int = Field(50_000, ge=100, le=10_000_000, description="Demo and intervention transitions.")
    demo_ratio: Float = Field(0.5, ge=0.0, le=1.0, description="Share of each batch from the demo buffer (RLPD: 0.5).")
    demo_episodes: Int = Field(20, ge=0, le=10000, description="Demos the session records when none exist.")
    demo_dir: Optional[Path] = Field(None, description="Where demos are kept; none means <session.run_dir>/../demos/<task>.")
    updates_per_env_step: Float = Field(1.0, gt=0.0, le=64.0, description="Update-to-data ratio: learner steps per received transition.")
    min_online_transitions: Int = Field(200, ge=0, description="Online transitions before training starts (demos are used from the start).")
    publish_every_updates: Int = Field(50, ge=1, description="Weights go to the actors every N learner steps...")
    publish_every_s: Float = Field(5.0, gt=0.0, description="...or every T seconds, whichever comes first.")
    checkpoint_every_s: Float = Field(300.0, gt=0.0, le=86400.0)
    log_every_updates: Int = Field(100, ge=1)
    max_env_steps: Int = Field(20_000, ge=1, description="The session stops here...")
    target_success_rate: Optional[Float] = Field(
        0.9, gt=0.0, le=1.0, description="...or once the policy's success rate over the last window reaches this."
    )
    stop_on: Literal["policy_episodes", "deterministic_episodes"] = Field(
        "policy_episodes",
        description="The success rate target_success_rate is read from: the exploring policy's episodes nobody "
        "intervened in, or the deterministic episodes (actor.deterministic_every_episodes), over the last "
        "success_window_episodes of them.",
    )
    success_window_episodes: Int = Field(20, ge=1, le=1000)
    min_policy_only_episodes: Int = Field(
        10, ge=0, le=1000, description="The target counts only episodes without intervention; at least this many in the window."
    )
    eval_episodes: Int = Field(50, ge=0, le=10000, description="Episodes without interventions after training.")
    max_wall_time_s: Optional[Float] = Field(None, gt=0.0, description="The session also stops after this long.")


# --------------------------------------------------------------------------- task file


class RosConfig(StrictModel):
    """How the ROS 2 nodes of a task session run (ros_ws/src/robot_stack_ros)."""

    state_publish_rate_hz: Float = Field(
        100.0, ge=50.0, le=1000.0,
        description="Controller state topics (joint states, TCP pose, twist, wrench) per second; the impedance "
        "law runs at robot.control_rate_hz between them.",
    )
    service_timeout_s: Float = Field(2.0, gt=0.0, le=60.0, description="A success query or joint move that takes longer fails.")
    reset_timeout_s: Float = Field(60.0, gt=0.0, le=600.0, description="A reset (scripted or human) that takes longer fails.")
    wait_for_nodes_s: Float = Field(
        30.0, gt=0.0, le=600.0, description="How long a node waits at start for the topics and services it needs."
    )
    observation_lead_s: Float = Field(
        0.04, ge=0.0, le=0.08,
        description="The actor reads its observation this long before the next control tick, leaving that much "
        "time for the success query, inference and the transition.",
    )
    state_timeout_s: Float = Field(
        0.5, gt=0.0, le=5.0,
        description="Controller state older than this is waited for (as long again) and then refused: the "
        "actor stops rather than act on a stale robot.",
    )


class TaskConfig(StrictModel):
    """A resolved task file: the robot, cameras, teleop device and session it names,
    with the task file's overrides applied."""

    robot: RobotConfig
    cameras: CamerasConfig = CamerasConfig()
    teleop: TeleopConfig = TeleopConfig()
    session: SessionConfig = SessionConfig()
    task: TaskSpec
    agent: AgentConfig = AgentConfig()
    training: TrainingConfig = TrainingConfig()
    actor: ActorConfig = ActorConfig()
    ros: RosConfig = RosConfig()

    @model_validator(mode="after")
    def _session_dirs_per_task(self) -> "TaskConfig":
        # Frozen model: the resolved section replaces the one validated, once, here.
        object.__setattr__(self, "session", self.session.for_task(self.task.name))
        return self

    @model_validator(mode="after")
    def _consistent(self) -> "TaskConfig":
        missing = [c for c in self.task.observation.images if c not in self.cameras.cameras]
        if missing:
            raise ValueError(
                f"task.observation.images names camera(s) {missing} that the cameras file does not define "
                f"(defined: {sorted(self.cameras.cameras)})"
            )
        if self.robot.backend == "sim":
            if self.task.sim is None:
                raise ValueError("task.sim is missing: robot.backend 'sim' needs a simulated scene in task.sim")
            for name in self.task.observation.images:
                if self.cameras.cameras[name].kind != "sim":
                    raise ValueError(f"camera '{name}' is kind '{self.cameras.cameras[name].kind}'; a sim robot needs sim cameras")
        if self.robot.backend != "sim":
            used = dict.fromkeys(list(self.task.observation.images) + list(self.task.reward.classifier.cameras or ()))
            for name in used:
                if name in self.cameras.cameras and self.cameras.cameras[name].kind == "sim":
                    raise ValueError(
                        f"camera '{name}' is kind 'sim', which only the simulated robot renders; robot backend "
                        f"'{self.robot.backend}' needs realsense (or replay) cameras"
                    )
            if self.task.reward.source == "sim_ground_truth":
                raise ValueError(
                    "task.reward.source is 'sim_ground_truth', which only the simulator knows; a real robot needs "
                    "a learned success detector: source 'classifier' or 'vlm'"
                )
            if self.teleop.kind == "scripted":
                raise ValueError(
                    "teleop.kind 'scripted' drives the simulator's scripted expert; a real robot needs a person "
                    "with a device: kind 'spacemouse' (or 'none')"
                )
        if "object_position" in self.task.observation.state and self.robot.backend != "sim":
            raise ValueError(
                "task.observation.state lists 'object_position', which only the simulated robot provides; "
                "a real robot observes the object through its cameras"
            )
        if self.actor.sim_max_lead_env_steps <= self.training.min_online_transitions:
            raise ValueError(
                f"actor.sim_max_lead_env_steps ({self.actor.sim_max_lead_env_steps}) must exceed "
                f"training.min_online_transitions ({self.training.min_online_transitions}): a simulated actor "
                "would otherwise wait for training that waits for its data"
            )
        if self.task.sim is not None and self.task.sim.scene.kind == "peg_insertion" and self.task.gripper_mode != "fixed_closed":
            raise ValueError("task.gripper_mode must be 'fixed_closed' for a peg_insertion scene (the peg is held)")
        if self.training.stop_on == "deterministic_episodes" and self.actor.deterministic_every_episodes == 0:
            raise ValueError(
                "training.stop_on is 'deterministic_episodes' but actor.deterministic_every_episodes is 0: "
                "the actor would run no deterministic episodes to stop on"
            )
        return self


SECTION_MODELS: dict[str, type[StrictModel]] = {
    "robot": RobotConfig,
    "cameras": CamerasConfig,
    "teleop": TeleopConfig,
    "session": SessionConfig,
}
