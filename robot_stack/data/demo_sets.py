"""Demo sets on disk: the format the actor records and the learner loads.

A demo set is a directory of ``episode_000.safetensors``, ``episode_001.safetensors``...
(each the flat transition arrays of one episode, see ``robot_stack.data.spec``) and
``demos.json`` (task, specs, the episode files, counts, seed, time). ``demos.json`` is
written last: a directory without it holds no complete demo set. Nothing is pickled.

``record-demos`` also writes the set as a LeRobotDataset v3 in ``lerobot/`` inside the
directory (``robot_stack.data.session_dataset``), for RLDG or any LeRobot tool.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import safetensors.numpy

from robot_stack.data.spec import ArraySpec, batch_spec, check_batch
from robot_stack.data.transitions import concatenate_batches

DEMOS_FILE = "demos.json"
LEROBOT_COPY = "lerobot"


class DemoMismatchError(ValueError):
    """A demo set recorded for another observation than the task's (e.g. another object frame)."""


def demos_exist(directory: Path) -> bool:
    """True if ``directory`` holds a complete demo set."""
    try:
        meta = read_demo_meta(Path(directory))
    except (FileNotFoundError, ValueError):
        return False
    return all((Path(directory) / episode["file"]).is_file() for episode in meta["episodes"])


def load_demos(directory: Path, observation_spec: Mapping[str, ArraySpec], action_dim: int) -> dict[str, np.ndarray]:
    """Every transition of a demo set as one batch, checked against the spec the learner
    expects (raises ValueError naming the file and the key that differs)."""
    directory = Path(directory)
    meta = read_demo_meta(directory)
    spec = batch_spec(observation_spec, action_dim)
    batches = []
    for episode in meta["episodes"]:
        path = directory / episode["file"]
        if not path.is_file():
            raise FileNotFoundError(f"{path}: listed in {directory / DEMOS_FILE} but missing")
        arrays = safetensors.numpy.load_file(str(path))
        check_batch(arrays, spec, where=str(path))
        batches.append(arrays)
    if not batches:
        raise ValueError(f"{directory / DEMOS_FILE} lists no episodes")
    return concatenate_batches(batches)


def read_demo_meta(directory: Path) -> dict[str, Any]:
    path = directory / DEMOS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no demo set in {directory} ({DEMOS_FILE} is missing)")
    try:
        meta = json.loads(path.read_text())
        files = [episode["file"] for episode in meta["episodes"]]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a demo set description: {error}") from error
    if any(Path(name).name != name for name in files):
        raise ValueError(f"{path} names episode files outside its directory: {files}")
    return meta


def spec_to_json(spec: Mapping[str, ArraySpec]) -> dict[str, dict[str, Any]]:
    return {key: {"dtype": value.dtype, "shape": list(value.shape)} for key, value in spec.items()}
