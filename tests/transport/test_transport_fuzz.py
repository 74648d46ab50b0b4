"""Fuzzing the receiving side: whatever bytes arrive, decoding ends in a message or a DecodeError.

A learner and its actors read frames from the network, so ``decode``, the weights
assembler and the safetensors check must refuse malformed input with ``DecodeError``
(``VersionMismatch`` is one) and never fail any other way, allocate without bound or hang.
The inputs are random frames, and valid messages of every type mutated: bytes flipped,
frames cut, dropped, repeated or added, header fields replaced by random msgpack.
"""

import json
import struct

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from robot_stack.transport.messages import (
    MESSAGE_TYPES,
    Ack,
    ArraySpec,
    Event,
    Heartbeat,
    Hello,
    Refuse,
    Stats,
    TransitionBatch,
    WeightsChunk,
    Welcome,
    decode,
    encode,
    pack,
    unpack,
)
from robot_stack.transport.weights import (
    WeightsAssembler,
    WeightsUpdate,
    check_safetensors,
    chunk_weights,
    pack_weights,
    unpack_weights,
)
from robot_stack.transport.wire import PROTOCOL_VERSION, DecodeError, WireLimits

MESSAGE_CLASSES = tuple(MESSAGE_TYPES.values())
LIMITS = WireLimits(max_message_bytes=1 << 20, max_header_bytes=1 << 16, max_frames=64)
FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PREFIX = b"RSTP" + struct.pack("<H", PROTOCOL_VERSION)

BLOBS = [
    pack_weights({"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3, dtype=np.float16)}),
    pack_weights({"w": np.arange(10, dtype=np.int64)}),
]
VALID_MESSAGES = [
    Hello("actor-0", "pick_cube", "abc", {"image": ArraySpec("|u1", (8, 8, 3))}, {"a": ArraySpec("<f4", (7,))}, 3),
    Welcome("learner", "abc", 4, 2, 3, 0.5),
    Refuse("spec mismatch", 1, 1, False),
    TransitionBatch(
        "abc",
        5,
        {
            "image": np.arange(2 * 8 * 8 * 3, dtype=np.uint8).reshape(2, 8, 8, 3),
            "action": np.linspace(-1, 1, 14, dtype=np.float32).reshape(2, 7),
            "done": np.array([False, True]),
            "label": np.array(["ab", "c"], dtype="U2"),
        },
        {"episode": 1, "nested": [None, {"x": b"\x00"}]},
        12.5,
    ),
    TransitionBatch("abc", 6, {}),
    Ack("abc", 5, 3, True),
    *chunk_weights(2, BLOBS[0], 40),
    Heartbeat("actor-0", 1.0),
    Stats("actor-0", {"return": 1.5, "jitter_ms": [0.1, 0.2]}),
    Event("actor-0", "episode_end", {"success": True, "steps": 200}),
]
VALID_FRAMES = [[bytes(frame) for frame in encode(message)] for message in VALID_MESSAGES]

msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=4)),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8) | st.binary(max_size=4), children, max_size=4),
    max_leaves=12,
)
# Values a decoder is most likely to mistake for valid ones.
plausible_values = (
    msgpack_values
    | st.sampled_from(["<f4", "|u1", "|O", "|V8", "S0", "<U0", ">c16", "transitions", "weights", "ack", "arrays"])
    | st.lists(st.integers(-2, 2**30), max_size=9)
    | st.lists(st.sampled_from(["a", "<f4", "|u1", [], [2], [0, 3]]), max_size=3)
)
header_keys = st.sampled_from(
    ["type", "arrays", "seq", "stream_id", "info", "version", "index", "count", "total_bytes", "blob_id", "crc32", "payload",
     "observation_spec", "values", "detail", "sent_time", "extra"]
) | st.text(max_size=6) | st.binary(max_size=4)


def decoded_or_refused(frames, limits=LIMITS):
    """The decoded message, or None when it was refused with a DecodeError; anything else fails."""
    try:
        message = decode(frames, limits)
    except DecodeError:
        return None
    assert isinstance(message, MESSAGE_CLASSES)
    return message


