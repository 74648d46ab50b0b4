"""task.sim: the simulated scene a task runs in when the robot backend is sim."""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from robot_stack.config.schema.primitives import Float, StrictModel, Vec2


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
