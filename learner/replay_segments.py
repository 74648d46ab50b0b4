"""Incremental replay checkpoints: append-only segments of a ``ReplayBuffer``.

A buffer's rows never change once written: the frame of id ``i`` and the transition of id
``i`` stay as they are until a later id takes their ring row. So a checkpoint need not rewrite
the buffer: each one appends a *segment* file holding only the frames and transitions added
since the previous checkpoint, and its manifest (small JSON, inside the checkpoint directory)
lists the segments that still hold live rows, with the buffer's counters. Loading reads those
segments in id order into the ring rows their ids map to, checks each array's CRC32 and that
the live ranges (the last ``frame_capacity`` frames, the last ``capacity`` transitions) are
covered without a gap, and so rebuilds the buffer exactly, wraparound included.

Threads: ``SegmentLog.position()`` runs in the thread that adds to the buffer, between adds
(a few counters); ``SegmentLog.append`` runs in a background thread and copies ring rows while
training goes on adding. The buffer raises ``frames_claimed``/``transitions_claimed`` before
it writes rows, so after copying, ``append`` can tell whether any row it copied was taken by a
newer id meanwhile (the ring wrapped during the write); it then refuses the segment rather
than save mixed rows.

Files: a segment is raw array bytes (no pickle; dtypes, shapes, offsets and CRC32s are in the
manifest), written as ``.tmp``, fsynced and renamed, so a write cut short leaves no segment a
manifest can name. Segments live in a store directory beside the checkpoints
(``segments-<run id>/<buffer>/``), shared by the checkpoints of one learner run.
"""

from __future__ import annotations

import os
import re
import uuid
import zlib
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

import numpy as np

from learner.replay import ReplayBuffer, ReplayFileError, _layout_differences

MANIFEST_FORMAT = "robot_stack.replay_segments/1"
SEGMENT_FILE = re.compile(r"^seg-[0-9a-f]{16}\.bin$")
_SEGMENT_TMP = re.compile(r"^seg-[0-9a-f]{16}\.bin\.tmp$")
STORE_NAME = re.compile(r"^segments-[0-9a-f]{8,32}$")
_READ_ROWS = 4096  # rows read into the scratch buffer at a time where they are no longer live


class ReplayWrappedDuringWrite(RuntimeError):
    """The ring overwrote rows a segment was copying: the segment is not written."""


def _frame_arrays(buffer: ReplayBuffer) -> dict[str, np.ndarray]:
    return {f"frames/{key}": array for key, array in buffer.frames.items()}


def _transition_arrays(buffer: ReplayBuffer) -> dict[str, np.ndarray]:
    arrays = {"obs_frame": buffer.obs_frame, "next_frame": buffer.next_frame, "actions": buffer.actions, "rewards": buffer.rewards}
    arrays.update({f"flags/{flag}": values for flag, values in buffer.flags.items()})
    return arrays


def _pieces(start: int, end: int, rows: int, split: int) -> Iterator[tuple[int, int]]:
    """Id ranges covering [start, end), each contiguous in a ring of ``rows`` rows and entirely
    below or at/above ``split``."""
    while start < end:
        stop = min(end, start + rows - start % rows)
        if start < split < stop:
            stop = split
        yield start, stop
        start = stop


def _live_start(added: int, rows: int) -> int:
    return max(0, added - rows)


