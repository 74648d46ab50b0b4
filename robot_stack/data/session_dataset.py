"""What an actor did, episode by episode, as a LeRobotDataset v3 (``robot_stack.data.lerobot_v3``):
an RL session becomes training data for RLDG or another learner without collecting it again,
and a demo set gets the same copy.

One frame per transition, with the features

| feature                          | from the transition                                   |
|----------------------------------|-------------------------------------------------------|
| ``observation.images.<camera>``  | ``observations/images/<camera>`` (video)              |
| ``observation.state``            | ``observations/state`` (named entries when given)     |
| ``action``                       | ``actions``, as the env executed it                   |
| ``next.reward``                  | ``rewards``                                           |
| ``next.done``                    | ``terminated`` (the MDP ended; not a time limit)      |
| ``next.truncated``               | ``truncated``                                         |
| ``next.success``                 | the episode's success, on its last frame              |
| ``next.observation.state``       | ``next_observations/state``                           |
| ``intervention``                 | ``interventions``                                     |
| ``gripper_changed``              | ``gripper_changed``                                   |
| ``policy_version``               | the weights version that acted                        |

and, in each episode's row of ``meta/episodes``, how it ended: ``outcome/success``,
``outcome/label`` (who decided success: "operator" or "detector"), ``outcome/deterministic``,
``outcome/actor_episode`` (the actor's own episode number), ``outcome/return``,
``outcome/intervention_steps``, ``outcome/weights_version``, and ``outcome/detail``: the
actor's whole episode-end report as JSON, which ``read_episode_transitions`` gives back.

Next images are not stored: within an episode they are the following frame's images. The
last transition's next image exists nowhere, so ``read_episode_transitions`` drops the last
transition of an image episode that did not terminate (a time limit or a stop cut it: its
target would bootstrap from that image); after a termination the next image does not enter
the TD target, and the last frame's own images stand in for it.

The actor uses it like this (one recorder per actor, for the whole session)::

    recorder = EpisodeRecorder(paths.actor_dataset(actor_id), config.task.name, *env_spec(env),
                               fps=config.task.control_rate_hz, state_names=state_names(config.task),
                               action_names=action_names(config.task))
    try:
        while running:
            ...                                   # an episode ends and is kept:
            recorder.add_episode(episode_batch, detail)
    finally:
        recorder.close()                          # writes what is queued; raises a writer error

``add_episode`` returns at once: a writer thread encodes the videos and writes the files, and
flushes (the folder is then a complete dataset) every ``flush_every_episodes`` episodes or
``flush_every_s`` seconds and at ``close``. A process killed outright loses the episodes since
the last flush; reopening the folder (a resumed session) appends after the flushed ones.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np

from robot_stack.data.lerobot_v3 import DatasetError, DatasetWriter, camera_feature, read_dataset
from robot_stack.data.spec import (
    ACTION_KEY,
    IMAGE_PREFIX,
    NEXT_OBSERVATION_PREFIX,
    OBSERVATION_PREFIX,
    REWARD_KEY,
    STATE_KEY,
    Spec,
    check_batch,
    transition_batch_spec,
)

log = logging.getLogger(__name__)

# An optional per-step array beside the transition layout: the weights version that chose each
# action (the actor takes new weights between steps, so it can change within an episode).
POLICY_VERSION_KEY = "policy_version"
CAMERA_FEATURE_PREFIX = "observation.images."
OUTCOME_COLUMNS = {  # episode-row column -> the key of the actor's episode-end report
    "outcome/success": "success",
    "outcome/label": "label",
    "outcome/deterministic": "deterministic",
    "outcome/actor_episode": "episode",
    "outcome/return": "return",
    "outcome/intervention_steps": "intervention_steps",
    "outcome/weights_version": "weights_version",
}
DETAIL_COLUMN = "outcome/detail"
_FLAG_FEATURES = {"terminated": "next.done", "truncated": "next.truncated", "interventions": "intervention",
                  "gripper_changed": "gripper_changed"}
_CLOSE = object()


def _scalar(dtype: str) -> dict[str, Any]:
    return {"dtype": dtype, "shape": [1], "names": None}


def _vector(size: int, names: Optional[Sequence[str]], what: str) -> dict[str, Any]:
    if names is not None and len(names) != size:
        raise ValueError(f"{len(names)} {what} names for a {what} of {size} entries")
    return {"dtype": "float32", "shape": [size], "names": list(names) if names is not None else None}


def cameras_of(observation_spec: Spec) -> list[str]:
    return [key[len(IMAGE_PREFIX):] for key in observation_spec if key.startswith(IMAGE_PREFIX)]


def session_features(observation_spec: Spec, action_spec: Spec, fps: float, video_codec: str,
                     state_names: Optional[Sequence[str]] = None, action_names: Optional[Sequence[str]] = None) -> dict[str, dict[str, Any]]:
    """The dataset's features for transitions of these specs (see the module's table)."""
    state_size = observation_spec[STATE_KEY].shape[0]
    features = {
        "observation.state": _vector(state_size, state_names, "state"),
        "action": _vector(action_spec[ACTION_KEY].shape[0], action_names, "action"),
        "next.reward": _scalar("float32"),
        **{feature: _scalar("bool") for feature in _FLAG_FEATURES.values()},
        "next.success": _scalar("bool"),
        "next.observation.state": _vector(state_size, state_names, "state"),
        "policy_version": _scalar("int64"),
    }
    for camera in cameras_of(observation_spec):
        height, width, _ = observation_spec[IMAGE_PREFIX + camera].shape
        features[CAMERA_FEATURE_PREFIX + camera] = camera_feature(int(height), int(width), fps, "video", video_codec)
    return features


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def _outcome_columns(detail: Mapping[str, Any]) -> dict[str, Any]:
    """The episode-row columns of an episode-end report; keys it lacks become None."""
    plain = json.loads(json.dumps(dict(detail), default=_plain))
    columns = {column: plain.get(key) for column, key in OUTCOME_COLUMNS.items()}
    for column in ("outcome/success", "outcome/deterministic"):
        if columns[column] is not None:
            columns[column] = bool(columns[column])
    columns[DETAIL_COLUMN] = json.dumps(plain)
    return columns


class EpisodeRecorder:
    """Writes finished episodes into the dataset at ``root`` (appending to the one there),
    from a writer thread so the caller's control loop does not wait on the encoding.

    ``observation_spec`` and ``action_spec`` as ``robot_stack.data.spec.env_spec(env)`` gives
    them; ``state_names``/``action_names`` label the vector entries (``spec.state_names``).
    ``queue_episodes`` episodes may wait for the writer; beyond that ``add_episode`` blocks
    (with a warning) rather than hold an unbounded backlog in memory.
    """

    def __init__(self, root: Path, task: str, observation_spec: Spec, action_spec: Spec, fps: float, *,
                 state_names: Optional[Sequence[str]] = None, action_names: Optional[Sequence[str]] = None,
                 flush_every_episodes: int = 10, flush_every_s: float = 120.0, queue_episodes: int = 4,
                 video_codec: str = "libx264", robot_type: str = "franka_fr3"):
        # H.264: the AV1 encoder (libsvtav1) once refused to open a camera's file mid-session in
        # a full test run ("Invalid argument"), and the session dataset then stopped at its flush.
        if flush_every_episodes < 1 or flush_every_s <= 0 or queue_episodes < 1:
            raise ValueError(f"{root}: flush_every_episodes and queue_episodes must be at least 1 and flush_every_s positive "
                             f"(got {flush_every_episodes}, {queue_episodes}, {flush_every_s})")
        self.root = Path(root)
        self.task = task
        self.flush_every_episodes = flush_every_episodes
        self.flush_every_s = flush_every_s
        self._spec = transition_batch_spec(observation_spec, action_spec)
        self._cameras = cameras_of(observation_spec)
        features = session_features(observation_spec, action_spec, fps, video_codec, state_names, action_names)
        # Built here, not in the thread: a dataset of another layout is refused at once.
        self._dataset = DatasetWriter(self.root, fps, features, robot_type=robot_type, video_codec=video_codec, append=True)
        self._queue: queue.Queue = queue.Queue(maxsize=queue_episodes)
        self._error: Optional[BaseException] = None
        self._lost = 0  # episodes not written because of the error
        self._closed = False
        self._thread = threading.Thread(target=self._write_episodes, name=f"dataset writer {self.root.name}", daemon=True)
        self._thread.start()

    def __enter__(self) -> "EpisodeRecorder":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def add_episode(self, transitions: Mapping[str, np.ndarray], detail: Mapping[str, Any]) -> None:
        """Queue one whole episode (the transition layout, leading axis = steps; optionally
        ``policy_version`` per step) with the actor's episode-end report. The layout is checked
        here (ValueError naming what is wrong); the writing happens in the writer thread, which
        reads the arrays later: do not change them after the call."""
        if self._closed:
            raise RuntimeError(f"{self.root}: the episode recorder is closed")
        frames = self._frames(transitions, detail)
        item = (frames, _outcome_columns(detail))
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            log.warning("%s: the dataset writer is %d episodes behind; waiting for it", self.root, self._queue.maxsize)
            self._queue.put(item)

    def close(self) -> None:
        """Write what is queued, flush, stop the thread; raises RuntimeError if writing failed."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_CLOSE)
        self._thread.join()
        if self._error is not None:
            raise RuntimeError(f"{self.root}: writing the session dataset failed ({self._error}); it holds the episodes "
                               f"of its last flush, {self._lost} later episode(s) were not written") from self._error

    def _frames(self, transitions: Mapping[str, np.ndarray], detail: Mapping[str, Any]) -> dict[str, np.ndarray]:
        arrays = dict(transitions)
        versions = arrays.pop(POLICY_VERSION_KEY, None)
        check_batch(arrays, self._spec, where=f"episode {detail.get('episode', '?')} for {self.root}")
        steps = len(arrays[ACTION_KEY])
        if steps == 0:
            raise ValueError(f"episode {detail.get('episode', '?')} for {self.root}: no transitions")
        if versions is None:
            versions = np.full(steps, int(detail.get("weights_version", -1)), np.int64)
        elif np.shape(versions) != (steps,):
            raise ValueError(f"episode {detail.get('episode', '?')} for {self.root}: '{POLICY_VERSION_KEY}' has shape "
                             f"{np.shape(versions)}, expected ({steps},)")
        for camera in self._cameras:
            images, following = arrays[OBSERVATION_PREFIX + IMAGE_PREFIX + camera], arrays[NEXT_OBSERVATION_PREFIX + IMAGE_PREFIX + camera]
            # Only each frame's own image is stored; the next one must be the following frame's.
            if not np.array_equal(images[1:], following[:-1]):
                raise ValueError(f"episode {detail.get('episode', '?')} for {self.root}: camera '{camera}': next images are "
                                 "not the following observations' images (is it one episode, in order?)")
        success = np.zeros(steps, bool)
        success[-1] = bool(detail.get("success", False))
        frames = {
            "observation.state": arrays[OBSERVATION_PREFIX + STATE_KEY],
            "action": arrays[ACTION_KEY],
            "next.reward": arrays[REWARD_KEY],
            **{feature: arrays[key] for key, feature in _FLAG_FEATURES.items()},
            "next.success": success,
            "next.observation.state": arrays[NEXT_OBSERVATION_PREFIX + STATE_KEY],
            "policy_version": np.asarray(versions, np.int64),
        }
        for camera in self._cameras:
            frames[CAMERA_FEATURE_PREFIX + camera] = arrays[OBSERVATION_PREFIX + IMAGE_PREFIX + camera]
        return frames

    def _write_episodes(self) -> None:
        unflushed, last_flush = 0, time.monotonic()
        while True:
            wait = max(0.0, last_flush + self.flush_every_s - time.monotonic()) if unflushed else None
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                item = None  # time to flush what is there
            if item is _CLOSE:
                break
            if item is not None:
                if self._error is None:
                    self._attempt(lambda: self._dataset.add_episode(item[0], self.task, item[1]))
                    unflushed += 1
                else:
                    self._lost += 1
            if unflushed and (unflushed >= self.flush_every_episodes or time.monotonic() - last_flush >= self.flush_every_s):
                self._attempt(self._dataset.flush)
                unflushed, last_flush = 0, time.monotonic()
        if unflushed:
            self._attempt(self._dataset.flush)

    def _attempt(self, write) -> None:
        """Run one write unless an earlier one failed; a failure stops all later writing (the
        open files may hold part of an episode), and the folder keeps its last flush."""
        if self._error is not None:
            return
        try:
            write()
        except Exception as error:  # raised to the owner at close(); the loop must not stall on it
            log.exception("%s: writing the session dataset failed; later episodes are not written", self.root)
            self._error = error