@st.composite
def mutated_frames(draw):
    frames = [bytearray(frame) for frame in draw(st.sampled_from(VALID_FRAMES))]
    for _ in range(draw(st.integers(1, 3))):
        operations = ["flip", "truncate", "drop", "duplicate", "append", "splice", "replace_field"]
        operation = draw(st.sampled_from(operations))
        index = draw(st.integers(0, max(0, len(frames) - 1)))
        if operation == "flip" and frames and frames[index]:
            last = len(frames[index]) - 1
            # Half the flips land past the header's prefix, where the msgpack and array bytes are.
            position = draw(st.integers(0, last) | st.integers(min(len(PREFIX), last), last))
            frames[index][position] ^= draw(st.integers(1, 255))
        elif operation == "truncate" and frames:
            frames[index] = frames[index][: draw(st.integers(0, len(frames[index])))]
        elif operation == "drop" and frames:
            del frames[index]
        elif operation == "duplicate" and frames:
            frames.insert(index, bytearray(frames[index]))
        elif operation == "append":
            frames.append(bytearray(draw(st.binary(max_size=64))))
        elif operation == "splice" and frames:
            # Random msgpack at a random place in a frame (in the header it replaces the rest of it).
            packed = msgpack.packb(draw(msgpack_values), use_bin_type=True)
            end = len(frames[index])
            position = draw(st.integers(0, end) | st.integers(min(len(PREFIX), end), end))
            frames[index][position:] = packed
        elif operation == "replace_field" and frames:
            header = _header_of(frames[0])
            if header is not None:
                keys = st.sampled_from(sorted(header, key=str)) | header_keys if header else header_keys
                header[draw(keys)] = draw(plausible_values)
                frames[0] = bytearray(PREFIX + msgpack.packb(header, use_bin_type=True))
    return [bytes(frame) for frame in frames]


@st.composite
def reheadered_frames(draw):
    """A valid message whose header has fields replaced by plausible values, or removed."""
    frames = list(draw(st.sampled_from(VALID_FRAMES)))
    header = _header_of(frames[0])
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(sorted(header, key=str)) | header_keys)
        if draw(st.integers(0, 4)) == 0:
            header.pop(key, None)
        else:
            header[key] = draw(plausible_values)
    frames[0] = PREFIX + msgpack.packb(header, use_bin_type=True)
    return frames


def _header_of(frame):
    try:
        header = msgpack.unpackb(bytes(frame[len(PREFIX) :]), raw=False, strict_map_key=False)
    except Exception:
        return None
    return header if isinstance(header, dict) else None


@FUZZ
@given(st.lists(st.binary(max_size=80), max_size=6))
@example([])
@example([b""])
@example([PREFIX])
@example([PREFIX + b"\x80"])
@example([b"RSTP\x02\x00\x80"])
def test_decoding_random_frames_gives_a_message_or_a_decode_error(frames):
    decoded_or_refused(frames)


@FUZZ
@given(st.lists(st.binary(max_size=80), min_size=1, max_size=6))
def test_decoding_random_bytes_after_a_valid_prefix_gives_a_message_or_a_decode_error(frames):
    decoded_or_refused([PREFIX + frames[0], *frames[1:]])


@FUZZ
@given(st.dictionaries(header_keys, plausible_values, max_size=8), st.lists(st.binary(max_size=32), max_size=4))
@example({"type": "transitions", "stream_id": "s", "seq": 0, "arrays": [["a", "|u1", [2**28] * 4]]}, [b""])
@example({"type": "transitions", "stream_id": "s", "seq": 0, "arrays": [["a", "S0", [5]]]}, [b""])
@example({"type": "ack", "stream_id": "s", "received_seq": 0, "committed_seq": 0, "arrays": [], b"k": 1, "z": 2}, [])
def test_decoding_random_msgpack_headers_gives_a_message_or_a_decode_error(header, frames):
    decoded_or_refused([PREFIX + msgpack.packb(header, use_bin_type=True), *frames])


@pytest.mark.parametrize("index", range(len(VALID_FRAMES)), ids=lambda i: VALID_MESSAGES[i].TYPE)
def test_every_unmutated_message_decodes(index):
    message = decoded_or_refused(VALID_FRAMES[index])

    assert type(message) is type(VALID_MESSAGES[index])


@FUZZ
@given(mutated_frames())
def test_decoding_mutated_messages_gives_a_message_or_a_decode_error(frames):
    decoded_or_refused(frames)


@FUZZ
@given(reheadered_frames())
def test_decoding_messages_with_header_fields_replaced_gives_a_message_or_a_decode_error(frames):
    decoded_or_refused(frames)


@st.composite
def chunk_streams(draw):
    """Chunks of two weights versions, some mutated, in a random order."""
    frames = [
        [bytearray(frame) for frame in encode(chunk)]
        for version, blob in enumerate(BLOBS, start=1)
        for chunk in chunk_weights(version, blob, draw(st.sampled_from([16, 50, 1000])))
    ]
    frames = draw(st.permutations(frames))
    stream = []
    for message in frames[: draw(st.integers(1, len(frames)))]:
        if draw(st.booleans()):
            header = _header_of(message[0])
            key = draw(st.sampled_from(["version", "index", "count", "total_bytes", "blob_id", "crc32"]))
            header[key] = draw(st.integers(-1, 300) | st.binary(min_size=16, max_size=16))
            message[0] = bytearray(PREFIX + msgpack.packb(header, use_bin_type=True))
        if draw(st.booleans()) and len(message) > 1 and message[1]:
            message[1][draw(st.integers(0, len(message[1]) - 1))] ^= draw(st.integers(1, 255))
        if draw(st.booleans()) and len(message) > 1:
            message[1] = message[1][: draw(st.integers(0, len(message[1])))]
        stream.append([bytes(frame) for frame in message])
    return stream


