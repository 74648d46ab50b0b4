"""Labelled frames: what a reward model learns from and is checked on.

A frame set is a directory of ``episode_000.safetensors``, ``episode_001.safetensors``...
and ``frames.json``. Each episode file holds, for the N labelled frames of one episode:

    images/<camera>   uint8 (N, H, W, 3)    every configured camera, same instant
    labels            int64 (N,)            index into the set's class names
    state             float32 (N, Q)        the named state quantities (``STATE_QUANTITIES``)
    steps             int64 (N,)            the env step of each frame

``frames.json`` (task, cameras and their image sizes, class names, state quantity names,
the episode files and per-class counts, how labels were made) is written last: a directory
without it holds no complete frame set. Nothing is pickled.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import safetensors
import safetensors.numpy

from robot_stack.data.files import read_json_object, write_atomic, write_json_atomic
from robot_stack.data.spec import IMAGE_PREFIX
from robot_stack.hardware.interfaces import RobotState

FRAMES_FILE = "frames.json"
FORMAT_VERSION = 1
BINARY_CLASSES = ("failure", "success")
SUCCESS_CLASS = "success"

# The robot state quantities stored with each frame and readable by state checks
# (config: task.reward.state_checks). Base frame; the wrench is the external one at the TCP.
STATE_QUANTITIES = (
    "tcp_x_m", "tcp_y_m", "tcp_z_m", "gripper_width_m", "force_x_n", "force_y_n", "force_z_n", "force_norm_n",
    "tcp_speed_m_per_s",
)


class FrameSetError(ValueError):
    """A frame set that cannot be read or used; the message names the file and the problem."""


def state_quantities(state: RobotState) -> np.ndarray:
    """The ``STATE_QUANTITIES`` of one robot state, in that order."""
    force = np.asarray(state.tcp_wrench[:3], dtype=np.float64)
    return np.array(
        [
            state.tcp_position_m[0], state.tcp_position_m[1], state.tcp_position_m[2], state.gripper_width_m,
            force[0], force[1], force[2], float(np.linalg.norm(force)),
            float(np.linalg.norm(state.tcp_velocity[:3])),
        ],
        dtype=np.float32,
    )


@dataclass
class LabelledFrames:
    """Frames in memory: images per camera, labels, episode index and state per frame."""

    images: dict[str, np.ndarray]
    labels: np.ndarray
    episodes: np.ndarray
    state: np.ndarray
    class_names: tuple[str, ...] = BINARY_CLASSES
    state_names: tuple[str, ...] = STATE_QUANTITIES
    steps: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = self.labels.shape[0]
        for name, images in self.images.items():
            if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] != n:
                raise FrameSetError(
                    f"camera '{name}': images must be uint8 (N, H, W, 3) with N = {n} labels, got {images.dtype} {images.shape}"
                )
        if self.episodes.shape != (n,) or self.state.shape[0] != n:
            raise FrameSetError(f"episodes {self.episodes.shape} and state {self.state.shape} must have {n} rows")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise FrameSetError(f"labels must index the class names {self.class_names}, got values {np.unique(self.labels).tolist()}")
        if self.steps is None:
            self.steps = np.zeros(n, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def cameras(self) -> tuple[str, ...]:
        return tuple(self.images)

    @property
    def success_index(self) -> int:
        return success_class_index(self.class_names)

    @property
    def is_success(self) -> np.ndarray:
        return self.labels == self.success_index

    def counts(self) -> dict[str, int]:
        return {name: int((self.labels == i).sum()) for i, name in enumerate(self.class_names)}

    def take(self, index: np.ndarray) -> "LabelledFrames":
        index = np.asarray(index)
        return LabelledFrames(
            images={name: images[index] for name, images in self.images.items()},
            labels=self.labels[index], episodes=self.episodes[index], state=self.state[index],
            class_names=self.class_names, state_names=self.state_names, steps=self.steps[index],
        )

    def split_by_episode(self, fraction: float, seed: int) -> tuple["LabelledFrames", "LabelledFrames"]:
        """(rest, held out): about ``fraction`` of the episodes held out, never a frame of one
        episode on both sides (neighbouring frames are near-copies). Each side keeps at least
        one episode, and the held-out side gets a successful one when there are two."""
        episodes = np.unique(self.episodes)
        if episodes.size < 2:
            raise FrameSetError(f"splitting by episode needs at least 2 episodes, the frames come from {episodes.size}")
        rng = np.random.default_rng(seed)
        with_success = np.array([bool(self.is_success[self.episodes == e].any()) for e in episodes])
        held_ids: list[int] = []
        # Stratified: the same share of episodes with and without a success is held out,
        # at least one of a kind when there are two, never all of a kind.
        for group in (np.flatnonzero(with_success), np.flatnonzero(~with_success)):
            group = rng.permutation(group)
            if group.size >= 2:
                held_ids.extend(group[: min(group.size - 1, max(1, int(round(fraction * group.size))))].tolist())
        if not held_ids:
            held_ids = [int(rng.integers(episodes.size))]
        held_mask = np.isin(self.episodes, episodes[np.asarray(held_ids)])
        return self.take(np.flatnonzero(~held_mask)), self.take(np.flatnonzero(held_mask))


def success_class_index(class_names: Sequence[str]) -> int:
    if SUCCESS_CLASS not in class_names:
        raise FrameSetError(f"class names {tuple(class_names)} have no '{SUCCESS_CLASS}' class")
    return list(class_names).index(SUCCESS_CLASS)


def concatenate(parts: Sequence[LabelledFrames]) -> LabelledFrames:
    """One frame set from several (episode numbers kept apart)."""
    if not parts:
        raise FrameSetError("no frame sets to concatenate")
    first = parts[0]
    for part in parts[1:]:
        if part.class_names != first.class_names or part.cameras != first.cameras or part.state_names != first.state_names:
            raise FrameSetError(
                f"frame sets differ: classes {part.class_names} vs {first.class_names}, cameras {part.cameras} vs {first.cameras}"
            )
    offset, episodes = 0, []
    for part in parts:
        episodes.append(part.episodes + offset)
        offset = int(episodes[-1].max()) + 1 if len(part) else offset
    return LabelledFrames(
        images={name: np.concatenate([p.images[name] for p in parts]) for name in first.cameras},
        labels=np.concatenate([p.labels for p in parts]), episodes=np.concatenate(episodes),
        state=np.concatenate([p.state for p in parts]), class_names=first.class_names, state_names=first.state_names,
        steps=np.concatenate([p.steps for p in parts]),
    )


# --------------------------------------------------------------------------- on disk


@dataclass
class FrameSetWriter:
    """Writes a frame set episode by episode; ``finish`` writes ``frames.json`` last."""

    directory: Path
    task: str
    cameras: Mapping[str, tuple[int, int]]  # name -> (H, W)
    label_source: str
    class_names: tuple[str, ...] = BINARY_CLASSES
    episodes: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.directory = Path(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        # An older set is incomplete from the moment its files start being replaced.
        (self.directory / FRAMES_FILE).unlink(missing_ok=True)
        for old in self.directory.glob("episode_*.safetensors"):
            old.unlink()

    def add_episode(self, images: Mapping[str, np.ndarray], labels: np.ndarray, state: np.ndarray, steps: np.ndarray, seed: int) -> None:
        labels = np.asarray(labels, dtype=np.int64)
        if labels.size == 0:
            return
        tensors = {f"{IMAGE_PREFIX}{name}": np.ascontiguousarray(images[name], dtype=np.uint8) for name in self.cameras}
        tensors.update(labels=labels, state=np.asarray(state, dtype=np.float32), steps=np.asarray(steps, dtype=np.int64))
        # Validate before anything is written.
        LabelledFrames({n: tensors[f"{IMAGE_PREFIX}{n}"] for n in self.cameras}, labels,
                       np.zeros(labels.size, dtype=np.int64), tensors["state"], self.class_names)
        name = f"episode_{len(self.episodes):03d}.safetensors"
        write_atomic(self.directory / name, lambda path: safetensors.numpy.save_file(tensors, str(path)))
        self.episodes.append(
            {"file": name, "seed": int(seed), "frames": int(labels.size),
             "counts": {c: int((labels == i).sum()) for i, c in enumerate(self.class_names)}}
        )

    def finish(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        totals = {c: sum(e["counts"][c] for e in self.episodes) for c in self.class_names}
        meta = {
            "format_version": FORMAT_VERSION,
            "task": self.task,
            "cameras": {name: list(hw) for name, hw in self.cameras.items()},
            "class_names": list(self.class_names),
            "state_names": list(STATE_QUANTITIES),
            "label_source": self.label_source,
            "episodes": self.episodes,
            "frames": sum(e["frames"] for e in self.episodes),
            "counts": totals,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **(dict(extra) if extra else {}),
        }
        write_json_atomic(self.directory / FRAMES_FILE, meta)
        return meta


def read_frames_meta(directory: Path) -> dict[str, Any]:
    meta_file = Path(directory) / FRAMES_FILE
    meta = read_json_object(meta_file, FrameSetError, "no complete frame set here (record one with 'robot-stack reward record')")
    for key in ("cameras", "class_names", "state_names", "episodes"):
        if key not in meta:
            raise FrameSetError(f"{meta_file}: missing key '{key}'")
    if meta.get("format_version") != FORMAT_VERSION:
        raise FrameSetError(f"{meta_file}: format version {meta.get('format_version')!r}, this build reads {FORMAT_VERSION}")
    return meta


def load_frames(directory: Path | str, cameras: Sequence[str] | None = None) -> LabelledFrames:
    """Read a frame set (only ``cameras`` when given). Errors name the file and what is wrong."""
    directory = Path(directory)
    meta = read_frames_meta(directory)
    available = tuple(meta["cameras"])
    cameras = tuple(cameras) if cameras else available
    missing = [c for c in cameras if c not in available]
    if missing:
        raise FrameSetError(f"{directory}: the frame set has cameras {available}, not {missing}")
    class_names = tuple(meta["class_names"])
    state_names = tuple(meta["state_names"])
    images: dict[str, list[np.ndarray]] = {c: [] for c in cameras}
    labels, episodes, state, steps = [], [], [], []
    for index, episode in enumerate(meta["episodes"]):
        path = directory / episode["file"]
        try:
            tensors = safetensors.numpy.load_file(str(path))
        except (safetensors.SafetensorError, OSError, ValueError) as error:
            raise FrameSetError(f"{path}: not a readable safetensors file: {error}") from None
        for key in ("labels", "state", "steps", *(f"{IMAGE_PREFIX}{c}" for c in cameras)):
            if key not in tensors:
                raise FrameSetError(f"{path}: missing array '{key}'")
        for c in cameras:
            images[c].append(tensors[f"{IMAGE_PREFIX}{c}"])
        labels.append(tensors["labels"].astype(np.int64))
        state.append(tensors["state"].astype(np.float32))
        steps.append(tensors["steps"].astype(np.int64))
        episodes.append(np.full(tensors["labels"].shape[0], index, dtype=np.int64))
    if not labels:
        raise FrameSetError(f"{directory}: the frame set has no episodes")
    try:
        return LabelledFrames(
            images={c: np.concatenate(v) for c, v in images.items()}, labels=np.concatenate(labels),
            episodes=np.concatenate(episodes), state=np.concatenate(state), class_names=class_names,
            state_names=state_names, steps=np.concatenate(steps),
        )
    except (FrameSetError, ValueError) as error:
        raise FrameSetError(f"{directory}: {error}") from None