class SegmentLog:
    """The segments of one buffer in one store, and how far they reach."""

    def __init__(self, buffer: ReplayBuffer, directory: Path):
        self.buffer = buffer
        self.directory = Path(directory)
        self.segments: list[dict[str, Any]] = []  # manifest entries, in id order
        self.frames_written = 0
        self.transitions_written = 0

    # ------------------------------------------------------------------ training thread

    def position(self) -> dict[str, Any]:
        """The buffer's counters now: what the next checkpoint will hold (cheap; call it between adds)."""
        return self.buffer.counters()

    # ------------------------------------------------------------------ writer thread

    def append(self, position: Mapping[str, Any]) -> dict[str, Any]:
        """Write the rows added between the last append and ``position`` as a new segment
        (durable on return); returns the manifest of the buffer at ``position``."""
        buffer = self.buffer
        frames_end, transitions_end = int(position["frames_added"]), int(position["total_added"])
        frames_start = max(self.frames_written, _live_start(frames_end, buffer.frame_capacity))
        transitions_start = max(self.transitions_written, _live_start(transitions_end, buffer.capacity))
        if frames_end > frames_start or transitions_end > transitions_start:
            entry = self._write_segment(frames_start, frames_end, transitions_start, transitions_end)
            self.segments.append(entry)
        self.frames_written, self.transitions_written = frames_end, transitions_end
        frames_live, transitions_live = _live_start(frames_end, buffer.frame_capacity), _live_start(transitions_end, buffer.capacity)
        self.segments = [
            entry for entry in self.segments
            if entry["frames"][1] > max(entry["frames"][0], frames_live)
            or entry["transitions"][1] > max(entry["transitions"][0], transitions_live)
        ]
        return {
            "format": MANIFEST_FORMAT,
            "name": buffer.name,
            **buffer._layout(),
            "counters": dict(position),
            "store": self.directory.parent.name,
            "segments": [dict(entry) for entry in self.segments],
        }

    def _write_segment(self, f0: int, f1: int, t0: int, t1: int) -> dict[str, Any]:
        buffer = self.buffer
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"seg-{uuid.uuid4().hex[:16]}.bin"
        final, temporary = self.directory / name, self.directory / f"{name}.tmp"
        arrays: dict[str, dict[str, Any]] = {}
        try:
            with open(temporary, "wb") as out:
                for group, (start, end, rows) in (
                    (_frame_arrays(buffer), (f0, f1, buffer.frame_capacity)),
                    (_transition_arrays(buffer), (t0, t1, buffer.capacity)),
                ):
                    for array_name, ring in group.items():
                        offset, crc = out.tell(), 0
                        for a, b in _pieces(start, end, rows, start):
                            piece = memoryview(ring[a % rows : a % rows + (b - a)]).cast("B")
                            crc = zlib.crc32(piece, crc)
                            out.write(piece)
                        arrays[array_name] = {"dtype": ring.dtype.str, "row_shape": list(ring.shape[1:]), "offset": offset, "crc32": crc}
                out.flush()
                os.fsync(out.fileno())
            # Checked after every row was copied: claims are raised before rows are written.
            if buffer.frames_claimed > f0 + buffer.frame_capacity or buffer.transitions_claimed > t0 + buffer.capacity:
                raise ReplayWrappedDuringWrite(
                    f"replay '{buffer.name}': the ring wrapped over rows being checkpointed "
                    f"(frames {f0}-{f1} while {buffer.frames_claimed} were claimed); the segment was not written"
                )
            os.replace(temporary, final)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        _fsync_dir(self.directory)
        return {"file": name, "frames": [f0, f1], "transitions": [t0, t1], "arrays": arrays}

    # ------------------------------------------------------------------ loading

    def load(self, manifest: Mapping[str, Any], where: str) -> None:
        """Fill the (empty) buffer from a manifest this log's store holds; ``where`` names the
        manifest in errors. On success the log continues from it: the next append writes only
        what is added after."""
        buffer = self.buffer
        try:
            _load_into(buffer, manifest, self.directory, where)
        except BaseException:
            buffer._reset_counters()
            raise
        self.segments = [dict(entry) for entry in manifest["segments"]]
        self.frames_written, self.transitions_written = buffer.frames_added, buffer.total_added


def _load_into(buffer: ReplayBuffer, manifest: Mapping[str, Any], directory: Path, where: str) -> None:
    if not isinstance(manifest, Mapping) or manifest.get("format") != MANIFEST_FORMAT:
        raise ReplayFileError(f"{where}: not a replay manifest of format {MANIFEST_FORMAT}")
    try:
        layout = {key: manifest[key] for key in buffer._layout()}
        counters, segments = manifest["counters"], manifest["segments"]
        total, frames_added = int(counters["total_added"]), int(counters["frames_added"])
        streams = {str(stream): int(frame) for stream, frame in counters["streams"].items()}
        mismatches = int(counters["continuity_mismatches"])
        if not isinstance(segments, list):
            raise TypeError("segments is not a list")
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ReplayFileError(f"{where}: malformed replay manifest ({error!r})") from error
    differences = _layout_differences(layout, buffer._layout())
    if differences:
        raise ReplayFileError(f"{where}: saved for another buffer: " + "; ".join(differences))
    if not 0 <= total <= frames_added or any(not -1 <= frame < frames_added for frame in streams.values()):
        raise ReplayFileError(f"{where}: inconsistent counters {dict(counters)}")

    groups = (
        ("frames", _frame_arrays(buffer), frames_added, buffer.frame_capacity),
        ("transitions", _transition_arrays(buffer), total, buffer.capacity),
    )
    covered = {name: _live_start(end, rows) for name, _, end, rows in groups}
    for entry in segments:
        try:
            file_name = entry["file"]
            ranges = {name: (int(entry[name][0]), int(entry[name][1])) for name, *_ in groups}
            entries = entry["arrays"]
        except (KeyError, TypeError, ValueError, IndexError) as error:
            raise ReplayFileError(f"{where}: malformed segment entry {entry!r} ({error!r})") from error
        if not isinstance(file_name, str) or not SEGMENT_FILE.match(file_name):
            raise ReplayFileError(f"{where}: segment file name {file_name!r} is not one a learner writes")
        path = directory / file_name
        try:
            with open(path, "rb") as source:
                for group_name, arrays, end, rows in groups:
                    start, stop = ranges[group_name]
                    if not 0 <= start <= stop <= end:
                        raise ReplayFileError(f"{path}: {group_name} {start}-{stop} outside the buffer's 0-{end}")
                    if start > covered[group_name] and start < end:
                        raise ReplayFileError(f"{where}: no segment holds {group_name} {covered[group_name]}-{start}")
                    for array_name, ring in arrays.items():
                        _read_rows(source, path, array_name, entries.get(array_name), ring, start, stop, rows,
                                   _live_start(end, rows))
                    covered[group_name] = max(covered[group_name], stop)
        except ReplayFileError:
            raise
        except OSError as error:
            raise ReplayFileError(f"{path}: cannot read the segment ({error})") from error
    for group_name, _, end, _ in groups:
        if covered[group_name] < end:
            raise ReplayFileError(f"{where}: no segment holds {group_name} {covered[group_name]}-{end}")
    buffer.total_added, buffer.frames_added = total, frames_added
    buffer.transitions_claimed, buffer.frames_claimed = total, frames_added
    rows = min(total, buffer.capacity)
    obs, nxt = buffer.obs_frame[:rows], buffer.next_frame[:rows]
    if rows and (obs.min() < 0 or nxt.max() >= frames_added or (obs >= nxt).any()):
        raise ReplayFileError(f"{where}: frame ids out of range in obs_frame/next_frame")
    buffer.streams, buffer.continuity_mismatches = streams, mismatches
    buffer._len_cache = ((-1, -1), 0)


