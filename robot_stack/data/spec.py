"""The data vocabulary every stage shares: what one transition holds, under which names,
with which dtypes and shapes. The env produces it, the actor records and sends it, the
wire carries it, demo files and the replay store it, the policy and the learner read it.

A transition is a flat dict of arrays (a batch adds a leading transition axis N):

| key                              | dtype   | shape     |
|----------------------------------|---------|-----------|
| ``observations/state``           | float32 | (S,)      |
| ``observations/images/<camera>`` | uint8   | (H, W, 3) |
| ``next_observations/...``        | as ``observations/...`` |  |
| ``actions``                      | float32 | (A,), in [-1, 1], as executed |
| ``rewards``                      | float32 | ()        |
| ``terminated`` ``truncated`` ``interventions`` ``gripper_changed`` | bool | () |

The observation spec (the keys under ``observations/``) is derived in one place,
``observation_spec_of``, from one of two sources: the task config (the learner, which
never builds an env, allocates its replay and checks each actor's handshake with it) or a
built env (the actor announces what its env really produces). Both must agree for the
learner to accept the actor.

``check_batch`` lives here rather than with the transport: it checks any batch before it
reaches training against this layout, whether it arrived from an actor or from a demo file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

if TYPE_CHECKING:
    from robot_stack.config.schema import TaskConfig, TaskSpec


@dataclass(frozen=True)
class ArraySpec:
    """dtype and shape of one per-transition array (without the leading batch axis)."""

    dtype: str  # numpy's dtype string, e.g. '<f4', '|u1'
    shape: tuple[int, ...]

    @classmethod
    def of(cls, array: np.ndarray) -> "ArraySpec":
        return cls(np.dtype(array.dtype).str, tuple(int(n) for n in array.shape))

    def describe(self) -> str:
        return f"{np.dtype(self.dtype).name}{list(self.shape)}"


Spec = Mapping[str, ArraySpec]

# --------------------------------------------------------------------------- the transition layout

OBSERVATION_PREFIX = "observations/"
NEXT_OBSERVATION_PREFIX = "next_observations/"
ACTION_KEY = "actions"
REWARD_KEY = "rewards"
FLAG_KEYS = ("terminated", "truncated", "interventions", "gripper_changed")
STATE_KEY = "state"
IMAGE_PREFIX = "images/"

# A binary gripper's command in [-1, 1] closes at or above this, opens at or below its
# negative, and stays in between: the env acts on it and the recorded action says which.
GRIPPER_THRESHOLD = 0.5

# The entries of the state vector, named, by the name a task config lists them under.
STATE_ENTRY_NAMES = {
    "tcp_pose": ("tcp.x", "tcp.y", "tcp.z", "tcp.rx", "tcp.ry", "tcp.rz"),
    "tcp_velocity": ("tcp.vx", "tcp.vy", "tcp.vz", "tcp.wx", "tcp.wy", "tcp.wz"),
    "tcp_wrench": ("tcp.fx", "tcp.fy", "tcp.fz", "tcp.tx", "tcp.ty", "tcp.tz"),
    "gripper_width": ("gripper.width",),
    "object_position": ("object.x", "object.y", "object.z"),
}
STATE_KEY_SIZES = {key: len(names) for key, names in STATE_ENTRY_NAMES.items()}


def flatten_observation(observation: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Env observation -> the flat keys of the layout: "state" (float32) and
    "images/<camera>" (uint8); flat image keys pass through, other keys are dropped."""
    flat = {key: np.asarray(value, dtype=np.uint8) for key, value in observation.items() if key.startswith(IMAGE_PREFIX)}
    flat[STATE_KEY] = np.asarray(observation[STATE_KEY], dtype=np.float32)
    for camera, image in observation.get("images", {}).items():
        flat[IMAGE_PREFIX + camera] = np.asarray(image, dtype=np.uint8)
    return flat


# --------------------------------------------------------------------------- observation and action specs


def observation_spec_of(state_shape: tuple[int, ...], image_shapes: Mapping[str, tuple[int, ...]]) -> dict[str, ArraySpec]:
    """Flat observation spec: float32 ``state`` and uint8 ``images/<camera>``."""
    spec = {STATE_KEY: ArraySpec(np.dtype(np.float32).str, tuple(int(n) for n in state_shape))}
    for camera, shape in image_shapes.items():
        spec[IMAGE_PREFIX + camera] = ArraySpec(np.dtype(np.uint8).str, tuple(int(n) for n in shape))
    return spec


def action_spec_of(action_dim: int) -> dict[str, ArraySpec]:
    return {ACTION_KEY: ArraySpec(np.dtype(np.float32).str, (int(action_dim),))}


def state_dim(config: "TaskConfig") -> int:
    if config.env is not None:
        return config.env.observation.state_dim
    return sum(STATE_KEY_SIZES[key] for key in config.task.observation.state)


def env_action_dim(config: "TaskConfig") -> int:
    """A gymnasium env's declared action size; the Franka's: end-effector twist (6-D, or 3-D
    translation when the policy does not control the rotation), plus the gripper command for
    a binary gripper."""
    if config.env is not None:
        return config.env.action.dim
    twist = 6 if config.task.policy_controls_rotation else 3
    return twist + (1 if config.task.gripper_mode == "binary" else 0)


