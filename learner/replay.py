"""Replay buffers for the learner: where transitions wait to be sampled, and the RLPD
sampler that mixes the online buffer with the demo buffer.

Storage (one ``ReplayBuffer``)
  frames       one ring per observation key ("state", "images/<camera>"), ``frame_capacity``
               rows, in the observation's own dtype (images stay uint8). Every observation is
               stored once: a transition's next observation is the following transition's
               observation, so within an episode each step adds one frame, and each episode
               one more (its first observation). With a frame encoder (``learner/features.py``)
               a camera's ring holds what the encoder makes of each frame it stores (frozen
               trunk features), and where it keeps several views of a frame (stored crops) a
               sample picks one at random, for obs and next obs independently.
  transitions  one ring of ``capacity`` rows: the frame ids of the observation and the next
               observation, the action, reward and flags.

Frame and transition ids only grow; the row of id ``i`` is ``i % capacity``. A frame id is
alive while it is among the last ``frame_capacity`` frames written, and a transition can be
sampled while its observation frame is alive (its next observation was written after it,
so it is alive too). Frames are sized to hold a full transition ring of episodes of at
least ``capacity // (frame_capacity - capacity)`` steps; shorter episodes make the oldest
transitions drop out a little before the ring wraps, never a stale frame sampled.

Continuity is per stream (one actor): the buffer remembers the frame id of the stream's
last next observation and reuses it as the stream's next observation when the previous
transition did not end the episode (terminated or truncated). The state vectors are
compared to catch a stream that broke this promise; on a mismatch the observation is
stored as its own frame and ``continuity_mismatches`` counts it.

``Batch.terminated`` is 1.0 only for terminated transitions: a time-limit truncation still
bootstraps from its next observation, which is the episode's true final observation.

Files (``save``/``load``): a directory with ``replay.json`` (spec, counters, array files and
their CRC32) and one ``.npy`` file per array, never pickle. A save writes the arrays under
new names, then atomically replaces ``replay.json`` (write temp, ``os.replace``), then
deletes the previous save's arrays: a crash at any point leaves a complete save behind.
Learner checkpoints do not rewrite the buffer this way: they append only the rows added since
the last one (``learner/replay_segments.py``); ``save``/``load`` remain for checkpoints written
before that, and as the benchmark's baseline.
Not thread-safe: the caller adds and samples from one thread (or holds a lock).
"""

from __future__ import annotations

import json
import os
import re
import uuid
import zlib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Optional, Protocol, Sequence, Union

import numpy as np
import torch

from robot_stack.config.schema import TrainingConfig
from robot_stack.data.spec import FLAG_KEYS, ArraySpec, Spec
from robot_stack.transport.wire import dtype_to_wire

FILE_FORMAT = "robot_stack.replay/1"
METADATA_FILE = "replay.json"
# Frames beyond the transition capacity: every episode needs one frame more than it has
# transitions, so 1/16 extra keeps a full ring of episodes of >= 16 steps (pick-cube runs
# 20-100) for 6% more memory.
DEFAULT_FRAME_HEADROOM = 1 / 16
_ARRAY_FILE = re.compile(r"^[0-9a-f]{12}_[a-z0-9_]+\.npy(\.tmp)?$")

PathLike = Union[str, os.PathLike]


class FrameEncoder(Protocol):
    """What a replay stores for the frames of some observation keys (``CachedTrunkFeatures``)."""

    views: int  # > 1: the stored shape's first axis holds views of the frame, one sampled

    @property
    def keys(self) -> tuple[str, ...]: ...

    def stored_spec(self, key: str) -> ArraySpec: ...

    def encode(self, key: str, frames: np.ndarray) -> np.ndarray: ...


class ReplayFileError(ValueError):
    """A saved replay buffer that cannot be loaded: missing, corrupt, or saved for another spec."""


def naive_bytes_per_transition(
    observation_spec: Spec, action_dim: int, observation_dtype: Optional[np.dtype] = None
) -> int:
    """What a buffer storing observation and next observation in full takes per transition
    (with the same action, reward and flags as ours). ``observation_dtype=np.float32`` is
    the LeRobot-style buffer that keeps images as float32; None keeps the spec's dtypes."""
    observation = sum(
        int(np.prod(spec.shape)) * np.dtype(observation_dtype or spec.dtype).itemsize for spec in observation_spec.values()
    )
    return 2 * observation + 4 * action_dim + 4 + len(FLAG_KEYS)