@FUZZ
@given(chunk_streams())
def test_the_assembler_fed_mutated_chunks_yields_only_intact_blobs_or_refuses(stream):
    assembler = WeightsAssembler(max_blob_bytes=4096)
    for frames in stream:
        chunk = decoded_or_refused(frames)
        if not isinstance(chunk, WeightsChunk):
            continue
        try:
            update = assembler.add(chunk, now=0.0)
        except DecodeError:
            continue

        assert update is None or (isinstance(update, WeightsUpdate) and update.blob in BLOBS)


@st.composite
def safetensors_like(draw):
    """Blobs with a plausible safetensors framing: a length, a JSON-ish header, data."""
    entry = st.fixed_dictionaries(
        {
            "dtype": st.sampled_from(["F32", "I64", "U8", "F16", "BF16", "BOOL", "F8_E4M3", "XYZ"]),
            "shape": st.lists(st.integers(0, 8), max_size=3),
        },
        optional={"data_offsets": st.lists(st.integers(-5, 2**65) | st.text(max_size=2) | st.none(), max_size=3)},
    )
    header = draw(
        st.dictionaries(st.text(max_size=6), entry | st.integers() | st.lists(st.integers(0, 64), max_size=3), max_size=4)
        | st.lists(st.integers(), max_size=3)
    )
    text = json.dumps(header).encode()
    if draw(st.booleans()):
        text = text[: draw(st.integers(0, len(text)))]
    declared = draw(st.just(len(text)) | st.integers(0, 2**64 - 1))
    return struct.pack("<Q", declared) + text + draw(st.binary(max_size=64))


@FUZZ
@given(st.binary(max_size=200) | safetensors_like())
@example(struct.pack("<Q", 30000) + b"[" * 30000)
@example(struct.pack("<Q", 5000) + b"7" * 5000)
@example(struct.pack("<Q", 4) + b"\xff\xfe\x00\x00")
def test_check_safetensors_names_tensors_or_refuses_with_a_decode_error(blob):
    try:
        names = check_safetensors(blob)
    except DecodeError:
        return

    assert all(isinstance(name, str) for name in names)


@FUZZ
@given(st.binary(max_size=200) | safetensors_like())
def test_unpack_weights_gives_named_arrays_or_refuses_with_a_decode_error(blob):
    try:
        tensors = unpack_weights(blob)
    except DecodeError:
        return

    assert all(isinstance(name, str) and isinstance(array, np.ndarray) for name, array in tensors.items())


@FUZZ
@given(st.integers(0, len(BLOBS[0]) - 1), st.integers(1, 255), st.integers(0, len(BLOBS[0])))
def test_unpack_weights_of_a_cut_and_flipped_blob_gives_tensors_or_a_decode_error(position, flip, length):
    blob = bytearray(BLOBS[0])
    blob[position] ^= flip

    try:
        tensors = unpack_weights(bytes(blob[:length]))
    except DecodeError:
        return

    assert sorted(tensors) == sorted(check_safetensors(bytes(blob[:length])))


# --------------------------------------------------------------------------- the one-frame envelope

PACKED = [bytes(pack(message)) for message in VALID_MESSAGES]


def unpacked_or_refused(data):
    try:
        message = unpack(data, LIMITS)
    except DecodeError:
        return None
    assert isinstance(message, MESSAGE_CLASSES)
    return message


@FUZZ
@given(st.binary(max_size=400))
@example(b"RSMF" + struct.pack("<I", 1))
@example(b"RSMF" + struct.pack("<I", 2**32 - 1))
@example(b"RSMF" + struct.pack("<IQQ", 1, 24, 2**63))
def test_unpacking_random_bytes_gives_a_message_or_a_decode_error(data):
    unpacked_or_refused(data)


@FUZZ
@given(st.sampled_from(PACKED), st.data())
def test_unpacking_mutated_packed_messages_gives_a_message_or_a_decode_error(packed, data):
    buffer = bytearray(packed)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(buffer) - 1))
        buffer[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(buffer)))
    unpacked_or_refused(bytes(buffer[:cut]) if data.draw(st.booleans()) else bytes(buffer))
