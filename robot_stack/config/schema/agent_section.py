"""The agent section: SAC's networks, learning rates and the gripper's critic."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from robot_stack.config.schema.encoder_section import EncoderConfig
from robot_stack.config.schema.primitives import Float, Int, StrictModel


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