def _read_rows(source, path: Path, array_name: str, entry: Any, ring: np.ndarray, start: int, stop: int,
               rows: int, live: int) -> None:
    """Read ids [start, stop) of one array from the segment: live ids into their ring rows, the
    rest into a scratch buffer (they only count towards the CRC32)."""
    if not isinstance(entry, Mapping):
        raise ReplayFileError(f"{path}: the manifest has no entry for array '{array_name}'")
    if entry.get("dtype") != ring.dtype.str or list(entry.get("row_shape", ())) != list(ring.shape[1:]):
        raise ReplayFileError(
            f"{path}: '{array_name}' is {entry.get('dtype')}{entry.get('row_shape')} in the manifest, "
            f"{ring.dtype.str}{list(ring.shape[1:])} here"
        )
    source.seek(int(entry["offset"]))
    crc, scratch = 0, None
    for a, b in _pieces(start, stop, rows, live):
        if a >= live:
            view = memoryview(ring[a % rows : a % rows + (b - a)]).cast("B")
            crc = _read_exact(source, path, array_name, view, crc)
            continue
        while a < b:
            count = min(b - a, _READ_ROWS)
            if scratch is None:
                scratch = np.empty((min(stop - start, _READ_ROWS), *ring.shape[1:]), ring.dtype)
            crc = _read_exact(source, path, array_name, memoryview(scratch[:count]).cast("B"), crc)
            a += count
    if crc != entry.get("crc32"):
        raise ReplayFileError(f"{path}: CRC32 mismatch in '{array_name}' (corrupt segment)")


def _read_exact(source, path: Path, array_name: str, view: memoryview, crc: int) -> int:
    read = source.readinto(view)
    if read != len(view):
        raise ReplayFileError(f"{path}: '{array_name}' ends after {read} of {len(view)} bytes (truncated segment)")
    return zlib.crc32(view, crc)


def remove_unreferenced_segments(store: Path, manifests: list[Mapping[str, Mapping[str, Any]]]) -> list[Path]:
    """Delete the segment files (and leftover ``.tmp`` segments) under ``store`` that none of
    ``manifests`` (per buffer name: its manifest) names. Only a learner's own store is passed
    here: every file in it was written by that learner run. Returns what was deleted."""
    referenced: set[tuple[str, str]] = set()
    for manifest in manifests:
        for buffer_name, buffer_manifest in manifest.items():
            for entry in buffer_manifest.get("segments", []):
                referenced.add((buffer_name, entry["file"]))
    removed = []
    if not store.is_dir():
        return removed
    for buffer_dir in store.iterdir():
        if not buffer_dir.is_dir():
            continue
        for path in buffer_dir.iterdir():
            unused = SEGMENT_FILE.match(path.name) and (buffer_dir.name, path.name) not in referenced
            if unused or _SEGMENT_TMP.match(path.name):
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def _fsync_dir(path: Path) -> None:
    from robot_stack.data.checkpoints import fsync_dir

    fsync_dir(path)


def segment_store(checkpoint_dir: Path, run_id: str) -> Path:
    return Path(checkpoint_dir) / f"segments-{run_id}"


def store_of(checkpoint_path: Path, manifest: Mapping[str, Any], where: str) -> Optional[Path]:
    """The store directory a checkpoint's manifest names (a sibling of the checkpoint)."""
    store = manifest.get("store")
    if not isinstance(store, str) or not STORE_NAME.match(store):
        raise ReplayFileError(f"{where}: segment store {store!r} is not one a learner writes")
    return Path(checkpoint_path).parent / store
