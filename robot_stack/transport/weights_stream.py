"""Policy weights on the wire: one safetensors blob per version, cut into chunks.

safetensors is a flat header (JSON) plus raw tensor bytes: reading it cannot run code,
unlike a pickle or ``torch.load``. The learner may build the blob from torch tensors
(``safetensors.torch.save``); the transport only checks its framing and moves bytes.

The header's ``__metadata__`` (a JSON map of strings) carries how far training was when the
version was published (``TrainingProgress``): the learner's received env steps and updates, which
actors pace themselves by. A blob without it (from an older learner) is still taken.
"""

from __future__ import annotations

import json
import secrets
import struct
import sys
import zlib
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Mapping, Optional

import numpy as np
import safetensors
import safetensors.numpy

from robot_stack.transport.messages import WeightsChunk
from robot_stack.transport.wire import DecodeError

BLOB_ID_BYTES = 16
MAX_SAFETENSORS_HEADER_BYTES = 16 * 1024 * 1024


def pack_weights(tensors: Mapping[str, np.ndarray]) -> bytes:
    """A safetensors blob of named numpy arrays."""
    return safetensors.numpy.save({name: np.ascontiguousarray(array) for name, array in tensors.items()})


def unpack_weights(blob: bytes) -> dict[str, np.ndarray]:
    """Named numpy arrays from a safetensors blob (checked first; raises DecodeError)."""
    check_safetensors(blob)
    try:
        return safetensors.numpy.load(bytes(blob))
    except (safetensors.SafetensorError, KeyError) as error:  # KeyError: a dtype numpy lacks, e.g. BF16
        raise DecodeError(f"weights blob does not load as numpy arrays: {type(error).__name__}: {error}") from None


def check_safetensors(blob: bytes | memoryview) -> list[str]:
    """Validate a blob's safetensors framing without decoding tensors; returns tensor names."""
    return [name for name in _checked_header(blob) if name != "__metadata__"]


def safetensors_metadata(blob: bytes | memoryview) -> dict[str, str]:
    """The blob's ``__metadata__`` map (empty when it has none); raises DecodeError if the blob's
    framing is broken or the map holds anything but strings."""
    metadata = _checked_header(blob).get("__metadata__", {})
    if not (isinstance(metadata, dict) and all(isinstance(value, str) for value in metadata.values())):
        raise DecodeError("weights blob __metadata__ is not a map of strings")
    return metadata


def _checked_header(blob: bytes | memoryview) -> dict[str, Any]:
    view = memoryview(blob)
    if view.nbytes < 8:
        raise DecodeError(f"weights blob is {view.nbytes} bytes, too short for a safetensors header")
    (header_len,) = struct.unpack_from("<Q", view)
    if header_len > min(MAX_SAFETENSORS_HEADER_BYTES, view.nbytes - 8):
        raise DecodeError(f"weights blob declares a {header_len}-byte header in a {view.nbytes}-byte blob")
    try:
        header = json.loads(bytes(view[8 : 8 + header_len]))
    except (ValueError, RecursionError) as error:  # bad JSON or UTF-8, a huge integer, deep nesting
        raise DecodeError(f"weights blob header is not JSON: {error}") from None
    if not isinstance(header, dict):
        raise DecodeError("weights blob header is not a JSON object")
    data_bytes = view.nbytes - 8 - header_len
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise DecodeError(f"weights blob entry {name!r} has no valid data_offsets")
        if not 0 <= offsets[0] <= offsets[1] <= data_bytes:
            raise DecodeError(f"weights blob entry {name!r} points outside the blob ({offsets}, {data_bytes} data bytes)")
    return header


@dataclass(frozen=True)
class TrainingProgress:
    """How far training was when the learner published a weights version: the online env steps it
    had received from all actors and the updates it had made, both summed over its restarts (as its
    checkpoints keep them). It rides in the blob's ``__metadata__``."""

    env_steps: int
    updates: int

    _KEYS: ClassVar[tuple[str, str]] = ("learner_env_steps", "learner_updates")

    def metadata(self) -> dict[str, str]:
        return dict(zip(self._KEYS, (str(self.env_steps), str(self.updates))))

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> Optional["TrainingProgress"]:
        """None for a blob that carries no progress (an older learner's); DecodeError for one
        whose figures are not counts."""
        if not any(key in metadata for key in cls._KEYS):
            return None
        values = []
        for key in cls._KEYS:
            text = metadata.get(key, "")
            if not (text.isascii() and text.isdigit() and len(text) <= 19):
                raise DecodeError(f"weights blob __metadata__ {key!r} must be a non-negative integer, got {text!r}")
            values.append(int(text))
        return cls(*values)


def new_blob_id() -> bytes:
    """16 random bytes naming one published blob: every chunk of it carries them."""
    return secrets.token_bytes(BLOB_ID_BYTES)


def chunk_crc(payload: bytes | memoryview) -> int:
    """CRC-32 of a chunk's bytes (zlib's, several GB/s): catches a chunk damaged on its way."""
    return zlib.crc32(payload)


