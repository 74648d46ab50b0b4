"""Framing of one message on the wire: a header frame, then one raw frame per array,
packed into a single ZeroMQ frame.

Frame 0 is ``b"RSTP"``, the protocol version as a little-endian uint16, then a msgpack
map. msgpack is decoded with extension types refused and every length bounded, so a
received header can only ever become dicts, lists, strings, bytes, numbers, booleans and
None: nothing on the wire can name a class to build or code to run. Frames 1..n carry
numpy arrays as their raw bytes; the header lists each array's name, dtype string and
shape, and the decoder checks the frame length against them before viewing the bytes
as an array (no copy).

On the socket the frames travel packed in ONE ZeroMQ frame (``join_frames``): a table of
(offset, length) pairs, then each frame at a 64-byte-aligned offset. One frame per
message is faster for small batches than ZeroMQ multipart, and libzmq 4.3 can abort a
process that closes a socket while a large multipart message is half sent.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import msgpack
import numpy as np

MAGIC = b"RSTP"
PROTOCOL_VERSION = 2
_PREFIX = struct.Struct("<4sH")
_JOIN_MAGIC = b"RSMF"
_JOIN_HEAD = struct.Struct("<4sI")
_JOIN_ENTRY = struct.Struct("<QQ")
FRAME_ALIGNMENT = 64

# Numeric, boolean and fixed-width text dtypes only. Object ("O") and void/structured
# ("V") dtypes are refused: they are how a byte stream turns into arbitrary objects. Text
# has a width of at least one character: numpy cannot view bytes as zero-width items.
_DTYPE_PATTERN = re.compile(r"^[<>|=]?(b1|[iu][1248]|f[248]|c(8|16)|[SU][1-9][0-9]{0,5})$")
MAX_ARRAY_DIMS = 8

Buffer = Union[bytes, bytearray, memoryview]


class DecodeError(ValueError):
    """A received message is malformed: truncated, oversized, or not what its header says."""


class VersionMismatch(DecodeError):
    """The peer speaks another protocol version. Carries both versions."""

    def __init__(self, peer_version: int, own_version: int = PROTOCOL_VERSION) -> None:
        self.peer_version = peer_version
        self.own_version = own_version
        super().__init__(
            f"protocol version mismatch: the peer speaks robot-stack wire protocol v{peer_version}, "
            f"this process speaks v{own_version}; run the same robot-stack release on both machines"
        )


@dataclass(frozen=True)
class WireLimits:
    """Upper bounds checked on every received message before anything is allocated."""

    max_message_bytes: int = 256 * 1024 * 1024
    max_header_bytes: int = 1024 * 1024
    max_frames: int = 1025
    max_string_bytes: int = 64 * 1024
    max_container_items: int = 65536


DEFAULT_LIMITS = WireLimits()


_WIRE_TEXT: dict[np.dtype, str] = {}  # dtype -> its checked wire string
_FROM_WIRE: dict[str, np.dtype] = {}  # checked wire string -> dtype
_CACHE_LIMIT = 256


def dtype_to_wire(dtype: np.dtype) -> str:
    """The dtype string sent on the wire, e.g. '<f4', '|u1', '>i8'; refuses unsafe kinds."""
    text = _WIRE_TEXT.get(dtype)
    if text is not None:
        return text
    text = np.dtype(dtype).str
    if not _DTYPE_PATTERN.match(text):
        raise TypeError(f"arrays of dtype {np.dtype(dtype)!r} cannot travel on the wire (numeric, bool, S and U only)")
    if len(_WIRE_TEXT) < _CACHE_LIMIT and isinstance(dtype, np.dtype):
        _WIRE_TEXT[dtype] = text
    return text


def dtype_from_wire(text: Any) -> np.dtype:
    # A hit means this exact string passed the check before (only str keys are ever stored).
    dtype = _FROM_WIRE.get(text) if type(text) is str else None
    if dtype is not None:
        return dtype
    if not isinstance(text, str) or not _DTYPE_PATTERN.match(text):
        raise DecodeError(f"dtype {text!r} is not allowed on the wire (numeric, bool, S and U only)")
    dtype = np.dtype(text)
    if len(_FROM_WIRE) < _CACHE_LIMIT:
        _FROM_WIRE[text] = dtype
    return dtype


def shape_from_wire(shape: Any, limits: WireLimits) -> tuple[int, ...]:
    if type(shape) is not list or len(shape) > MAX_ARRAY_DIMS:
        raise DecodeError(f"array shape {shape!r} is not a list of at most {MAX_ARRAY_DIMS} sizes")
    bound = limits.max_message_bytes
    for n in shape:
        if type(n) is not int or not 0 <= n <= bound:  # exactly int: a bool is not a size
            raise DecodeError(f"array shape {shape!r} has a size that is not a non-negative integer")
    return tuple(shape)


def encode_frames(header: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None) -> list[Buffer]:
    """Header frame plus one frame per array (C-contiguous views; no copy when already so)."""
    entries = []
    frames: list[Buffer] = [b""]
    for name, array in (arrays or {}).items():
        array = np.ascontiguousarray(array)
        if array.ndim > MAX_ARRAY_DIMS:
            raise ValueError(f"array {name!r} has {array.ndim} dimensions; at most {MAX_ARRAY_DIMS} travel")
        entries.append([name, dtype_to_wire(array.dtype), list(array.shape)])
        # A 0-d or empty array still gets a frame (of 0 or itemsize bytes).
        frames.append(memoryview(array.reshape(-1)).cast("B") if array.size else b"")
    body = dict(header)
    body["arrays"] = entries
    frames[0] = _PREFIX.pack(MAGIC, PROTOCOL_VERSION) + msgpack.packb(body, use_bin_type=True)
    return frames


def decode_frames(frames: Sequence[Any], limits: WireLimits = DEFAULT_LIMITS) -> tuple[dict, dict[str, np.ndarray]]:
    """Parse and check a multipart message; returns (header, arrays). Arrays view the frames."""
    if not frames:
        raise DecodeError("empty message (no frames)")
    if len(frames) > limits.max_frames:
        raise DecodeError(f"message has {len(frames)} frames; the limit is {limits.max_frames}")
    views = [memoryview(frame) for frame in frames]
    total = sum(view.nbytes for view in views)
    if total > limits.max_message_bytes:
        raise DecodeError(f"message is {total} bytes; the limit is {limits.max_message_bytes}")
    head = views[0]
    if head.nbytes < _PREFIX.size:
        raise DecodeError(f"header frame is {head.nbytes} bytes, shorter than the {_PREFIX.size}-byte prefix")
    if head.nbytes > limits.max_header_bytes:
        raise DecodeError(f"header frame is {head.nbytes} bytes; the limit is {limits.max_header_bytes}")
    magic, version = _PREFIX.unpack_from(head)
    if magic != MAGIC:
        raise DecodeError(f"not a robot-stack message (starts with {bytes(magic)!r}, expected {MAGIC!r})")
    if version != PROTOCOL_VERSION:
        raise VersionMismatch(version)
    header = unpack_header(head[_PREFIX.size :], limits)
    entries = header.pop("arrays", None)
    if not isinstance(entries, list):
        raise DecodeError("header has no 'arrays' list")
    if len(entries) != len(views) - 1:
        raise DecodeError(f"header lists {len(entries)} arrays but the message carries {len(views) - 1} array frames")
    arrays: dict[str, np.ndarray] = {}
    for entry, view in zip(entries, views[1:]):
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)):
            raise DecodeError(f"array entry {entry!r} is not [name, dtype, shape]")
        name, dtype_text, shape_value = entry
        if name in arrays:
            raise DecodeError(f"array {name!r} appears twice")
        dtype = dtype_from_wire(dtype_text)
        shape = shape_from_wire(shape_value, limits)
        # Python integers: an int64 product of sizes can wrap around to match a short frame.
        count = math.prod(shape)
        expected = count * dtype.itemsize
        if view.nbytes != expected:
            raise DecodeError(
                f"array {name!r} ({dtype_text} {list(shape)}) needs {expected} bytes but its frame has {view.nbytes}"
            )
        arrays[name] = np.frombuffer(view, dtype=dtype, count=count).reshape(shape) if count else np.empty(shape, dtype)
    return header, arrays


def unpack_header(data: Buffer, limits: WireLimits = DEFAULT_LIMITS) -> dict:
    try:
        header = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            ext_hook=_refuse_ext,
            max_str_len=limits.max_string_bytes,
            max_bin_len=limits.max_header_bytes,
            max_array_len=limits.max_container_items,
            max_map_len=limits.max_container_items,
            max_ext_len=0,
        )
    except DecodeError:
        raise
    except Exception as error:  # msgpack raises several types for bad input
        raise DecodeError(f"header is not valid msgpack: {type(error).__name__}: {error}") from None
    if not isinstance(header, dict):
        raise DecodeError(f"header is a {type(header).__name__}, not a map")
    return header


def _refuse_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"header contains msgpack extension type {code}; extensions are not allowed")


def _aligned(position: int) -> int:
    return -(-position // FRAME_ALIGNMENT) * FRAME_ALIGNMENT


def join_frames(
    frames: Sequence[Any], prefix: bytes = b"", allocate: Optional[Callable[[int], bytearray]] = None
) -> bytearray:
    """One buffer holding ``prefix`` (e.g. a pub/sub topic), a frame table and the frames.

    ``allocate(size)`` may hand out a reused buffer of exactly ``size`` bytes (its old
    contents do not matter: every byte is written, the alignment padding included)."""
    views = [memoryview(frame).cast("B") for frame in frames]
    table_end = len(prefix) + _JOIN_HEAD.size + len(views) * _JOIN_ENTRY.size
    position, entries = _aligned(table_end), []
    for view in views:
        entries.append((position - len(prefix), view.nbytes))
        position = _aligned(position + view.nbytes)
    if allocate is None:
        buffer = bytearray(position)
    else:
        buffer = allocate(position)
        if len(buffer) != position:
            raise ValueError(f"allocate({position}) returned {len(buffer)} bytes")
        _zero_padding(buffer, len(prefix), table_end, views, entries)
    buffer[: len(prefix)] = prefix
    _JOIN_HEAD.pack_into(buffer, len(prefix), _JOIN_MAGIC, len(views))
    for index, (offset, length) in enumerate(entries):
        _JOIN_ENTRY.pack_into(buffer, len(prefix) + _JOIN_HEAD.size + index * _JOIN_ENTRY.size, offset, length)
    for view, (offset, length) in zip(views, entries):
        start = len(prefix) + offset
        buffer[start : start + length] = view
    return buffer


def _zero_padding(buffer: bytearray, start: int, table_end: int, views, entries) -> None:
    # A reused buffer still holds an earlier message: clear the gaps between the parts, so
    # nothing of it travels (the gaps are under 64 bytes each).
    previous_end = table_end
    for view, (offset, length) in zip(views, entries):
        buffer[previous_end : start + offset] = bytes(start + offset - previous_end)
        previous_end = start + offset + length
    buffer[previous_end:] = bytes(len(buffer) - previous_end)


def split_frames(data: Any, limits: WireLimits = DEFAULT_LIMITS) -> list[memoryview]:
    """Views of the frames packed by ``join_frames`` (after any prefix has been cut off)."""
    view = memoryview(data).cast("B")
    if view.nbytes > limits.max_message_bytes:
        raise DecodeError(f"message is {view.nbytes} bytes; the limit is {limits.max_message_bytes}")
    if view.nbytes < _JOIN_HEAD.size:
        raise DecodeError(f"message is {view.nbytes} bytes, shorter than its {_JOIN_HEAD.size}-byte frame table head")
    magic, count = _JOIN_HEAD.unpack_from(view)
    if magic != _JOIN_MAGIC:
        raise DecodeError(f"not a robot-stack message (starts with {bytes(magic)!r}, expected {_JOIN_MAGIC!r})")
    if not 1 <= count <= limits.max_frames:
        raise DecodeError(f"message declares {count} frames; 1 to {limits.max_frames} are allowed")
    table_end = _JOIN_HEAD.size + count * _JOIN_ENTRY.size
    if table_end > view.nbytes:
        raise DecodeError(f"frame table of {count} entries does not fit in a {view.nbytes}-byte message")
    frames = []
    for index in range(count):
        offset, length = _JOIN_ENTRY.unpack_from(view, _JOIN_HEAD.size + index * _JOIN_ENTRY.size)
        if offset < table_end or offset + length > view.nbytes:
            raise DecodeError(f"frame {index} ({length} bytes at {offset}) lies outside the {view.nbytes}-byte message")
        frames.append(view[offset : offset + length])
    return frames
