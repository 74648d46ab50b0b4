"""The cameras file: each camera's source, capture and the image the policy gets."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from robot_stack.config.schema.primitives import Int, StrictModel


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