def binary_gripper(config: "TaskConfig") -> bool:
    """Whether the action's last entry is an open/close command (GRIPPER_THRESHOLD)."""
    if config.env is not None:
        return config.env.action.gripper == "binary"
    return config.task.gripper_mode == "binary"


def observation_spec(config: "TaskConfig") -> dict[str, ArraySpec]:
    """The observation spec a task's env produces, from its config alone."""
    if config.env is not None:
        images = {name: (height, width, 3) for name, (height, width) in config.env.observation.images.items()}
        return observation_spec_of((state_dim(config),), images)
    images = {}
    for name in config.task.observation.images:
        height, width = config.cameras.cameras[name].output_size_hw
        images[name] = (height, width, 3)
    return observation_spec_of((state_dim(config),), images)


def action_spec(config: "TaskConfig") -> dict[str, ArraySpec]:
    return action_spec_of(env_action_dim(config))


def state_names(task: "TaskSpec") -> list[str]:
    """One name per entry of the task's state vector, in order (what a dataset labels them)."""
    return [name for key in task.observation.state for name in STATE_ENTRY_NAMES[key]]


def action_names(task: "TaskSpec") -> list[str]:
    """One name per entry of the task's action: the twist (translation only when the policy
    does not control the rotation), then the gripper command for a binary gripper."""
    names = ["dx", "dy", "dz"] + (["drx", "dry", "drz"] if task.policy_controls_rotation else [])
    return names + (["gripper"] if task.gripper_mode == "binary" else [])


def vector_names(config: "TaskConfig") -> dict[str, list[str]]:
    """The ``state_names``/``action_names`` a dataset labels its vectors with; none for a
    gymnasium task, whose layout has no named entries."""
    if config.env is not None:
        return {}
    return {"state_names": state_names(config.task), "action_names": action_names(config.task)}


def env_spec(env) -> tuple[dict[str, ArraySpec], dict[str, ArraySpec]]:
    """(observation spec, action spec) of a built env, for the link's handshake and the demo files."""
    spaces = env.observation_space
    images = {}
    if "images" in spaces.spaces:
        images = {camera: space.shape for camera, space in spaces["images"].spaces.items()}
    return observation_spec_of(spaces[STATE_KEY].shape, images), action_spec_of(env.action_dim)


# --------------------------------------------------------------------------- batches


def transition_batch_spec(observation_spec: Spec, action_spec: Spec) -> dict[str, ArraySpec]:
    """The per-transition spec of every array in a batch (without the leading axis): the
    observation under both prefixes, the actions, the reward and the flags."""
    spec: dict[str, ArraySpec] = {}
    for prefix in (OBSERVATION_PREFIX, NEXT_OBSERVATION_PREFIX):
        spec.update({prefix + key: value for key, value in observation_spec.items()})
    spec.update(action_spec)
    spec[REWARD_KEY] = ArraySpec.of(np.zeros((), np.float32))
    spec.update({key: ArraySpec.of(np.zeros((), bool)) for key in FLAG_KEYS})
    return spec


def batch_spec(observation_spec: Spec, action_dim: int) -> dict[str, ArraySpec]:
    """``transition_batch_spec`` for float32 actions of ``action_dim``."""
    return transition_batch_spec(observation_spec, action_spec_of(action_dim))


def check_batch(arrays: Mapping[str, np.ndarray], spec: Mapping[str, ArraySpec], where: str) -> None:
    """Raise ValueError naming ``where`` and the array if arrays do not match the batch spec:
    keys, dtypes, shapes, one transition count, finite floats, actions within [-1, 1] (the
    env executes them clipped, and the critic extrapolates wildly outside), bools that are
    0 or 1 (a bool array viewed on received bytes can hold any byte)."""
    missing = sorted(set(spec) - set(arrays))
    extra = sorted(set(arrays) - set(spec))
    if missing or extra:
        raise ValueError(
            f"{where}: keys do not match the expected spec"
            + (f"; missing {missing}" if missing else "")
            + (f"; unexpected {extra}" if extra else "")
        )
    counts = set()
    for key, expected in spec.items():
        array = arrays[key]
        if array.ndim == 0 or tuple(array.shape[1:]) != tuple(expected.shape) or array.dtype != np.dtype(expected.dtype):
            raise ValueError(
                f"{where}: '{key}' is {array.dtype.name}{list(array.shape)}; expected "
                f"{np.dtype(expected.dtype).name}{['N', *expected.shape]} (N transitions)"
            )
        counts.add(array.shape[0])
    if len(counts) > 1:
        raise ValueError(f"{where}: arrays disagree on the number of transitions ({sorted(counts)})")
    for key in spec:
        array = arrays[key]
        if not array.size:
            continue
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            row = int(np.flatnonzero(~np.isfinite(array).reshape(len(array), -1).all(axis=1))[0])
            raise ValueError(f"{where}: '{key}' holds a NaN or infinity (first in transition {row})")
        if key == ACTION_KEY and array.dtype.kind == "f" and np.abs(array).max() > 1.0:
            raise ValueError(f"{where}: '{key}' holds values outside [-1, 1] (largest magnitude {np.abs(array).max():g})")
        if array.dtype.kind == "b" and array.view(np.uint8).max() > 1:
            raise ValueError(f"{where}: '{key}' holds bytes other than 0 and 1 for its booleans")