# --------------------------------------------------------------------------- batch


@dataclass
class Batch:
    """Transitions for one learner update (torch, CPU unless moved; images uint8 (B,H,W,3), or
    the stored features of a frame encoder's keys)."""

    observations: dict[str, torch.Tensor]
    actions: torch.Tensor  # float32 (B, A_env), env units [-1, 1]
    rewards: torch.Tensor  # float32 (B,)
    terminated: torch.Tensor  # float32 (B,): 1.0 = no bootstrap; a truncation bootstraps
    next_observations: dict[str, torch.Tensor]
    interventions: torch.Tensor  # bool (B,)
    gripper_changed: torch.Tensor  # float32 (B,)

    def __len__(self) -> int:
        return int(self.rewards.shape[0])

    def to(self, device: Union[str, torch.device], non_blocking: bool = False) -> "Batch":
        def move(value: Any) -> Any:
            if isinstance(value, dict):
                return {key: tensor.to(device, non_blocking=non_blocking) for key, tensor in value.items()}
            return value.to(device, non_blocking=non_blocking)

        return Batch(**{item.name: move(getattr(self, item.name)) for item in fields(self)})


def concat(batches: Sequence[Batch]) -> Batch:
    """One batch with the rows of ``batches`` in order."""
    if not batches:
        raise ValueError("concat needs at least one batch")

    def join(name: str) -> Any:
        first = getattr(batches[0], name)
        if isinstance(first, dict):
            return {key: torch.cat([getattr(b, name)[key] for b in batches]) for key in first}
        return torch.cat([getattr(b, name) for b in batches])

    return Batch(**{item.name: join(item.name) for item in fields(Batch)})


def _empty_batch(observation_spec: Spec, action_dim: int, size: int, pin_memory: bool) -> Batch:
    # Pinned host memory lets .to("cuda", non_blocking=True) overlap the copy with compute;
    # samples are gathered straight into these tensors, so pinning costs no extra copy.
    pin = pin_memory and torch.cuda.is_available()

    def empty(shape: tuple[int, ...], dtype: Any) -> torch.Tensor:
        return torch.empty(shape, dtype=dtype, pin_memory=pin)

    def observations() -> dict[str, torch.Tensor]:
        return {key: empty((size, *spec.shape), _torch_dtype(spec.dtype)) for key, spec in observation_spec.items()}

    return Batch(
        observations=observations(),
        actions=empty((size, action_dim), torch.float32),
        rewards=empty((size,), torch.float32),
        terminated=empty((size,), torch.float32),
        next_observations=observations(),
        interventions=empty((size,), torch.bool),
        gripper_changed=empty((size,), torch.float32),
    )


def _torch_dtype(dtype: str) -> torch.dtype:
    return torch.from_numpy(np.zeros(0, np.dtype(dtype))).dtype


# --------------------------------------------------------------------------- buffer


