"""The per-camera image encoder, shared by the agent and the success classifier, and how
it is pretrained on the lab's own frames."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, model_validator

from robot_stack.config.schema.primitives import Float, Int, StrictModel


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
