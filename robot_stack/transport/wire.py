"""Framing of one message on the wire: a header, an array table, then one raw part per
array, packed into a single ZeroMQ frame.

Part 0 is ``b"RSTP"``, the protocol version as a little-endian uint16, then a msgpack map
(the message's fields). Part 1 is a msgpack list with one ``[name, dtype, shape]`` entry per
array. msgpack is decoded with extension types refused and every length bounded, so a
received header can only ever become dicts, lists, strings, bytes, numbers, booleans and
None: nothing on the wire can name a class to build or code to run. Parts 2..n carry
numpy arrays as their raw bytes; the decoder checks each part's length against the
table's dtype and shape before viewing the bytes as an array (no copy).

The array table has a part of its own because it repeats: a stream of transition batches
sends the same table every time. Both ends keep the tables they have seen (the sender
the packed bytes and positions per array layout, the receiver the checked entries per
table bytes), so a repeated layout costs neither side its per-array work again.

On the socket the parts travel packed in ONE ZeroMQ frame (``join_frames``): a table of
(offset, length) pairs, then the parts at 64-byte-aligned offsets: the array table and
the arrays first, the header (whose length changes from message to message) last, so a
layout's arrays sit at the same offsets in every message. One frame per message is faster
for small batches than ZeroMQ multipart, and libzmq 4.3 can abort a process that closes
a socket while a large multipart message is half sent.
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
PROTOCOL_VERSION = 3
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
    """Header part, array-table part, then one part per array (C-contiguous views; no copy
    when already so)."""
    entries = []
    frames: list[Buffer] = [b"", b""]
    for name, array in (arrays or {}).items():
        array = np.ascontiguousarray(array)
        if array.ndim > MAX_ARRAY_DIMS:
            raise ValueError(f"array {name!r} has {array.ndim} dimensions; at most {MAX_ARRAY_DIMS} travel")
        entries.append([name, dtype_to_wire(array.dtype), list(array.shape)])
        # A 0-d or empty array still gets a part (of 0 or itemsize bytes).
        frames.append(memoryview(array.reshape(-1)).cast("B") if array.size else b"")
    if "arrays" in header:
        raise ValueError("a header field may not be called 'arrays': the array table travels as its own part")
    frames[0] = encode_header(header)
    frames[1] = msgpack.packb(entries, use_bin_type=True)
    return frames


def encode_header(header: Mapping[str, Any]) -> bytes:
    return _HEAD_PREFIX + msgpack.packb(header, use_bin_type=True)


_HEAD_PREFIX = _PREFIX.pack(MAGIC, PROTOCOL_VERSION)


@dataclass(frozen=True)
class ArrayEntry:
    """One checked entry of a received array table."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    count: int  # items
    nbytes: int


# Checked array tables by (table bytes, limits): a stream repeats one table.
_TABLES: dict[tuple[bytes, WireLimits], tuple[ArrayEntry, ...]] = {}
_TABLE_CACHE_LIMIT = 256
_TABLE_CACHE_MAX_BYTES = 4096


def decode_frames(frames: Sequence[Any], limits: WireLimits = DEFAULT_LIMITS) -> tuple[dict, dict[str, np.ndarray]]:
    """Parse and check a message's parts; returns (header, arrays). Arrays view the parts."""
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
    if "arrays" in header:
        raise DecodeError("header has an 'arrays' field; the array table travels as its own part")
    if len(views) < 2:
        raise DecodeError("message has a header but no array-table part")
    table = array_table(views[1], limits)
    if len(table) != len(views) - 2:
        raise DecodeError(f"array table lists {len(table)} arrays but the message carries {len(views) - 2} array parts")
    arrays: dict[str, np.ndarray] = {}
    for entry, view in zip(table, views[2:]):
        if view.nbytes != entry.nbytes:
            raise DecodeError(
                f"array {entry.name!r} ({entry.dtype.str} {list(entry.shape)}) needs {entry.nbytes} bytes "
                f"but its part has {view.nbytes}"
            )
        if entry.count:
            arrays[entry.name] = np.ndarray(entry.shape, entry.dtype, view)
        else:
            arrays[entry.name] = np.empty(entry.shape, entry.dtype)
    return header, arrays


