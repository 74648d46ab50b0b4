"""Image preparation shared by every camera kind (RealSense, simulated, replay)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from robot_stack.config.schema import CameraConfig


def crop_and_resize(image: np.ndarray, config: CameraConfig) -> np.ndarray:
    """Crop (in capture pixels), then resize to the policy's input size."""
    if config.crop_xywh is not None:
        x, y, w, h = config.crop_xywh
        image = image[y : y + h, x : x + w]
    out_h, out_w = config.output_size_hw
    if image.shape[:2] != (out_h, out_w):
        image = np.asarray(Image.fromarray(image).resize((out_w, out_h), Image.BILINEAR))
    return np.ascontiguousarray(image, dtype=np.uint8)
