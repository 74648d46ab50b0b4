"""The messages actors and learners exchange, and their encoding.

| message          | direction          | carries |
|------------------|--------------------|---------|
| Hello            | actor -> learner   | actor id, task id, stream id, observation/action spec, weights version held |
| Welcome          | learner -> actor   | the stream's received and committed sequence numbers, latest weights version |
| Refuse           | learner -> actor   | why the learner will not talk to this actor (both versions on a mismatch); retry or not |
| TransitionBatch  | actor -> learner   | sequence number, arrays with a leading transition axis, scalar info |
| Ack              | learner -> actor   | highest sequence received, highest committed (safe in a checkpoint) |
| WeightsChunk     | learner -> actors  | weights version, chunk index/count, blob size and id, chunk CRC-32, chunk bytes |
| Heartbeat        | both               | sender id, send time |
| Stats            | actor -> learner   | named scalars (episode return, loop jitter, ...) |
| Event            | actor -> learner   | a named event with scalar detail (best-effort; episode ends ride in batches) |

``encode(message)`` gives the frames; ``decode(frames)`` checks every field's type and
returns the message, or raises ``DecodeError`` naming the message type and field.
``pack``/``unpack`` do the same for the single ZeroMQ frame the links send;
``pack_transitions`` is ``pack`` of a ``TransitionBatch``, byte for byte, for the actor's
hot path (the array layout's work is done once per layout).
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Callable, ClassVar, Mapping, Optional, Sequence, Union

import numpy as np

from robot_stack.data.spec import ArraySpec, Spec
from robot_stack.transport.wire import (
    DEFAULT_LIMITS,
    PROTOCOL_VERSION,
    Buffer,
    DecodeError,
    PackPlan,
    VersionMismatch,
    WireLimits,
    decode_frames,
    dtype_from_wire,
    encode_frames,
    encode_header,
    join_frames,
    shape_from_wire,
    split_frames,
)

Scalar = Union[str, int, float, bool, None]
MAX_ID_LENGTH = 128
MAX_INFO_DEPTH = 4


@dataclass(frozen=True)
class Hello:
    TYPE: ClassVar[str] = "hello"
    actor_id: str
    task_id: str
    stream_id: str
    observation_spec: Spec = field(default_factory=dict)
    action_spec: Spec = field(default_factory=dict)
    weights_version: int = -1


@dataclass(frozen=True)
class Welcome:
    TYPE: ClassVar[str] = "welcome"
    learner_id: str
    stream_id: str
    received_seq: int
    committed_seq: int
    weights_version: int
    heartbeat_interval_s: float


@dataclass(frozen=True)
class Refuse:
    TYPE: ClassVar[str] = "refuse"
    reason: str
    learner_protocol: int = PROTOCOL_VERSION
    actor_protocol: int = PROTOCOL_VERSION
    # True when the actor should simply say hello again (the learner restarted and does
    # not know this connection); False when retrying cannot help (versions, specs).
    retry: bool = False


@dataclass(frozen=True)
class TransitionBatch:
    TYPE: ClassVar[str] = "transitions"
    stream_id: str
    seq: int
    arrays: Mapping[str, np.ndarray]
    info: Mapping[str, Any] = field(default_factory=dict)
    sent_time: float = 0.0

    @property
    def count(self) -> int:
        return next(iter(self.arrays.values())).shape[0] if self.arrays else 0

    @property
    def nbytes(self) -> int:
        return sum(array.nbytes for array in self.arrays.values())


@dataclass(frozen=True)
class Ack:
    TYPE: ClassVar[str] = "ack"
    stream_id: str
    received_seq: int
    committed_seq: int
    # Set when the learner saw a gap: the actor resends from received_seq + 1.
    rewind: bool = False


@dataclass(frozen=True)
class WeightsChunk:
    TYPE: ClassVar[str] = "weights"
    version: int
    index: int
    count: int
    total_bytes: int
    blob_id: bytes  # 16 bytes naming the published blob: every chunk of it carries the same
    crc32: int  # of this chunk's payload
    payload: Buffer = b""


@dataclass(frozen=True)
class Heartbeat:
    TYPE: ClassVar[str] = "heartbeat"
    sender_id: str
    sent_time: float


@dataclass(frozen=True)
class Stats:
    TYPE: ClassVar[str] = "stats"
    sender_id: str
    values: Mapping[str, Any]


@dataclass(frozen=True)
class Event:
    TYPE: ClassVar[str] = "event"
    sender_id: str
    kind: str
    detail: Mapping[str, Any] = field(default_factory=dict)


Message = Union[Hello, Welcome, Refuse, TransitionBatch, Ack, WeightsChunk, Heartbeat, Stats, Event]
MESSAGE_TYPES: dict[str, type] = {
    cls.TYPE: cls for cls in (Hello, Welcome, Refuse, TransitionBatch, Ack, WeightsChunk, Heartbeat, Stats, Event)
}

# Each message type's fields in order, and whether a received message must carry it.
_FIELDS: dict[type, tuple[tuple[str, bool], ...]] = {
    cls: tuple((item.name, item.default is MISSING and item.default_factory is MISSING) for item in fields(cls))
    for cls in MESSAGE_TYPES.values()
}

# --------------------------------------------------------------------------- encode


def encode(message: Message) -> list[Buffer]:
    """Frames for ``socket.send_multipart(frames, copy=False)``."""
    header: dict[str, Any] = {"type": message.TYPE}
    arrays: dict[str, np.ndarray] = {}
    for item in fields(message):
        value = getattr(message, item.name)
        if isinstance(message, TransitionBatch) and item.name == "arrays":
            arrays = _batch_arrays(value)
        elif isinstance(message, WeightsChunk) and item.name == "payload":
            arrays = {"payload": np.frombuffer(value, dtype=np.uint8)}
        elif item.name.endswith("_spec"):
            header[item.name] = {name: [spec.dtype, list(spec.shape)] for name, spec in value.items()}
        elif item.name in ("info", "values", "detail"):
            header[item.name] = _checked_info(value, f"{message.TYPE}.{item.name}")
        else:
            header[item.name] = value
    return encode_frames(header, arrays)


def pack(message: Message, prefix: bytes = b"", allocate: Optional[Callable[[int], bytearray]] = None) -> bytearray:
    """The message as one buffer for ``socket.send(buffer, copy=False)``; ``allocate(size)``
    may supply a reused buffer of that size (see ``join_frames``)."""
    return join_frames(encode(message), prefix, allocate)


_PLANS: dict[tuple, PackPlan] = {}  # array layout -> where its parts go
_PLAN_LIMIT = 64


def pack_transitions(
    stream_id: str,
    seq: int,
    arrays: Mapping[str, np.ndarray],
    info: Optional[Mapping[str, Any]] = None,
    sent_time: float = 0.0,
    allocate: Optional[Callable[[int], bytearray]] = None,
) -> bytearray:
    """``pack(TransitionBatch(stream_id, seq, arrays, info, sent_time))``, byte for byte, with
    the per-array work (checks, the array table, offsets) done once per array layout."""
    names = tuple(arrays)
    values = tuple(arrays.values())
    try:
        key = (names, tuple([array.dtype for array in values]), tuple([array.shape for array in values]))
    except AttributeError:  # not all numpy arrays: the general path converts them
        return pack(TransitionBatch(stream_id, seq, arrays, dict(info or {}), sent_time), allocate=allocate)
    plan = _PLANS.get(key)
    if plan is None:
        _batch_arrays(arrays)
        plan = PackPlan(names, [np.ascontiguousarray(array) for array in values])
        if len(_PLANS) < _PLAN_LIMIT:
            _PLANS[key] = plan
    header = {
        "type": TransitionBatch.TYPE,
        "stream_id": stream_id,
        "seq": seq,
        "info": _checked_info(dict(info or {}), "transitions.info"),
        "sent_time": sent_time,
    }
    return plan.pack(encode_header(header), values, allocate)


def unpack(data: Any, limits: WireLimits = DEFAULT_LIMITS) -> Message:
    """Checked message from one received buffer; arrays view the buffer."""
    return decode(split_frames(data, limits), limits)


def _batch_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    counts = {}
    for name, array in arrays.items():
        shape = array.shape if isinstance(array, np.ndarray) else np.shape(array)
        counts[name] = shape[0] if shape else None
    if any(count is None for count in counts.values()) or len(set(counts.values())) > 1:
        raise ValueError(f"every array of a transition batch needs the same leading (transition) axis; got {counts}")
    return dict(arrays)


def _checked_info(value: Any, where: str, depth: int = 0) -> Any:
    """Info travels as msgpack: scalars, lists and string-keyed maps of them, nothing else."""
    if value is None or isinstance(value, (str, bool, int, bytes)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if depth >= MAX_INFO_DEPTH:
        raise ValueError(f"{where} nests deeper than {MAX_INFO_DEPTH} levels")
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            raise ValueError(f"{where} has a non-string key")
        return {key: _checked_info(item, f"{where}.{key}", depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_checked_info(item, f"{where}[]", depth + 1) for item in value]
    raise ValueError(f"{where} holds a {type(value).__name__}; only scalars, lists and maps travel as info")


# --------------------------------------------------------------------------- decode


def decode(frames: Sequence[Any], limits: WireLimits = DEFAULT_LIMITS) -> Message:
    """Checked message from received frames; raises DecodeError (or VersionMismatch)."""
    header, arrays = decode_frames(frames, limits)
    kind = header.pop("type", None)
    cls = MESSAGE_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise DecodeError(f"unknown message type {kind!r} (known: {sorted(MESSAGE_TYPES)})")
    if cls is TransitionBatch:
        batch = _plain_batch(header, arrays)
        if batch is not None:
            return batch
        header["arrays"] = _received_batch_arrays(arrays)
    elif cls is WeightsChunk:
        payload = arrays.pop("payload", None)
        if payload is None or payload.dtype != np.uint8 or payload.ndim != 1 or arrays:
            raise DecodeError("weights message must carry exactly one uint8 'payload' array")
        header["payload"] = memoryview(payload).cast("B") if payload.size else b""
    elif arrays:
        raise DecodeError(f"{kind} message carries arrays {sorted(arrays)}; it takes none")
    kwargs = {}
    for name, required in _FIELDS[cls]:
        if name not in header:
            if required:
                raise DecodeError(f"{kind}.{name} is missing")
            continue
        kwargs[name] = _check_field(cls, name, header.pop(name), f"{kind}.{name}", limits)
    if header:
        raise DecodeError(f"{kind} message has unknown field(s) {sorted(header, key=str)}")
    message = cls(**kwargs)
    if isinstance(message, WeightsChunk):
        _check_chunk(message)
    return message


_BATCH_FIELDS = {"stream_id", "seq", "info", "sent_time"}


def _plain_batch(header: dict, arrays: dict[str, np.ndarray]) -> Optional[TransitionBatch]:
    """A transitions message whose fields all have exactly the usual types and valid values,
    built without the general field-by-field walk; None sends anything else down that walk
    (which accepts everything this accepts, and names what is wrong with the rest)."""
    if header.keys() != _BATCH_FIELDS:
        return None
    stream_id, seq, info, sent_time = header["stream_id"], header["seq"], header["info"], header["sent_time"]
    if not (
        type(seq) is int
        and -1 <= seq < 2**63
        and type(stream_id) is str
        and 0 < len(stream_id) <= MAX_ID_LENGTH
        and stream_id.isprintable()
        and type(info) is dict
        and type(sent_time) is float
        and math.isfinite(sent_time)
    ):
        return None
    return TransitionBatch(stream_id, seq, _received_batch_arrays(arrays), info, sent_time)


def _received_batch_arrays(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    counts = {array.shape[0] if array.ndim else None for array in arrays.values()}
    if None in counts or len(counts) > 1:
        raise DecodeError(
            "transitions message: arrays disagree on the transition count "
            f"({ {name: array.shape for name, array in arrays.items()} })"
        )
    return arrays


_INT_FIELDS = {"weights_version", "received_seq", "committed_seq", "seq", "version", "index", "count", "total_bytes",
               "learner_protocol", "actor_protocol"}
_FLOAT_FIELDS = {"heartbeat_interval_s", "sent_time"}
_ID_FIELDS = {"actor_id", "task_id", "stream_id", "learner_id", "sender_id", "kind"}


def _check_field(cls: type, name: str, value: Any, where: str, limits: WireLimits) -> Any:
    if name in _INT_FIELDS:
        if not isinstance(value, int) or isinstance(value, bool) or not -1 <= value < 2**63:
            raise DecodeError(f"{where} must be an integer >= -1, got {value!r}")
        return value
    if name in _FLOAT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise DecodeError(f"{where} must be a finite number, got {value!r}")
        return float(value)
    if name in _ID_FIELDS:
        if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_LENGTH or not value.isprintable():
            raise DecodeError(f"{where} must be a printable string of 1-{MAX_ID_LENGTH} characters, got {value!r}")
        return value
    if name == "reason":
        if not isinstance(value, str):
            raise DecodeError(f"{where} must be a string")
        return value
    if name in ("rewind", "retry"):
        if not isinstance(value, bool):
            raise DecodeError(f"{where} must be true or false, got {value!r}")
        return value
    if name == "blob_id":
        if not isinstance(value, bytes) or len(value) != 16:
            raise DecodeError(f"{where} must be 16 bytes")
        return value
    if name == "crc32":
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**32:
            raise DecodeError(f"{where} must be an unsigned 32-bit integer, got {value!r}")
        return value
    if name.endswith("_spec"):
        return _spec_from_wire(value, where, limits)
    if name in ("info", "values", "detail"):
        if not isinstance(value, dict):
            raise DecodeError(f"{where} must be a map")
        return value
    if name in ("arrays", "payload"):
        return value
    raise DecodeError(f"{where}: no rule for this field")  # pragma: no cover - every field has a rule


def _spec_from_wire(value: Any, where: str, limits: WireLimits) -> dict[str, ArraySpec]:
    if not isinstance(value, dict):
        raise DecodeError(f"{where} must be a map of name -> [dtype, shape]")
    spec = {}
    for name, entry in value.items():
        if not (isinstance(entry, list) and len(entry) == 2):
            raise DecodeError(f"{where}.{name} must be [dtype, shape], got {entry!r}")
        try:
            dtype = dtype_from_wire(entry[0])
            shape = shape_from_wire(entry[1], limits)
        except DecodeError as error:
            raise DecodeError(f"{where}.{name}: {error}") from None
        spec[name] = ArraySpec(dtype.str, shape)
    return spec


def _check_chunk(chunk: WeightsChunk) -> None:
    if chunk.count < 1 or not 0 <= chunk.index < chunk.count or chunk.total_bytes < 0 or chunk.version < 0:
        raise DecodeError(
            f"weights chunk {chunk.index}/{chunk.count} of version {chunk.version} "
            f"({chunk.total_bytes} bytes) has inconsistent numbering"
        )
    if len(chunk.payload) > chunk.total_bytes:
        raise DecodeError(f"weights chunk payload ({len(chunk.payload)} bytes) exceeds the blob size {chunk.total_bytes}")


def spec_mismatch(expected: Spec, received: Spec, what: str) -> list[str]:
    """Human-readable differences between two specs (empty when they agree)."""
    problems = []
    for name in sorted(set(expected) | set(received)):
        if name not in received:
            problems.append(f"{what} '{name}' expected {expected[name].describe()}, the actor sends none")
        elif name not in expected:
            problems.append(f"{what} '{name}' ({received[name].describe()}) is not expected by the learner")
        elif expected[name] != received[name]:
            problems.append(
                f"{what} '{name}': learner expects {expected[name].describe()}, actor sends {received[name].describe()}"
            )
    return problems


__all__ = [
    "Ack",
    "DecodeError",
    "Event",
    "Heartbeat",
    "Hello",
    "MESSAGE_TYPES",
    "Message",
    "Refuse",
    "Stats",
    "TransitionBatch",
    "VersionMismatch",
    "WeightsChunk",
    "Welcome",
    "decode",
    "encode",
    "pack",
    "pack_transitions",
    "spec_mismatch",
    "unpack",
]