def read_episode_transitions(root: Path) -> Iterator[tuple[dict[str, np.ndarray], dict]]:
    """The episodes of a dataset written by ``EpisodeRecorder``, in order: each in the transition
    layout (leading axis = steps; images decoded from the videos, so close to, not equal to, what
    was recorded) with the episode-end report it was added with. An image episode that did not
    terminate loses its last transition (see the module's docstring; one left with none is
    skipped). Raises DatasetError for a
    folder that is not such a dataset."""
    dataset = read_dataset(root)
    needed = ["observation.state", "action", "next.reward", "next.success", "next.observation.state", *_FLAG_FEATURES.values()]
    missing = [feature for feature in needed if feature not in dataset.features]
    if missing:
        raise DatasetError(f"{root}: not a session dataset: features {missing} are missing")
    cameras = [key[len(CAMERA_FEATURE_PREFIX):] for key in dataset.camera_keys() if key.startswith(CAMERA_FEATURE_PREFIX)]
    for episode in dataset.iter_episodes():
        frames = episode.frames
        transitions = {
            OBSERVATION_PREFIX + STATE_KEY: frames["observation.state"],
            NEXT_OBSERVATION_PREFIX + STATE_KEY: frames["next.observation.state"],
            ACTION_KEY: frames["action"],
            REWARD_KEY: frames["next.reward"],
            **{key: frames[feature].astype(bool) for key, feature in _FLAG_FEATURES.items()},
        }
        for camera in cameras:
            images = frames[CAMERA_FEATURE_PREFIX + camera]
            transitions[OBSERVATION_PREFIX + IMAGE_PREFIX + camera] = images
            transitions[NEXT_OBSERVATION_PREFIX + IMAGE_PREFIX + camera] = np.concatenate([images[1:], images[-1:]])
        if cameras and not transitions["terminated"][-1]:
            transitions = {key: value[:-1] for key, value in transitions.items()}
            if not len(transitions[ACTION_KEY]):
                continue  # a one-step episode cut short leaves no transition to learn from
        row = dataset.episodes_meta[episode.index]
        detail = row.get(DETAIL_COLUMN)
        outcome = json.loads(detail) if detail else {key: row.get(column) for column, key in OUTCOME_COLUMNS.items()}
        yield transitions, outcome
