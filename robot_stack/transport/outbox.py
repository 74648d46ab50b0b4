"""The actor's outbox: every transition batch it has sent and the learner has not yet
committed (saved in a checkpoint), kept so it can be sent again after either side restarts.

Batches live in memory up to a byte bound; past it they go to append-only segment files
on local disk. In durable mode every batch is also written to a segment as it is added,
so a killed actor that restarts with the same directory resends what the learner never
committed, under the same stream id and sequence numbers (the learner drops duplicates).

The buffers of released batches are kept (up to a quarter of the memory bound) and handed
out again by ``allocate`` for the next batches of the same size: a fresh multi-megabyte
buffer costs its page faults on every message, about twice the copy into it.

Segment record: magic, sequence number, frame count, frame lengths, frame bytes, trailer.
A record cut short by a crash is detected by its lengths and trailer and cut off on reopen.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import struct
import sys
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

log = logging.getLogger(__name__)

_RECORD_HEAD = struct.Struct("<4sQI")
_RECORD_MAGIC = b"RSOB"
_TRAILER = b"RSOE"
_LENGTH = struct.Struct("<Q")
STATE_FILE = "outbox.json"
LOCK_FILE = "outbox.lock"
MAX_FRAMES_PER_RECORD = 4096


class OutboxFull(RuntimeError):
    """The outbox reached its disk bound: the learner has not committed anything for too long."""


@dataclass
class _Segment:
    path: Path
    first_seq: int
    last_seq: int
    size: int


class Outbox:
    def __init__(
        self,
        directory: Optional[Path],
        memory_limit_bytes: int,
        durable: bool,
        max_disk_bytes: int = 20 * 1024**3,
        segment_bytes: int = 64 * 1024**2,
    ) -> None:
        if durable and directory is None:
            raise ValueError("a durable outbox needs a directory")
        self.directory = Path(directory) if directory is not None else None
        self.memory_limit_bytes = memory_limit_bytes
        self.durable = durable
        self.max_disk_bytes = max_disk_bytes
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._memory: "OrderedDict[int, list[bytes]]" = OrderedDict()
        self._memory_bytes = 0
        self._spare: dict[int, list[bytearray]] = {}  # size -> released buffers, for allocate()
        self._spare_bytes = 0
        self._spare_limit = memory_limit_bytes // 4
        self._on_disk: dict[int, tuple[_Segment, int, list[int]]] = {}
        self._segments: list[_Segment] = []
        self._writer: Optional[int] = None  # fd of the last segment
        self.committed_seq = -1
        self.next_seq = 0
        self.stream_id = uuid.uuid4().hex
        self.recovered = 0
        self._lock_fd: Optional[int] = None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._take_directory()
            if durable and (self.directory / STATE_FILE).exists():
                self._recover()
            else:
                self._clear_directory()
                self._write_state()

    # ----------------------------------------------------------------- actor side

    def add(self, seq: int, frames: Sequence[bytes | memoryview]) -> None:
        """Keep a batch (its encoded frames) until ``release`` covers its sequence number."""
        # The caller hands over freshly packed buffers: keep them rather than copy again.
        frames = [frame if isinstance(frame, (bytes, bytearray)) else bytes(frame) for frame in frames]
        size = sum(len(frame) for frame in frames)
        with self._lock:
            if seq != self.next_seq:
                raise ValueError(f"outbox expected sequence {self.next_seq}, got {seq}")
            keep_in_memory = self._memory_bytes + size <= self.memory_limit_bytes
            if self.durable or not keep_in_memory:
                if self.directory is None:
                    raise OutboxFull(
                        f"outbox memory bound ({self.memory_limit_bytes} bytes) reached and no spill directory is set"
                    )
                self._write_record(seq, frames, size)
            if keep_in_memory:
                self._memory[seq] = frames
                self._memory_bytes += size
            self.next_seq = seq + 1

    def allocate(self, size: int) -> bytearray:
        """A buffer of ``size`` bytes to pack the next batch into: a released batch's buffer
        that nothing refers to any more (ZeroMQ lets go of a buffer some time after sending
        it), or a new one. Its old contents are still in it."""
        with self._lock:
            spare = self._spare.get(size)
            if spare:
                for index in range(len(spare)):
                    # Held by this list and getrefcount's argument only (CPython counts exactly).
                    if sys.getrefcount(spare[index]) <= 2:
                        self._spare_bytes -= size
                        return spare.pop(index)
        return bytearray(size)

    def _keep_spare(self, frames: list) -> None:
        for frame in frames:
            if isinstance(frame, bytearray) and self._spare_bytes + len(frame) <= self._spare_limit:
                self._spare.setdefault(len(frame), []).append(frame)
                self._spare_bytes += len(frame)

    # ----------------------------------------------------------------- sender side

    def frames(self, seq: int) -> Optional[list[bytes]]:
        """The frames of an unreleased batch, from memory or disk; None if released or unknown."""
        with self._lock:
            frames = self._memory.get(seq)
            if frames is not None:
                return frames
            location = self._on_disk.get(seq)
        if location is None:
            return None
        segment, offset, lengths = location
        try:
            with open(segment.path, "rb") as file:
                file.seek(offset)
                return [file.read(length) for length in lengths]
        except FileNotFoundError:  # released while we read
            return None

    def release(self, committed_seq: int) -> None:
        """The learner committed everything up to ``committed_seq``: forget it."""
        with self._lock:
            if committed_seq <= self.committed_seq:
                return
            self.committed_seq = min(committed_seq, self.next_seq - 1)
            while self._memory and next(iter(self._memory)) <= self.committed_seq:
                _, frames = self._memory.popitem(last=False)
                self._memory_bytes -= sum(len(frame) for frame in frames)
                self._keep_spare(frames)
            for seq in [seq for seq in self._on_disk if seq <= self.committed_seq]:
                del self._on_disk[seq]
            for segment in [s for s in self._segments if s.last_seq <= self.committed_seq]:
                if self._segments[-1] is segment and self._writer is not None:
                    os.close(self._writer)
                    self._writer = None
                self._segments.remove(segment)
                segment.path.unlink(missing_ok=True)
            if self.durable:
                self._write_state()

    @property
    def unreleased(self) -> int:
        return self.next_seq - 1 - self.committed_seq

    def sizes(self) -> dict[str, int]:
        with self._lock:
            return {
                "unreleased_batches": self.unreleased,
                "memory_bytes": self._memory_bytes,
                "spare_bytes": self._spare_bytes,
                "disk_bytes": sum(s.size for s in self._segments),
            }

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                os.close(self._writer)
                self._writer = None
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the directory lock
                self._lock_fd = None

    def _take_directory(self) -> None:
        # Two actors sharing one outbox would interleave sequence numbers of one stream.
        self._lock_fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise RuntimeError(
                f"outbox directory {self.directory} is in use by another actor process; "
                "give each actor its own actor id (or outbox directory)"
            ) from None

    # ----------------------------------------------------------------- disk

    def _write_record(self, seq: int, frames: list[bytes], size: int) -> None:
        disk = sum(s.size for s in self._segments)
        if disk + size > self.max_disk_bytes:
            raise OutboxFull(
                f"outbox holds {disk} bytes on disk under {self.directory} (limit {self.max_disk_bytes}): the learner "
                "has not committed transitions for a long time; check that it is running and reachable"
            )
        if self._writer is None or self._segments[-1].size >= self.segment_bytes:
            self._open_segment(seq)
        segment = self._segments[-1]
        head = _RECORD_HEAD.pack(_RECORD_MAGIC, seq, len(frames)) + b"".join(_LENGTH.pack(len(f)) for f in frames)
        offset = segment.size + len(head)
        written = os.writev(self._writer, [head, *frames, _TRAILER])
        segment.size += written
        segment.last_seq = seq
        self._on_disk[seq] = (segment, offset, [len(f) for f in frames])

    def _open_segment(self, first_seq: int) -> None:
        if self._writer is not None:
            os.close(self._writer)
        path = self.directory / f"{first_seq:020d}.seg"
        self._writer = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._segments.append(_Segment(path, first_seq, first_seq, os.path.getsize(path)))

    def _write_state(self) -> None:
        state = {"stream_id": self.stream_id, "committed_seq": self.committed_seq, "durable": self.durable}
        temporary = self.directory / (STATE_FILE + ".tmp")
        temporary.write_text(json.dumps(state))
        os.replace(temporary, self.directory / STATE_FILE)

    def _clear_directory(self) -> None:
        for path in self.directory.glob("*.seg"):
            path.unlink()

    def _recover(self) -> None:
        path = self.directory / STATE_FILE
        try:
            state = json.loads(path.read_text())
            stream_id, committed_seq = str(state["stream_id"]), int(state["committed_seq"])
            was_durable = state["durable"]
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path}: unreadable outbox state ({error}); move the directory away to start afresh") from None
        if was_durable is not True:
            # A non-durable outbox wrote only what overflowed memory: resuming its stream would leave holes.
            self._clear_directory()
            self._write_state()
            return
        self.stream_id, self.committed_seq = stream_id, committed_seq
        self.next_seq = self.committed_seq + 1
        for segment_path in sorted(self.directory.glob("*.seg")):
            segment = _Segment(segment_path, int(segment_path.stem), -1, 0)
            for seq, offset, lengths, end in _scan_segment(segment_path):
                segment.size = end
                if seq > self.committed_seq:
                    self._on_disk[seq] = (segment, offset, lengths)
                    self.recovered += 1
                segment.last_seq = max(segment.last_seq, seq)
                self.next_seq = max(self.next_seq, seq + 1)
            actual = segment_path.stat().st_size
            if actual != segment.size:
                log.warning("outbox %s: cutting a torn record at byte %d of %d", segment_path, segment.size, actual)
                os.truncate(segment_path, segment.size)
            if segment.last_seq <= self.committed_seq:
                segment_path.unlink()
            else:
                self._segments.append(segment)
        if self._segments:
            self._writer = os.open(self._segments[-1].path, os.O_WRONLY | os.O_APPEND)
        if self.recovered:
            log.info(
                "outbox %s: stream %s resumes with %d uncommitted batches (seq %d..%d)",
                self.directory, self.stream_id, self.recovered, self.committed_seq + 1, self.next_seq - 1,
            )


def _scan_segment(path: Path):
    """(seq, data offset, frame lengths, record end) of every whole record in a segment."""
    data = path.read_bytes()
    position = 0
    while position + _RECORD_HEAD.size <= len(data):
        magic, seq, count = _RECORD_HEAD.unpack_from(data, position)
        if magic != _RECORD_MAGIC or count > MAX_FRAMES_PER_RECORD:
            return
        lengths_start = position + _RECORD_HEAD.size
        lengths_end = lengths_start + count * _LENGTH.size
        if lengths_end > len(data):
            return
        lengths = [_LENGTH.unpack_from(data, lengths_start + i * _LENGTH.size)[0] for i in range(count)]
        end = lengths_end + sum(lengths) + len(_TRAILER)
        if end > len(data) or data[end - len(_TRAILER) : end] != _TRAILER:
            return
        yield seq, lengths_end, lengths, end
        position = end
