"""Atomic, resumable learner checkpoints that name their task and spec, and a store that only
ever deletes what its own run wrote.

A checkpoint is a directory ``ckpt-NNNNNN`` under the checkpoint dir holding the agent
(networks, optimisers, temperature), the replay buffers' manifests, the counters and the
transport's per-stream sequence numbers, plus ``policy.safetensors`` for actors and
evaluation. It is written under a temporary name and renamed into place only when every file
is on disk, and ``complete.json`` is written last: a learner killed mid-save leaves a ``.tmp``
directory that is ignored, never a half checkpoint that is loaded. Resuming takes the newest
complete checkpoint; one that fails to load is reported and the next older one is tried, so
a broken checkpoint never stops a learner from starting.

Identity. ``complete.json`` names the task and the spec the checkpoint was written for
(observation and action spec, and the frozen trunk's weights where the replay keeps its
features). A store given an identity refuses a checkpoint of another task or spec with
``CheckpointMismatchError``, naming both: resuming it would train one task on another's data,
and starting fresh beside it would later prune it.

Ownership. Every checkpoint carries the ``run_id`` of the learner run that wrote it (a resumed
run keeps its checkpoint's id). Pruning keeps the ``keep`` newest checkpoints of this run id
and removes older ones of the same id; checkpoints of any other run, task or spec, and
checkpoints without a run id, are never removed. A ``.tmp`` directory is removed only when its
``owner.json`` names this run id.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from robot_stack.data.files import write_json_atomic

log = logging.getLogger(__name__)

_NAME = re.compile(r"^ckpt-(\d{6,})$")
COMPLETE_MARKER = "complete.json"
OWNER_FILE = "owner.json"


class CheckpointMismatchError(RuntimeError):
    """A checkpoint written for another task or spec than the learner that found it."""


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


@dataclass(frozen=True)
class CheckpointIdentity:
    """What a checkpoint is for: the task, and a JSON-ready spec (observation and action arrays,
    and whatever else makes stored data unusable elsewhere, e.g. the frozen trunk's weights)."""

    task: str
    spec: Mapping[str, Any] = field(default_factory=dict)

    def as_meta(self) -> dict[str, Any]:
        return {"task": self.task, "spec": json.loads(json.dumps(self.spec))}

    def mismatch(self, meta: Mapping[str, Any]) -> Optional[str]:
        """Why a checkpoint with ``meta`` is not ours, or None. A checkpoint written before
        checkpoints named their spec is judged by its task alone (its files are still checked
        as they load)."""
        task = meta.get("task")
        if task != self.task:
            return f"task '{task}', this learner's task is '{self.task}'"
        spec = meta.get("spec")
        if spec is None:
            return None
        differences = spec_differences(spec, json.loads(json.dumps(self.spec)))
        if differences:
            return f"task '{task}' with another spec: " + "; ".join(differences)
        return None


def described_spec(observation_spec: Mapping[str, Any], action_spec: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """The observation and action spec (``robot_stack.data.spec`` ArraySpecs) as a checkpoint
    names them: dtype and shape per array, e.g. ``float32[16]``."""

    def described(spec: Mapping[str, Any]) -> dict[str, str]:
        return {key: value.describe() for key, value in sorted(spec.items())}

    return {"observation": described(observation_spec), "action": described(action_spec)}


def spec_differences(saved: Any, ours: Mapping[str, Any], where: str = "") -> list[str]:
    """Every difference between a checkpoint's spec and ours, each naming both values."""
    if not isinstance(saved, Mapping):
        return [f"{where or 'spec'} is {saved!r} in the checkpoint, {dict(ours)!r} here"]
    differences = []
    for key in sorted(set(saved) | set(ours)):
        name = f"{where}.{key}" if where else str(key)
        if key not in ours:
            differences.append(f"{name} {saved[key]!r} in the checkpoint, absent here")
        elif key not in saved:
            differences.append(f"{name} absent in the checkpoint, {ours[key]!r} here")
        elif isinstance(ours[key], Mapping):
            differences.extend(spec_differences(saved[key], ours[key], name))
        elif saved[key] != ours[key]:
            differences.append(f"{name} {saved[key]!r} in the checkpoint, {ours[key]!r} here")
    return differences


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    index: int
    meta: dict[str, Any]


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class CheckpointStore:
    """The checkpoints in one directory, newest last; keeps the ``keep`` newest of its own run."""

    def __init__(self, directory: Path, keep: int = 2, identity: Optional[CheckpointIdentity] = None,
                 run_id: Optional[str] = None):
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        self.directory = Path(directory)
        self.keep = keep
        self.identity = identity
        self.run_id = run_id or new_run_id()
        if self.directory.exists() and not self.directory.is_dir():
            raise NotADirectoryError(f"checkpoint dir {self.directory} exists and is not a directory")
        self.directory.mkdir(parents=True, exist_ok=True)

    def complete(self) -> list[CheckpointInfo]:
        """Complete checkpoints, oldest first; incomplete or unreadable ones are reported and skipped."""
        found = []
        for entry in self.directory.iterdir():
            match = _NAME.match(entry.name)
            if not match or not entry.is_dir():
                continue
            marker = entry / COMPLETE_MARKER
            try:
                meta = json.loads(marker.read_text())
                if not isinstance(meta, dict):
                    raise ValueError("not a JSON object")
            except FileNotFoundError:
                log.warning("checkpoint %s has no %s (cut short while saving): skipped", entry, COMPLETE_MARKER)
                continue
            except (OSError, ValueError) as error:
                log.warning("checkpoint %s: unreadable %s (%s): skipped", entry, COMPLETE_MARKER, error)
                continue
            found.append(CheckpointInfo(entry, int(match.group(1)), meta))
        return sorted(found, key=lambda info: info.index)

    def owned(self) -> list[CheckpointInfo]:
        """Complete checkpoints of this run id, oldest first."""
        return [info for info in self.complete() if info.meta.get("run_id") == self.run_id]

    def check(self, info: CheckpointInfo) -> None:
        """Raise ``CheckpointMismatchError`` if ``info`` was written for another task or spec."""
        if self.identity is None:
            return
        reason = self.identity.mismatch(info.meta)
        if reason is not None:
            raise CheckpointMismatchError(
                f"{info.path} was written for {reason}; refusing to resume or overwrite it: "
                f"give this task its own session.checkpoint_dir (or --run-dir), or move that checkpoint away"
            )

    def _next_index(self) -> int:
        indices = [int(m.group(1)) for e in self.directory.iterdir() if (m := _NAME.match(e.name.removesuffix(".tmp")))]
        return max(indices, default=-1) + 1

    def save(self, write: Callable[[Path], None], meta: dict[str, Any]) -> CheckpointInfo:
        """``write(tmp_dir)`` puts the files there; the directory becomes a checkpoint atomically."""
        index = self._next_index()
        final = self.directory / f"ckpt-{index:06d}"
        tmp = self.directory / f"ckpt-{index:06d}.tmp"
        # _next_index skips every name in use, .tmp ones included, so this directory is new.
        tmp.mkdir()
        write_json_atomic(tmp / OWNER_FILE, {"run_id": self.run_id, "pid": os.getpid()})
        try:
            write(tmp)
            identity = self.identity.as_meta() if self.identity is not None else {}
            meta = {**meta, **identity, "run_id": self.run_id, "index": index, "saved_unix_time": time.time()}
            write_json_atomic(tmp / COMPLETE_MARKER, meta)
            for child in tmp.rglob("*"):
                if child.is_file():
                    with open(child, "rb") as handle:
                        os.fsync(handle.fileno())
            fsync_dir(tmp)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)  # ours: made above, in this call
            raise
        fsync_dir(self.directory)
        self.prune()
        return CheckpointInfo(final, index, meta)

    def prune(self) -> list[CheckpointInfo]:
        """Remove this run's checkpoints beyond the ``keep`` newest, and this run's leftover
        ``.tmp`` directories; returns the checkpoints of this run that remain."""
        owned = self.owned()
        for old in owned[: -self.keep]:
            shutil.rmtree(old.path, ignore_errors=True)
        for entry in self.directory.iterdir():
            if entry.name.endswith(".tmp") and _NAME.match(entry.name.removesuffix(".tmp")) and entry.is_dir():
                if _owner(entry) == self.run_id:
                    shutil.rmtree(entry, ignore_errors=True)
        return owned[-self.keep :]

    def load_latest(self, load: Callable[[CheckpointInfo], Any]) -> tuple[Optional[CheckpointInfo], Any]:
        """Newest checkpoint that ``load`` accepts; (None, None) if there is none. A checkpoint of
        another task or spec stops the search with ``CheckpointMismatchError``."""
        for info in reversed(self.complete()):
            self.check(info)
            try:
                return info, load(info)
            except CheckpointMismatchError:
                raise
            except Exception as error:  # a broken checkpoint must not stop the learner
                log.error("checkpoint %s could not be loaded (%s: %s); trying an older one", info.path, type(error).__name__, error)
        return None, None


def _owner(directory: Path) -> Optional[str]:
    try:
        owner = json.loads((directory / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return owner.get("run_id") if isinstance(owner, dict) else None
