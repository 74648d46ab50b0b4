"""What every reward model is, and the directory it is saved in.

A reward model maps camera images to a success probability: ``predict_proba(images)``
with ``images[camera]`` uint8 (B, H, W, 3) returns float64 (B,) in [0, 1]. The classifier
(``robot_stack.reward.classifier``) and the vision-language model
(``robot_stack.reward.vlm``) are the two kinds.

A saved model is a directory:

    reward_model.json     kind, cameras and image sizes, class names, the calibrated
                          threshold and the figures it was chosen from, the config it
                          was built from, training summary
    model.safetensors     weights (the classifier; the VLM's few-shot head)

The JSON is written last, so a directory without it holds no complete model. Loading
never unpickles: weights are safetensors, metadata JSON. ``load_reward_model`` (in
``robot_stack.reward.detector``) loads a directory of either kind; this module imports
neither implementation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Protocol, runtime_checkable

import numpy as np

from robot_stack.data.files import read_json_object, write_json_atomic

MODEL_FILE = "reward_model.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1
KINDS = ("classifier", "vlm")


class RewardModelError(ValueError):
    """A reward model that cannot be loaded or used; the message names the file and the problem."""


@runtime_checkable
class SuccessModel(Protocol):
    kind: str
    cameras: tuple[str, ...]
    threshold: float  # calibrated for precision; 0.5 until calibrated

    def predict_proba(self, images: Mapping[str, np.ndarray]) -> np.ndarray: ...

    def save(self, directory: Path, extra: Mapping[str, Any] | None = None) -> Path: ...


def check_images(images: Mapping[str, np.ndarray], cameras: tuple[str, ...], image_hw: Mapping[str, tuple[int, int]] | None, where: str) -> int:
    """Validate a batch of camera images for a model; returns the batch size.
    Errors name the camera and what is wrong with it."""
    missing = [c for c in cameras if c not in images]
    if missing:
        raise RewardModelError(f"{where}: no images from camera(s) {missing}; it was given {sorted(images)}")
    batch = None
    for camera in cameras:
        array = np.asarray(images[camera])
        if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3:
            raise RewardModelError(f"{where}: camera '{camera}' images must be uint8 (B, H, W, 3), got {array.dtype} {array.shape}")
        if image_hw is not None and tuple(array.shape[1:3]) != tuple(image_hw[camera]):
            raise RewardModelError(
                f"{where}: camera '{camera}' images are {tuple(array.shape[1:3])} (H, W); the model was trained on {tuple(image_hw[camera])}"
            )
        if batch is None:
            batch = array.shape[0]
        elif array.shape[0] != batch:
            raise RewardModelError(f"{where}: camera '{camera}' has {array.shape[0]} images, the others {batch}")
    return int(batch or 0)


def write_model_json(directory: Path, meta: Mapping[str, Any]) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_json_atomic(directory / MODEL_FILE, {"format_version": FORMAT_VERSION, **meta})
    return directory / MODEL_FILE


def read_model_json(directory: Path) -> dict[str, Any]:
    path = Path(directory) / MODEL_FILE
    meta = read_json_object(path, RewardModelError, "no complete reward model here (train one with 'robot-stack reward train')")
    if meta.get("format_version") != FORMAT_VERSION:
        raise RewardModelError(f"{path}: format version {meta.get('format_version')!r}, this build reads {FORMAT_VERSION}")
    if meta.get("kind") not in KINDS:
        raise RewardModelError(f"{path}: kind {meta.get('kind')!r} is not one of {KINDS}")
    threshold = meta.get("threshold")
    if not isinstance(threshold, (int, float)) or not 0.0 < float(threshold) < 1.0:
        raise RewardModelError(f"{path}: threshold must be a number in (0, 1), got {threshold!r}")
    return meta