def array_table(view: memoryview, limits: WireLimits = DEFAULT_LIMITS) -> tuple[ArrayEntry, ...]:
    """The checked entries of an array-table part (cached per table bytes)."""
    if view.nbytes > limits.max_header_bytes:
        raise DecodeError(f"array table is {view.nbytes} bytes; the limit is {limits.max_header_bytes}")
    data = view.tobytes()
    key = (data, limits)
    cached = _TABLES.get(key)
    if cached is not None:
        return cached
    entries = _unpack_msgpack(data, limits, "array table")
    if type(entries) is not list:
        raise DecodeError(f"array table is a {type(entries).__name__}, not a list")
    table = []
    names = set()
    for entry in entries:
        if not (type(entry) is list and len(entry) == 3 and type(entry[0]) is str):
            raise DecodeError(f"array entry {entry!r} is not [name, dtype, shape]")
        name, dtype_text, shape_value = entry
        if name in names:
            raise DecodeError(f"array {name!r} appears twice")
        names.add(name)
        dtype = dtype_from_wire(dtype_text)
        shape = shape_from_wire(shape_value, limits)
        # Python integers: an int64 product of sizes can wrap around to match a short part.
        count = math.prod(shape)
        if count == 0:
            # An empty array needs no bytes, but numpy still refuses to make one whose other
            # sizes multiply past what memory could hold (a ValueError, not a DecodeError).
            spanned = math.prod(n for n in shape if n) * dtype.itemsize
            if spanned > limits.max_message_bytes:
                raise DecodeError(
                    f"array {name!r} is empty but its other sizes {list(shape)} span {spanned} bytes, "
                    f"more than the message limit of {limits.max_message_bytes}"
                )
        table.append(ArrayEntry(name, dtype, shape, count, count * dtype.itemsize))
    result = tuple(table)
    if len(data) <= _TABLE_CACHE_MAX_BYTES and len(_TABLES) < _TABLE_CACHE_LIMIT:
        _TABLES[key] = result
    return result


def unpack_header(data: Buffer, limits: WireLimits = DEFAULT_LIMITS) -> dict:
    header = _unpack_msgpack(data, limits, "header")
    if not isinstance(header, dict):
        raise DecodeError(f"header is a {type(header).__name__}, not a map")
    return header


def _unpack_msgpack(data: Buffer, limits: WireLimits, what: str) -> Any:
    try:
        return msgpack.unpackb(
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
        raise DecodeError(f"{what} is not valid msgpack: {type(error).__name__}: {error}") from None


def _refuse_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"header contains msgpack extension type {code}; extensions are not allowed")


