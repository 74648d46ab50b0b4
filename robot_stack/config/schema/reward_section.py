"""task.reward: where the success signal comes from (the simulator, a trained classifier or
a vision-language model) and the state conditions a success also needs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, model_validator

from robot_stack.config.schema.encoder_section import EncoderConfig
from robot_stack.config.schema.primitives import Float, Int, StrictModel


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
