"""env: a task's environment when it is not the project's Franka (simulated or real) but any
gymnasium env, built by a factory or from gymnasium's registry. The contract it must keep is
in docs/environments.md and checked by robot_stack.envs.contract.

The layout (state size, cameras, action size, gripper) is declared here rather than read from
the env: the learner never builds an env (it may run on a machine without the simulator, and
building a real robot's env would connect to the robot), yet it must allocate its replay and
networks before any actor connects. The actor checks its env against this declaration.
"""

from __future__ import annotations

import re
from typing import Any, Literal, Optional

from pydantic import Field, field_validator, model_validator

from robot_stack.config.schema.primitives import Int, StrictModel

# package.module:attribute, the form entry points use.
CODE_REFERENCE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")


def _code_reference(value: Optional[str]) -> Optional[str]:
    if value is not None and not CODE_REFERENCE.match(value):
        raise ValueError(f"{value!r} is not a code reference: expected 'package.module:function'")
    return value


class EnvObservationLayout(StrictModel):
    state_dim: Int = Field(ge=1, le=100_000, description="Length of the float32 'state' vector.")
    images: dict[str, tuple[Int, Int]] = Field(
        default_factory=dict, description="Camera name -> (height, width) of its uint8 HxWx3 image; empty: state only."
    )

    @field_validator("images")
    @classmethod
    def _image_sizes(cls, v: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
        for name, (height, width) in v.items():
            if not (8 <= height <= 1024 and 8 <= width <= 1024):
                raise ValueError(f"camera '{name}': height and width must each be in [8, 1024] pixels, got {height}x{width}")
        return v


class EnvActionLayout(StrictModel):
    dim: Int = Field(ge=1, le=64, description="Length of the action vector; every entry in [-1, 1].")
    gripper: Literal["none", "continuous", "binary"] = Field(
        "none",
        description="binary: the last entry is an open/close command (>= 0.5 close, <= -0.5 open, between: keep) and "
        "the env reports info['gripper_closed']; continuous: the last entry drives the gripper like any other "
        "dimension; none: no gripper.",
    )


class GymnasiumEnvConfig(StrictModel):
    kind: Literal["gymnasium"] = "gymnasium"
    factory: Optional[str] = Field(
        None, description="'package.module:function' called with kwargs; returns the gymnasium env."
    )
    id: Optional[str] = Field(
        None, description="A registered gymnasium id, made with gymnasium.make(id, **kwargs) ('module:Name-v0' imports module first)."
    )
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the factory (or of gymnasium.make).")
    observation: EnvObservationLayout
    action: EnvActionLayout
    expert: Optional[str] = Field(
        None,
        description="'package.module:function' called with the env; returns an object with reset() and act(observation) "
        "-> action. It records the demos and, with teleop kind 'scripted', is the scripted teleoperator.",
    )
    teleop: Optional[str] = Field(
        None,
        description="'package.module:function' called with (env, rng); returns the actor's intervention source: "
        "reset(), and decide(observation, policy_action, env_step) -> the action that replaces the policy's, or None.",
    )
    real_time: bool = Field(
        False,
        description="True: the env runs in wall-clock time (a robot behind it), so the actor paces steps at "
        "task.control_rate_hz; False: a simulator, which the actor steps as fast as training keeps up.",
    )

    @field_validator("factory", "expert", "teleop")
    @classmethod
    def _references(cls, v: Optional[str]) -> Optional[str]:
        return _code_reference(v)

    @model_validator(mode="after")
    def _one_source(self) -> "GymnasiumEnvConfig":
        if (self.factory is None) == (self.id is None):
            raise ValueError("name the env by exactly one of 'factory' (package.module:function) and 'id' (a registered gymnasium id)")
        return self