class ReplayBuffer:
    """Preallocated ring of transitions whose observations are stored once (see module doc)."""

    def __init__(
        self,
        observation_spec: Spec,
        action_dim: int,
        capacity: int,
        frame_capacity: Optional[int] = None,
        name: str = "replay",
        frame_encoder: Optional[FrameEncoder] = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"replay '{name}': capacity must be at least 1 transition, got {capacity}")
        if action_dim < 1:
            raise ValueError(f"replay '{name}': action_dim must be at least 1, got {action_dim}")
        if not observation_spec:
            raise ValueError(f"replay '{name}': the observation spec is empty")
        frame_capacity = frame_capacity or capacity + int(capacity * DEFAULT_FRAME_HEADROOM) + 2
        if frame_capacity < 2:
            raise ValueError(f"replay '{name}': frame_capacity must be at least 2 (one transition needs two frames)")
        self.name = name
        self.observation_spec = {
            key: ArraySpec(dtype_to_wire(np.dtype(spec.dtype)), tuple(int(n) for n in spec.shape))
            for key, spec in observation_spec.items()
        }
        self.action_dim = int(action_dim)
        self.capacity = int(capacity)
        self.frame_capacity = int(frame_capacity)
        self.frame_encoder = frame_encoder
        encoded = frame_encoder.keys if frame_encoder is not None else ()
        unknown = sorted(set(encoded) - set(self.observation_spec))
        if unknown:
            raise ValueError(f"replay '{name}': the frame encoder makes {unknown}, which the observation spec lacks")
        # What one frame of each key is stored as, and what a sample of it holds (one view).
        self.stored_spec = {key: frame_encoder.stored_spec(key) if key in encoded else spec for key, spec in self.observation_spec.items()}
        self.views = {key: frame_encoder.views for key in encoded if frame_encoder.views > 1}
        self.sampled_spec = {
            key: ArraySpec(spec.dtype, spec.shape[1:]) if key in self.views else spec for key, spec in self.stored_spec.items()
        }
        # np.zeros maps the memory now and the kernel commits it as rows are first written.
        self.frames = {
            key: np.zeros((self.frame_capacity, *spec.shape), np.dtype(spec.dtype)) for key, spec in self.stored_spec.items()
        }
        self.obs_frame = np.zeros(self.capacity, np.int64)
        self.next_frame = np.zeros(self.capacity, np.int64)
        self.actions = np.zeros((self.capacity, self.action_dim), np.float32)
        self.rewards = np.zeros(self.capacity, np.float32)
        self.flags = {flag: np.zeros(self.capacity, np.bool_) for flag in FLAG_KEYS}
        self._reset_counters()

    def _reset_counters(self) -> None:
        self.total_added = 0  # transitions ever added; the next one gets this id
        self.frames_added = 0  # frames ever written; the next one gets this id
        # One past the highest ids being written, raised before the rows are written: a reader
        # in another thread (the checkpoint writer) can tell whether rows it copied were
        # overwritten meanwhile.
        self.frames_claimed = 0
        self.transitions_claimed = 0
        self.continuity_mismatches = 0
        # stream -> frame id of its last next observation, or -1 after an episode end
        self.streams: dict[str, int] = {}
        self._len_cache: tuple[tuple[int, int], int] = ((-1, -1), 0)

    # ------------------------------------------------------------------ sizes

    @property
    def nbytes(self) -> int:
        """Bytes of storage allocated at construction (frames and transition rows)."""
        arrays = [*self.frames.values(), self.obs_frame, self.next_frame, self.actions, self.rewards, *self.flags.values()]
        return sum(array.nbytes for array in arrays)

    def bytes_per_transition(self) -> float:
        return self.nbytes / self.capacity

    def __len__(self) -> int:
        """Transitions that can be sampled."""
        key = (self.total_added, self.frames_added)
        if self._len_cache[0] != key:
            filled = min(self.total_added, self.capacity)
            count = int(np.count_nonzero(self.obs_frame[:filled] >= self._oldest_frame()))
            self._len_cache = (key, count)
        return self._len_cache[1]

    def _oldest_frame(self) -> int:
        return self.frames_added - self.frame_capacity

    def counters(self) -> dict[str, Any]:
        """The buffer's state besides its arrays, JSON-ready (saved by ``save``)."""
        return {
            "total_added": self.total_added,
            "frames_added": self.frames_added,
            "continuity_mismatches": self.continuity_mismatches,
            "streams": dict(self.streams),
        }

    # ------------------------------------------------------------------ adding

    def break_continuity(self, stream: str) -> None:
        """The next transition of ``stream`` does not continue its last one (an actor restarted
        mid-episode, or only some of its transitions are routed here)."""
        self.streams[stream] = -1

    def add(self, arrays: Mapping[str, np.ndarray], stream: str = "default") -> int:
        """Append a transition batch (the contract's dict of arrays with a leading N axis)
        from one stream, in time order. Checks everything first: on an error nothing is added.
        Returns N."""
        count = self._check(arrays)
        # Chunks small enough that their frames (at most two per transition) and rows do
        # not overwrite each other within one vectorized write.
        chunk = max(1, min(self.capacity, self.frame_capacity // 2))
        for start in range(0, count, chunk):
            self._add_chunk({key: array[start : start + chunk] for key, array in arrays.items()}, stream)
        return count

    def _check(self, arrays: Mapping[str, np.ndarray]) -> int:
        where = f"replay '{self.name}'"
        expected: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}
        for prefix in ("observations", "next_observations"):
            for key, spec in self.observation_spec.items():
                expected[f"{prefix}/{key}"] = (np.dtype(spec.dtype), spec.shape)
        expected["actions"] = (np.dtype(np.float32), (self.action_dim,))
        expected["rewards"] = (np.dtype(np.float32), ())
        for flag in FLAG_KEYS:
            expected[flag] = (np.dtype(np.bool_), ())
        missing = [key for key in expected if key not in arrays]
        if missing:
            raise ValueError(f"{where}: transition batch lacks {missing} (has {sorted(arrays)})")
        count = None
        for key, (dtype, shape) in expected.items():
            array = arrays[key]
            if not isinstance(array, np.ndarray):
                raise ValueError(f"{where}: '{key}' is a {type(array).__name__}, not a numpy array")
            if array.dtype != dtype:
                raise ValueError(f"{where}: '{key}' has dtype {array.dtype}, the spec says {dtype}")
            if array.ndim != len(shape) + 1 or array.shape[1:] != shape:
                spec_shape = "(N" + "".join(f", {n}" for n in shape) + ")"
                raise ValueError(f"{where}: '{key}' has shape {array.shape}, the spec says {spec_shape}")
            if count is None:
                count = array.shape[0]
            elif array.shape[0] != count:
                raise ValueError(f"{where}: '{key}' has {array.shape[0]} transitions, '{next(iter(expected))}' has {count}")
            if dtype.kind == "f" and count:
                finite = np.isfinite(array.reshape(count, -1)).all(axis=1)
                if not finite.all():
                    row = int(np.flatnonzero(~finite)[0])
                    raise ValueError(f"{where}: '{key}' row {row} holds NaN or inf; the batch was not added")
        return int(count or 0)

    def _add_chunk(self, arrays: Mapping[str, np.ndarray], stream: str) -> None:
        n = arrays["rewards"].shape[0]
        done = arrays["terminated"] | arrays["truncated"]
        last = self.streams.get(stream, -1)
        # Row i continues row i-1 unless that ended an episode; row 0 continues the stream's
        # last transition if its frame survives the frames this chunk writes.
        continues = np.empty(n, np.bool_)
        continues[1:] = ~done[:-1]
        continues[0] = last >= 0 and last >= self.frames_added + 2 * n - self.frame_capacity
        if "state" in self.observation_spec:
            previous = np.empty_like(arrays["observations/state"])
            previous[1:] = arrays["next_observations/state"][:-1]
            previous[0] = self.frames["state"][last % self.frame_capacity] if continues[0] else 0
            mismatch = continues & ~(previous == arrays["observations/state"]).all(axis=1)
            self.continuity_mismatches += int(mismatch.sum())
            continues &= ~mismatch

        new_obs = ~continues
        frame_end = self.frames_added + np.cumsum(1 + new_obs.astype(np.int64))  # one past each row's frames
        next_ids = frame_end - 1
        obs_ids = np.empty(n, np.int64)
        obs_ids[new_obs] = frame_end[new_obs] - 2
        obs_ids[continues] = np.concatenate([[last], next_ids[:-1]])[continues]

        self.frames_claimed = int(frame_end[-1])
        self.transitions_claimed = self.total_added + n
        for key, frames in self.frames.items():
            written = arrays[f"next_observations/{key}"]
            ids = next_ids
            if new_obs.any():
                written = np.concatenate([arrays[f"observations/{key}"][new_obs], written])
                ids = np.concatenate([obs_ids[new_obs], next_ids])
            if self.frame_encoder is not None and key in self.frame_encoder.keys:
                written = self.frame_encoder.encode(key, written)  # once per stored frame
            frames[ids % self.frame_capacity] = written
        rows = (self.total_added + np.arange(n)) % self.capacity
        self.obs_frame[rows] = obs_ids
        self.next_frame[rows] = next_ids
        self.actions[rows] = arrays["actions"]
        self.rewards[rows] = arrays["rewards"]
        for flag, values in self.flags.items():
            values[rows] = arrays[flag]
        self.total_added += n
        self.frames_added = int(frame_end[-1])
        self.streams[stream] = -1 if done[-1] else int(next_ids[-1])

    # ------------------------------------------------------------------ sampling

    def sample_rows(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """Rows of ``count`` transitions drawn uniformly, with replacement, from those that can
        be sampled."""
        if len(self) == 0:
            raise RuntimeError(f"replay '{self.name}' is empty: nothing to sample")
        filled = min(self.total_added, self.capacity)
        oldest = self._oldest_frame()
        if len(self) * 2 < filled:  # mostly evicted (episodes far shorter than the headroom)
            return rng.choice(np.flatnonzero(self.obs_frame[:filled] >= oldest), size=count)
        # Rejection sampling: uniform over the valid rows, and nearly all rows are valid.
        rows = rng.integers(0, filled, size=count)
        stale = self.obs_frame[rows] < oldest
        while stale.any():
            rows[stale] = rng.integers(0, filled, size=int(stale.sum()))
            stale = self.obs_frame[rows] < oldest
        return rows

    def sample(self, batch_size: int, rng: np.random.Generator, pin_memory: bool = False) -> Batch:
        batch = _empty_batch(self.sampled_spec, self.action_dim, batch_size, pin_memory)
        self.gather(self.sample_rows(batch_size, rng), batch, 0, rng)
        return batch

    def gather(self, rows: np.ndarray, batch: Batch, start: int, rng: Optional[np.random.Generator] = None) -> None:
        """Copy transitions ``rows`` into ``batch`` rows ``start:start+len(rows)`` (``rng`` picks
        the stored views of keys that keep several)."""
        end = start + len(rows)
        obs_slots = self.obs_frame[rows] % self.frame_capacity
        next_slots = self.next_frame[rows] % self.frame_capacity
        for key, frames in self.frames.items():
            if key in self.views:
                if rng is None:
                    raise ValueError(f"replay '{self.name}': '{key}' keeps {self.views[key]} views a frame; gather needs an rng to pick them")
                for slots, target in ((obs_slots, batch.observations), (next_slots, batch.next_observations)):
                    picked = rng.integers(0, self.views[key], len(rows))
                    target[key][start:end] = torch.from_numpy(frames[slots, picked])
                continue
            # mode="clip" lets numpy write straight into `out` (the default buffers it first).
            np.take(frames, obs_slots, axis=0, out=batch.observations[key][start:end].numpy(), mode="clip")
            np.take(frames, next_slots, axis=0, out=batch.next_observations[key][start:end].numpy(), mode="clip")
        np.take(self.actions, rows, axis=0, out=batch.actions[start:end].numpy(), mode="clip")
        batch.rewards[start:end] = torch.from_numpy(self.rewards[rows])
        batch.terminated[start:end] = torch.from_numpy(self.flags["terminated"][rows])
        batch.interventions[start:end] = torch.from_numpy(self.flags["interventions"][rows])
        batch.gripper_changed[start:end] = torch.from_numpy(self.flags["gripper_changed"][rows])

    # ------------------------------------------------------------------ files

    def _named_arrays(self) -> dict[str, np.ndarray]:
        """Every stored array by file stem, trimmed to the rows written so far (rings fill from row 0)."""
        frames = min(self.frames_added, self.frame_capacity)
        rows = min(self.total_added, self.capacity)
        named = {f"frames_{i}": array[:frames] for i, array in enumerate(self.frames.values())}
        named.update(obs_frame=self.obs_frame[:rows], next_frame=self.next_frame[:rows])
        named.update(actions=self.actions[:rows], rewards=self.rewards[:rows])
        named.update({flag: array[:rows] for flag, array in self.flags.items()})
        return named

    def _layout(self) -> dict[str, Any]:
        return {
            "observation_spec": {key: [spec.dtype, list(spec.shape)] for key, spec in self.observation_spec.items()},
            "stored_spec": {key: [spec.dtype, list(spec.shape)] for key, spec in self.stored_spec.items()},
            "action_dim": self.action_dim,
            "capacity": self.capacity,
            "frame_capacity": self.frame_capacity,
        }

    def save(self, directory: PathLike) -> Path:
        """Write the buffer into ``directory`` (created; a previous save there is replaced atomically)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        generation = uuid.uuid4().hex[:12]
        files = {}
        for stem, array in self._named_arrays().items():
            name = f"{generation}_{stem}.npy"
            temporary = directory / f"{name}.tmp"
            with open(temporary, "wb") as out:
                np.save(out, array, allow_pickle=False)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, directory / name)
            files[stem] = {"file": name, "dtype": array.dtype.str, "shape": list(array.shape), "crc32": _crc32(array)}
        metadata = {"format": FILE_FORMAT, "name": self.name, **self._layout(), "counters": self.counters(), "arrays": files}
        temporary = directory / f"{METADATA_FILE}.tmp"
        with open(temporary, "w") as out:
            json.dump(metadata, out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, directory / METADATA_FILE)
        keep = {entry["file"] for entry in files.values()}
        for path in directory.iterdir():
            if _ARRAY_FILE.match(path.name) and path.name not in keep:
                path.unlink()
        return directory

    def load(self, directory: PathLike) -> None:
        """Replace this buffer's contents with a save from ``directory``. The save must be for
        the same observation spec, action dim and capacities; on any error the buffer is left
        empty and ``ReplayFileError`` names the file."""
        directory = Path(directory)
        try:
            self._load(directory)
        except BaseException:
            self._reset_counters()
            raise

    def _load(self, directory: Path) -> None:
        metadata_path = directory / METADATA_FILE
        try:
            metadata = json.loads(metadata_path.read_text())
        except (OSError, ValueError) as error:
            raise ReplayFileError(f"{metadata_path}: cannot read the replay metadata ({error})") from error
        if not isinstance(metadata, dict) or metadata.get("format") != FILE_FORMAT:
            raise ReplayFileError(f"{metadata_path}: not a replay save of format {FILE_FORMAT}")
        try:
            # Saves from before frame encoders stored every observation as it came.
            metadata.setdefault("stored_spec", metadata["observation_spec"])
            layout = {key: metadata[key] for key in self._layout()}
            counters, entries = metadata["counters"], metadata["arrays"]
            total, frames_added = int(counters["total_added"]), int(counters["frames_added"])
            streams = {str(stream): int(frame) for stream, frame in counters["streams"].items()}
            mismatches = int(counters["continuity_mismatches"])
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ReplayFileError(f"{metadata_path}: malformed metadata ({error!r})") from error
        differences = _layout_differences(layout, self._layout())
        if differences:
            raise ReplayFileError(f"{metadata_path}: saved for another buffer: " + "; ".join(differences))
        if not 0 <= total <= frames_added or any(not -1 <= frame < frames_added for frame in streams.values()):
            raise ReplayFileError(f"{metadata_path}: inconsistent counters {counters}")
        # Counters first: _named_arrays() trims to the rows the save holds.
        self.total_added, self.frames_added = total, frames_added
        self.transitions_claimed, self.frames_claimed = total, frames_added
        for stem, target in self._named_arrays().items():
            entry = entries.get(stem) if isinstance(entries, dict) else None
            if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or "/" in entry["file"]:
                raise ReplayFileError(f"{metadata_path}: no valid entry for array '{stem}'")
            _read_npy_into(directory / entry["file"], target, entry.get("crc32"))
        rows = min(total, self.capacity)
        obs, nxt = self.obs_frame[:rows], self.next_frame[:rows]
        if rows and (obs.min() < 0 or nxt.max() >= frames_added or (obs >= nxt).any()):
            raise ReplayFileError(f"{directory}: frame ids out of range in obs_frame/next_frame")
        self.streams, self.continuity_mismatches = streams, mismatches
        self._len_cache = ((-1, -1), 0)


def _crc32(array: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(array).reshape(-1).view(np.uint8))


def _layout_differences(saved: Mapping[str, Any], ours: Mapping[str, Any]) -> list[str]:
    differences = []
    for spec_name, what in (("observation_spec", "observation"), ("stored_spec", "stored frame")):
        saved_spec, our_spec = saved[spec_name], ours[spec_name]
        if not isinstance(saved_spec, dict):
            return [f"{spec_name} is {saved_spec!r}"]
        for key in sorted(set(saved_spec) | set(our_spec)):
            if key not in our_spec:
                differences.append(f"the save has {what} '{key}' {saved_spec[key]}, this buffer does not")
            elif key not in saved_spec:
                differences.append(f"this buffer has {what} '{key}' {our_spec[key]}, the save does not")
            elif list(saved_spec[key]) != our_spec[key]:
                differences.append(f"{what} '{key}' is {saved_spec[key]} in the save, {our_spec[key]} here")
    for field_name in ("action_dim", "capacity", "frame_capacity"):
        if saved[field_name] != ours[field_name]:
            differences.append(f"{field_name} is {saved[field_name]} in the save, {ours[field_name]} here")
    return differences


def _read_npy_into(path: Path, target: np.ndarray, crc32: Any) -> None:
    """Read an .npy file straight into ``target`` (no second copy of a multi-GB array),
    checking its header, its length and its CRC32."""
    try:
        with open(path, "rb") as source:
            version = np.lib.format.read_magic(source)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran_order, dtype = read_header(source)
            if dtype != target.dtype or tuple(shape) != target.shape or fortran_order:
                raise ReplayFileError(
                    f"{path}: holds {dtype}{list(shape)}, expected {target.dtype}{list(target.shape)} (corrupt or from another save)"
                )
            view = memoryview(target.reshape(-1).view(np.uint8))
            read = source.readinto(view)
            if read != target.nbytes or source.read(1):
                raise ReplayFileError(f"{path}: {read} bytes of data, expected {target.nbytes} (truncated or corrupt)")
    except ReplayFileError:
        raise
    except (OSError, ValueError) as error:
        raise ReplayFileError(f"{path}: cannot read ({error})") from error
    if crc32 != _crc32(target):
        raise ReplayFileError(f"{path}: CRC32 mismatch (corrupt file)")


# --------------------------------------------------------------------------- online + demo


class MixedReplay:
    """The RLPD sampler: each batch takes ``demo_ratio`` of its rows from the demo buffer and
    the rest from the online buffer. Every transition goes to the online buffer; those a
    teleoperator chose (interventions) go to the demo buffer too, as HIL-SERL does."""

    def __init__(self, online: ReplayBuffer, demo: ReplayBuffer, demo_ratio: float = 0.5) -> None:
        if online.stored_spec != demo.stored_spec or online.action_dim != demo.action_dim:
            raise ValueError(
                f"online and demo buffers differ: {online.stored_spec}, action_dim {online.action_dim} vs "
                f"{demo.stored_spec}, action_dim {demo.action_dim}"
            )
        if not 0.0 <= demo_ratio <= 1.0:
            raise ValueError(f"demo_ratio must be in [0, 1], got {demo_ratio}")
        self.online, self.demo, self.demo_ratio = online, demo, float(demo_ratio)

    @classmethod
    def from_config(
        cls, training: TrainingConfig, observation_spec: Spec, action_dim: int,
        frame_encoder: Optional[FrameEncoder] = None,
    ) -> "MixedReplay":
        online = ReplayBuffer(observation_spec, action_dim, training.online_buffer_capacity, name="online", frame_encoder=frame_encoder)
        demo = ReplayBuffer(observation_spec, action_dim, training.demo_buffer_capacity, name="demo", frame_encoder=frame_encoder)
        return cls(online, demo, training.demo_ratio)

    def add(self, arrays: Mapping[str, np.ndarray], stream: str = "default") -> int:
        """All rows to the online buffer, intervention rows also to the demo buffer. Returns N."""
        count = self.online.add(arrays, stream)
        interventions = arrays["interventions"]
        # Runs of consecutive intervention rows: a run continues the demo buffer's last
        # transition of this stream only if it starts the batch and that stream's previous
        # batch ended inside an intervention (streams[...] is kept by the demo buffer).
        edges = np.flatnonzero(np.diff(np.concatenate([[False], interventions, [False]]).astype(np.int8)))
        for start, stop in zip(edges[::2], edges[1::2]):
            if start > 0:
                self.demo.break_continuity(stream)
            self.demo.add({key: array[start:stop] for key, array in arrays.items()}, stream)
        if count and not interventions[-1]:
            self.demo.break_continuity(stream)
        return count

    def add_demos(self, arrays: Mapping[str, np.ndarray], stream: str = "demos") -> int:
        """Recorded demonstrations: to the demo buffer only."""
        return self.demo.add(arrays, stream)

    def __len__(self) -> int:
        return len(self.online) + len(self.demo)

    def sample(self, batch_size: int, rng: np.random.Generator, pin_memory: bool = False) -> Batch:
        online, demo = len(self.online), len(self.demo)
        if online == 0 and demo == 0:
            raise RuntimeError("both replay buffers (online and demo) are empty: nothing to sample")
        if demo == 0:
            from_demo = 0
        elif online == 0:
            from_demo = batch_size
        else:
            from_demo = int(round(batch_size * self.demo_ratio))
        batch = _empty_batch(self.online.sampled_spec, self.online.action_dim, batch_size, pin_memory)
        from_online = batch_size - from_demo
        if from_online:
            self.online.gather(self.online.sample_rows(from_online, rng), batch, 0, rng)
        if from_demo:
            self.demo.gather(self.demo.sample_rows(from_demo, rng), batch, from_online, rng)
        return batch

    def save(self, directory: PathLike) -> Path:
        """Each buffer in its own subdirectory ("online", "demo"), each saved atomically."""
        directory = Path(directory)
        self.online.save(directory / "online")
        self.demo.save(directory / "demo")
        return directory

    def load(self, directory: PathLike) -> None:
        directory = Path(directory)
        self.online.load(directory / "online")
        self.demo.load(directory / "demo")
