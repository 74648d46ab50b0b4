"""Policy weights on the wire: one safetensors blob per version, cut into chunks.

safetensors is a flat header (JSON) plus raw tensor bytes: reading it cannot run code,
unlike a pickle or ``torch.load``. The learner may build the blob from torch tensors
(``safetensors.torch.save``); the transport only checks its framing and moves bytes.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional

import numpy as np
import safetensors
import safetensors.numpy

from robot_stack.transport.messages import WeightsChunk
from robot_stack.transport.wire import DecodeError

DIGEST_BYTES = 16
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
    names = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise DecodeError(f"weights blob entry {name!r} has no valid data_offsets")
        if not 0 <= offsets[0] <= offsets[1] <= data_bytes:
            raise DecodeError(f"weights blob entry {name!r} points outside the blob ({offsets}, {data_bytes} data bytes)")
        names.append(name)
    return names


def blob_digest(blob: bytes | memoryview) -> bytes:
    # SHA-256 runs on the CPU's SHA instructions: twice BLAKE2b's speed on these machines.
    return hashlib.sha256(blob).digest()[:DIGEST_BYTES]


def chunk_weights(
    version: int, blob: bytes | memoryview, chunk_bytes: int, digest: Optional[bytes] = None
) -> Iterator[WeightsChunk]:
    """Chunks that view the blob (no copies). Pass the digest when sending one blob repeatedly."""
    if chunk_bytes <= 0:
        raise ValueError("chunk_bytes must be positive")
    view = memoryview(blob).cast("B")
    count = max(1, -(-view.nbytes // chunk_bytes))
    size = _chunk_size(view.nbytes, count)
    digest = digest if digest is not None else blob_digest(view)
    for index in range(count):
        yield WeightsChunk(version, index, count, view.nbytes, digest, view[index * size : (index + 1) * size])


def _chunk_size(total_bytes: int, count: int) -> int:
    # Every chunk but the last has this size, so a receiver places a chunk from its index alone.
    return max(1, -(-total_bytes // count))


@dataclass(frozen=True)
class WeightsUpdate:
    """A complete, verified weights version, as the actor takes it."""

    version: int
    blob: bytes | bytearray
    received_time: float
    # What the actor's ``prepare_weights`` made of the blob in the link thread (e.g. a torch
    # state dict), so the control loop only has to swap it in.
    prepared: Any = None

    def tensors(self) -> dict[str, np.ndarray]:
        return unpack_weights(self.blob)


class WeightsAssembler:
    """Collects the chunks of the newest version; yields it once complete and verified.

    Chunks of an older version than the one being assembled are dropped; a chunk of a newer
    version abandons the one in progress (the publisher only ever sends the latest).
    """

    def __init__(self, max_blob_bytes: int) -> None:
        self.max_blob_bytes = max_blob_bytes
        self.completed_version = -1
        self._version = -1
        self._buffer: Optional[bytearray] = None
        self._have: set[int] = set()
        self._expected: Optional[tuple[int, int, bytes]] = None
        # Chunks arrive in order on a pub/sub socket: hash them as they come, so the check
        # at completion costs nothing extra; out-of-order arrival falls back to one pass.
        self._hasher = hashlib.sha256()
        self._hashed_through = 0

    def add(self, chunk: WeightsChunk, now: float) -> Optional[WeightsUpdate]:
        if chunk.version <= self.completed_version or chunk.version < self._version:
            return None
        if chunk.total_bytes > self.max_blob_bytes:
            raise DecodeError(f"weights version {chunk.version} is {chunk.total_bytes} bytes; the limit is {self.max_blob_bytes}")
        shape = (chunk.count, chunk.total_bytes, chunk.digest)
        if chunk.version != self._version or self._expected != shape:
            # After a failed reassembly (_expected is None) a resent copy of the version starts afresh.
            if chunk.version == self._version and self._expected is not None:
                raise DecodeError(f"weights version {chunk.version}: chunks disagree on count, size or digest")
            self._version, self._expected, self._have = chunk.version, shape, set()
            self._buffer = bytearray(chunk.total_bytes)
            self._hasher, self._hashed_through = hashlib.sha256(), 0
        size = _chunk_size(chunk.total_bytes, chunk.count)
        start = chunk.index * size
        expected_len = max(0, min(size, chunk.total_bytes - start))
        if len(chunk.payload) != expected_len:
            raise DecodeError(
                f"weights version {chunk.version} chunk {chunk.index}: {len(chunk.payload)} bytes, expected {expected_len}"
            )
        self._buffer[start : start + expected_len] = chunk.payload
        self._have.add(chunk.index)
        if chunk.index == self._hashed_through:
            self._hasher.update(chunk.payload)
            self._hashed_through += 1
        if len(self._have) < chunk.count:
            return None
        blob, in_order = self._buffer, self._hashed_through == chunk.count
        digest = self._hasher.digest()[:DIGEST_BYTES] if in_order else blob_digest(blob)
        self._buffer, self._have, self._expected = None, set(), None
        if digest != chunk.digest:
            raise DecodeError(f"weights version {chunk.version}: digest mismatch after reassembly; dropped")
        check_safetensors(blob)
        self.completed_version = chunk.version
        return WeightsUpdate(chunk.version, blob, now)