def chunk_weights(
    version: int, blob: bytes | memoryview, chunk_bytes: int, blob_id: Optional[bytes] = None
) -> Iterator[WeightsChunk]:
    """Chunks that view the blob (no copies), each with the CRC-32 of its bytes, computed as the
    chunk is taken (so the first chunk leaves before the last is read). Pass the blob id when
    sending one blob again (to a late joiner), so its chunks join those already received."""
    if chunk_bytes <= 0:
        raise ValueError("chunk_bytes must be positive")
    view = memoryview(blob).cast("B")
    count = max(1, -(-view.nbytes // chunk_bytes))
    size = _chunk_size(view.nbytes, count)
    blob_id = blob_id if blob_id is not None else new_blob_id()
    for index in range(count):
        payload = view[index * size : (index + 1) * size]
        yield WeightsChunk(version, index, count, view.nbytes, blob_id, chunk_crc(payload), payload)


def _chunk_size(total_bytes: int, count: int) -> int:
    # Every chunk but the last has this size, so a receiver places a chunk from its index alone.
    return max(1, -(-total_bytes // count))


@dataclass(frozen=True)
class WeightsUpdate:
    """A complete, verified weights version, as the actor takes it."""

    version: int
    blob: bytes | bytearray
    received_time: float  # time.monotonic() in the receiving process
    # What the actor's ``prepare_weights`` made of the blob in the link thread (e.g. a torch
    # state dict), so the control loop only has to swap it in.
    prepared: Any = None
    progress: Optional[TrainingProgress] = None  # None from a learner that did not send it

    def tensors(self) -> dict[str, np.ndarray]:
        return unpack_weights(self.blob)


class WeightsAssembler:
    """Collects the chunks of the newest version; yields it once complete and verified.

    Every chunk is checked against its CRC-32 before it is placed; a damaged one is dropped
    (DecodeError) and the rest of its version waits for an intact copy. Chunks of an older
    version than the one being assembled are dropped; a chunk of a newer version abandons the
    one in progress (the publisher only ever sends the latest). All chunks of a version must
    name the same blob id, count and size.

    Blobs are assembled into buffers that are reused once nobody holds them any more (a
    fresh 20 MB buffer costs page faults: about seven times the copy itself), so an actor
    that takes each version and lets the previous one go assembles without allocating.
    """

    SPARE_BUFFERS = 2

    def __init__(self, max_blob_bytes: int) -> None:
        self.max_blob_bytes = max_blob_bytes
        self.completed_version = -1
        self._version = -1
        self._buffer: Optional[bytearray] = None
        self._have: set[int] = set()
        self._expected: Optional[tuple[int, int, bytes]] = None
        self._handed_out: list[bytearray] = []  # completed blobs, reused once no one else holds them

    def add(self, chunk: WeightsChunk, now: float) -> Optional[WeightsUpdate]:
        if chunk.version <= self.completed_version or chunk.version < self._version:
            return None
        if chunk.total_bytes > self.max_blob_bytes:
            raise DecodeError(f"weights version {chunk.version} is {chunk.total_bytes} bytes; the limit is {self.max_blob_bytes}")
        shape = (chunk.count, chunk.total_bytes, chunk.blob_id)
        if chunk.version != self._version or self._expected != shape:
            if chunk.version == self._version and self._expected is not None:
                raise DecodeError(f"weights version {chunk.version}: chunks disagree on count, size or blob id")
            self._version, self._expected, self._have = chunk.version, shape, set()
            self._buffer = self._take_buffer(chunk.total_bytes)
        size = _chunk_size(chunk.total_bytes, chunk.count)
        start = chunk.index * size
        expected_len = max(0, min(size, chunk.total_bytes - start))
        if len(chunk.payload) != expected_len:
            raise DecodeError(
                f"weights version {chunk.version} chunk {chunk.index}: {len(chunk.payload)} bytes, expected {expected_len}"
            )
        if chunk.index in self._have:
            return None
        if chunk_crc(chunk.payload) != chunk.crc32:
            raise DecodeError(f"weights version {chunk.version} chunk {chunk.index}: CRC-32 mismatch; chunk dropped")
        self._buffer[start : start + expected_len] = chunk.payload
        self._have.add(chunk.index)
        if len(self._have) < chunk.count:
            return None
        blob = self._buffer
        self._buffer, self._have, self._expected = None, set(), None
        # On failure, a resent copy of the version starts afresh (_expected is None).
        progress = TrainingProgress.from_metadata(safetensors_metadata(blob))
        self.completed_version = chunk.version
        self._handed_out = [blob, *self._handed_out][: self.SPARE_BUFFERS + 1]
        return WeightsUpdate(chunk.version, blob, now, progress=progress)

    def _take_buffer(self, size: int) -> bytearray:
        for index in range(len(self._handed_out)):
            # Held only by this list and getrefcount's argument: no update, memoryview or array
            # refers to it any more (CPython's reference counts are exact).
            if len(self._handed_out[index]) == size and sys.getrefcount(self._handed_out[index]) <= 2:
                return self._handed_out.pop(index)
        return bytearray(size)
