"""Atomic, resumable learner checkpoints.

A checkpoint is a directory ``ckpt-NNNNNN`` under the checkpoint dir holding the agent
(networks, optimisers, temperature), the replay buffers, the counters and the transport's
per-stream sequence numbers, plus ``policy.safetensors`` for actors and evaluation. It is
written under a temporary name and renamed into place only when every file is on disk,
and ``complete.json`` is written last: a learner killed mid-save leaves a ``.tmp``
directory that is ignored, never a half checkpoint that is loaded. Resuming takes the
newest complete checkpoint; one that fails to load is reported and the next older one is
tried, so an existing checkpoint dir never stops a learner from starting.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from robot_stack.data.files import write_json_atomic

log = logging.getLogger(__name__)

_NAME = re.compile(r"^ckpt-(\d{6,})$")
COMPLETE_MARKER = "complete.json"


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    index: int
    meta: dict[str, Any]


def _fsync_dir(path: Path) -> None:
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
    """The checkpoints of one learner run, newest last; keeps the ``keep`` newest."""

    def __init__(self, directory: Path, keep: int = 2):
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        self.directory = Path(directory)
        self.keep = keep
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

    def _next_index(self) -> int:
        indices = [int(m.group(1)) for e in self.directory.iterdir() if (m := _NAME.match(e.name.removesuffix(".tmp")))]
        return max(indices, default=-1) + 1

    def save(self, write: Callable[[Path], None], meta: dict[str, Any]) -> CheckpointInfo:
        """``write(tmp_dir)`` puts the files there; the directory becomes a checkpoint atomically."""
        index = self._next_index()
        final = self.directory / f"ckpt-{index:06d}"
        tmp = self.directory / f"ckpt-{index:06d}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        write(tmp)
        meta = {**meta, "index": index, "saved_unix_time": time.time()}
        write_json_atomic(tmp / COMPLETE_MARKER, meta)
        for child in tmp.rglob("*"):
            if child.is_file():
                with open(child, "rb") as handle:
                    os.fsync(handle.fileno())
        _fsync_dir(tmp)
        os.replace(tmp, final)
        _fsync_dir(self.directory)
        self._prune()
        return CheckpointInfo(final, index, meta)

    def _prune(self) -> None:
        complete = self.complete()
        for old in complete[: -self.keep]:
            shutil.rmtree(old.path, ignore_errors=True)
        for entry in self.directory.iterdir():
            if entry.name.endswith(".tmp") and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)

    def load_latest(self, load: Callable[[CheckpointInfo], Any]) -> tuple[Optional[CheckpointInfo], Any]:
        """Newest checkpoint that ``load`` accepts; (None, None) if there is none."""
        for info in reversed(self.complete()):
            try:
                return info, load(info)
            except Exception as error:  # a broken checkpoint must not stop the learner
                log.error("checkpoint %s could not be loaded (%s: %s); trying an older one", info.path, type(error).__name__, error)
        return None, None