def _aligned(position: int) -> int:
    return -(-position // FRAME_ALIGNMENT) * FRAME_ALIGNMENT


def join_frames(
    frames: Sequence[Any], prefix: bytes = b"", allocate: Optional[Callable[[int], bytearray]] = None
) -> bytearray:
    """One buffer holding ``prefix`` (e.g. a pub/sub topic), a frame table and the frames.

    Frames 1.. are placed first and frame 0 last (see the module text). ``allocate(size)``
    may hand out a reused buffer of exactly ``size`` bytes (its old contents do not
    matter: every byte is written, the alignment padding included)."""
    views = [memoryview(frame).cast("B") for frame in frames]
    table_end = len(prefix) + _JOIN_HEAD.size + len(views) * _JOIN_ENTRY.size
    position = _aligned(table_end)
    entries: list[tuple[int, int]] = [(0, 0)] * len(views)
    for index in [*range(1, len(views)), 0][: len(views)]:
        entries[index] = (position - len(prefix), views[index].nbytes)
        position = _aligned(position + views[index].nbytes)
    buffer, reused = _buffer(position, allocate)
    if reused:
        _zero_padding(buffer, len(prefix), table_end, entries)
    buffer[: len(prefix)] = prefix
    _JOIN_HEAD.pack_into(buffer, len(prefix), _JOIN_MAGIC, len(views))
    for index, (offset, length) in enumerate(entries):
        _JOIN_ENTRY.pack_into(buffer, len(prefix) + _JOIN_HEAD.size + index * _JOIN_ENTRY.size, offset, length)
    for view, (offset, length) in zip(views, entries):
        start = len(prefix) + offset
        buffer[start : start + length] = view
    return buffer


def _buffer(size: int, allocate: Optional[Callable[[int], bytearray]]) -> tuple[bytearray, bool]:
    """A zeroed new buffer, or (reused=True) one from ``allocate`` whose padding the caller clears."""
    if allocate is None:
        return bytearray(size), False
    buffer = allocate(size)
    if len(buffer) != size:
        raise ValueError(f"allocate({size}) returned {len(buffer)} bytes")
    return buffer, True


def _zero_padding(buffer: bytearray, start: int, table_end: int, entries: Sequence[tuple[int, int]]) -> None:
    # A reused buffer still holds an earlier message: clear the gaps between the parts, so
    # nothing of it travels (the gaps are under 64 bytes each).
    previous_end = table_end
    for offset, length in sorted(entries):
        buffer[previous_end : start + offset] = bytes(start + offset - previous_end)
        previous_end = start + offset + length
    buffer[previous_end:] = bytes(len(buffer) - previous_end)


_UNLOCKED_COPY_BYTES = 256 * 1024


class PackPlan:
    """Where the parts of messages with one array layout go in the packed buffer, worked
    out once: the array table's bytes, the offsets of the table and the arrays, and the
    gaps to clear in a reused buffer. Only the header's place (last) depends on its length.

    ``pack(header_bytes, arrays, allocate)`` gives exactly the bytes ``join_frames`` gives
    for ``[header_bytes, table, *arrays]``."""

    def __init__(self, names: Sequence[str], arrays: Sequence[np.ndarray]) -> None:
        entries = []
        self.lengths = []
        for name, array in zip(names, arrays):
            if array.ndim > MAX_ARRAY_DIMS:
                raise ValueError(f"array {name!r} has {array.ndim} dimensions; at most {MAX_ARRAY_DIMS} travel")
            entries.append([name, dtype_to_wire(array.dtype), list(array.shape)])
            self.lengths.append(array.nbytes)
        self.table = msgpack.packb(entries, use_bin_type=True)
        parts = len(names) + 2
        self.table_end = _JOIN_HEAD.size + parts * _JOIN_ENTRY.size
        position = _aligned(self.table_end)
        placed = []  # (offset, length) of parts 1..
        for length in [len(self.table), *self.lengths]:
            placed.append((position, length))
            position = _aligned(position + length)
        self.header_offset = position
        self.table_offset = placed[0][0]
        self.array_offsets = [offset for offset, _ in placed[1:]]
        head = bytearray(self.table_end)
        _JOIN_HEAD.pack_into(head, 0, _JOIN_MAGIC, parts)
        for index, (offset, length) in enumerate(placed, start=1):
            _JOIN_ENTRY.pack_into(head, _JOIN_HEAD.size + index * _JOIN_ENTRY.size, offset, length)
        self.head = bytes(head[: _JOIN_HEAD.size])  # then entry 0 (the header), then the rest
        self.entries_after_header = bytes(head[_JOIN_HEAD.size + _JOIN_ENTRY.size :])
        self.gaps = []
        previous_end = self.table_end
        for offset, length in placed:
            if offset > previous_end:
                self.gaps.append((previous_end, offset, bytes(offset - previous_end)))
            previous_end = offset + length
        if self.header_offset > previous_end:
            self.gaps.append((previous_end, self.header_offset, bytes(self.header_offset - previous_end)))

    def pack(
        self, header: bytes, arrays: Sequence[np.ndarray], allocate: Optional[Callable[[int], bytearray]] = None
    ) -> bytearray:
        header_offset = self.header_offset
        header_end = header_offset + len(header)
        size = _aligned(header_end)
        buffer, reused = _buffer(size, allocate)
        if reused:
            for start, end, zeros in self.gaps:
                buffer[start:end] = zeros
            buffer[header_end:] = bytes(size - header_end)
        entry_start = _JOIN_HEAD.size + _JOIN_ENTRY.size
        buffer[: _JOIN_HEAD.size] = self.head
        _JOIN_ENTRY.pack_into(buffer, _JOIN_HEAD.size, header_offset, len(header))
        buffer[entry_start : self.table_end] = self.entries_after_header
        table_offset = self.table_offset
        buffer[table_offset : table_offset + len(self.table)] = self.table
        for array, offset, length in zip(arrays, self.array_offsets, self.lengths):
            if length >= _UNLOCKED_COPY_BYTES:
                # numpy copies a large array without holding the GIL, so the link thread can
                # answer acks and keep sending meanwhile (bytearray slicing holds it).
                np.copyto(np.ndarray(array.shape, array.dtype, buffer, offset), array, casting="no")
            elif length:
                try:
                    view = memoryview(array).cast("B")
                except TypeError:  # not C-contiguous
                    view = memoryview(np.ascontiguousarray(array)).cast("B")
                buffer[offset : offset + length] = view
        buffer[header_offset:header_end] = header
        return buffer


def split_frames(data: Any, limits: WireLimits = DEFAULT_LIMITS) -> list[memoryview]:
    """Views of the frames packed by ``join_frames`` (after any prefix has been cut off)."""
    view = memoryview(data).cast("B")
    size = view.nbytes
    if size > limits.max_message_bytes:
        raise DecodeError(f"message is {size} bytes; the limit is {limits.max_message_bytes}")
    if size < _JOIN_HEAD.size:
        raise DecodeError(f"message is {size} bytes, shorter than its {_JOIN_HEAD.size}-byte frame table head")
    magic, count = _JOIN_HEAD.unpack_from(view)
    if magic != _JOIN_MAGIC:
        raise DecodeError(f"not a robot-stack message (starts with {bytes(magic)!r}, expected {_JOIN_MAGIC!r})")
    if not 1 <= count <= limits.max_frames:
        raise DecodeError(f"message declares {count} frames; 1 to {limits.max_frames} are allowed")
    table_end = _JOIN_HEAD.size + count * _JOIN_ENTRY.size
    if table_end > size:
        raise DecodeError(f"frame table of {count} entries does not fit in a {size}-byte message")
    frames = []
    for index, (offset, length) in enumerate(_JOIN_ENTRY.iter_unpack(view[_JOIN_HEAD.size : table_end])):
        if offset < table_end or offset + length > size:
            raise DecodeError(f"frame {index} ({length} bytes at {offset}) lies outside the {size}-byte message")
        frames.append(view[offset : offset + length])
    return frames
