"""Specification of the transport's messages: what survives the wire, and what is refused.

Every message type goes through ``encode`` and ``decode`` both as the frames ``encode``
returns (views, as ZeroMQ sends them with copy=False) and as plain ``bytes`` (as they
arrive). Malformed input is refused with a ``DecodeError`` that names the problem.
Weights travel as a safetensors blob cut into chunks and reassembled by the actor.
"""

import json
import struct
from dataclasses import fields, replace

import msgpack
import numpy as np
import pytest
import safetensors.numpy

from robot_stack.data.spec import ArraySpec
from robot_stack.transport.messages import (
    MESSAGE_TYPES,
    Ack,
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
    pack_transitions,
    unpack,
)
from robot_stack.transport.weights_stream import (
    TrainingProgress,
    WeightsAssembler,
    check_safetensors,
    chunk_weights,
    pack_weights,
    unpack_weights,
)
from robot_stack.transport.wire import PROTOCOL_VERSION, DecodeError, VersionMismatch, WireLimits, split_frames

BLOB_ID = bytes(range(16))
NESTED_INFO = {
    "episode": 7,
    "success": True,
    "return": -1.25,
    "note": None,
    "raw": b"\x00\xffbytes",
    "contacts": [1, [2.5, None], {"finger": b"\x01", "force_n": [0.0, 3.5]}],
    "reset": {"kind": "scripted", "attempts": [None, {"ok": False}]},
}

EXAMPLES = {
    "hello": Hello(
        actor_id="actor-0",
        task_id="pick_cube",
        stream_id="5f0c1e",
        observation_spec={"image": ArraySpec("|u1", (128, 128, 3)), "state": ArraySpec("<f4", (7,))},
        action_spec={"action": ArraySpec("<f4", (7,))},
        weights_version=12,
    ),
    "welcome": Welcome(
        learner_id="learner",
        stream_id="5f0c1e",
        received_seq=41,
        committed_seq=39,
        weights_version=12,
        heartbeat_interval_s=0.5,
    ),
    "refuse": Refuse(reason="protocol version mismatch", learner_protocol=2, actor_protocol=1, retry=True),
    "transitions": TransitionBatch(
        stream_id="5f0c1e",
        seq=42,
        arrays={
            "image": np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3),
            "action": np.array([[0.1, -0.2], [0.3, 0.4]], dtype=np.float32),
            "done": np.array([False, True]),
        },
        info=NESTED_INFO,
        sent_time=1234.5,
    ),
    "ack": Ack(stream_id="5f0c1e", received_seq=42, committed_seq=40, rewind=True),
    "weights": WeightsChunk(
        version=3, index=1, count=4, total_bytes=40, blob_id=BLOB_ID, crc32=0xFFFFFFFF, payload=b"0123456789"
    ),
    "heartbeat": Heartbeat(sender_id="actor-0", sent_time=99.25),
    "stats": Stats(sender_id="actor-0", values={"episode_return": 3.5, "loop_jitter_ms": [0.1, 0.4], "tag": None}),
    "event": Event(sender_id="actor-0", kind="intervention", detail={"start": True, "source": b"spacemouse"}),
}

HEADERS = {  # a valid header for each message type, as it appears on the wire
    "ack": {"type": "ack", "stream_id": "s", "received_seq": 1, "committed_seq": 0},
    "transitions": {"type": "transitions", "stream_id": "s", "seq": 0},
}


def as_bytes(frames):
    return [bytes(frame) for frame in frames]


def wire_frames(header, array_entries=(), array_frames=(), version=PROTOCOL_VERSION, magic=b"RSTP"):
    """Frames built by hand, so a test can put on the wire what ``encode`` never would."""
    table = msgpack.packb([list(entry) for entry in array_entries], use_bin_type=True)
    return [magic + struct.pack("<H", version) + msgpack.packb(dict(header), use_bin_type=True), table, *array_frames]


def assert_same_message(received, sent):
    assert type(received) is type(sent)
    for item in fields(sent):
        got, expected = getattr(received, item.name), getattr(sent, item.name)
        if item.name == "arrays":
            assert sorted(got) == sorted(expected)
            for name, array in expected.items():
                assert got[name].dtype == array.dtype and got[name].shape == array.shape, name
                np.testing.assert_array_equal(got[name], array)
        elif item.name == "payload":
            assert bytes(got) == bytes(expected)
        else:
            assert got == expected, item.name


def batch_with(**arrays):
    return TransitionBatch(stream_id="s", seq=0, arrays=arrays)


# --------------------------------------------------------------------------- round trips


def test_the_examples_cover_every_message_type():
    assert sorted(EXAMPLES) == sorted(MESSAGE_TYPES)


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_every_message_type_survives_encode_and_decode(kind):
    message = EXAMPLES[kind]

    received = decode(encode(message))

    assert_same_message(received, message)


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_every_message_type_survives_the_trip_through_plain_bytes(kind):
    message = EXAMPLES[kind]

    received = decode(as_bytes(encode(message)))

    assert_same_message(received, message)


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_every_message_type_survives_packing_into_one_frame_behind_a_topic(kind):
    message = EXAMPLES[kind]
    packed = bytes(pack(message, prefix=b"weights/all\0"))

    received = unpack(memoryview(packed)[len(b"weights/all\0") :])

    assert_same_message(received, message)


def test_packed_frames_start_at_64_byte_offsets_and_hold_the_encoded_frames():
    message = EXAMPLES["transitions"]
    packed = bytes(pack(message))

    frames = split_frames(packed)

    count = struct.unpack_from("<I", packed, 4)[0]
    offsets = [struct.unpack_from("<Q", packed, 8 + 16 * i)[0] for i in range(count)]
    assert count == len(encode(message)) and all(offset % 64 == 0 for offset in offsets)
    assert [frame.tobytes() for frame in frames] == [bytes(original) for original in encode(message)]


def test_the_array_table_and_arrays_lie_first_at_fixed_offsets_and_the_header_last():
    arrays = {"image": np.ones((1, 8, 8, 3), np.uint8), "state": np.ones((1, 5), np.float32)}
    short = bytes(pack(TransitionBatch("s", 1, arrays)))
    long = bytes(pack(TransitionBatch("s", 2**40, arrays, {"note": "x" * 100})))

    def offsets(packed):
        return [struct.unpack_from("<Q", packed, 8 + 16 * i)[0] for i in range(4)]

    assert offsets(short)[1:] == offsets(long)[1:]  # the table and the arrays
    assert offsets(short)[0] == offsets(long)[0] > max(offsets(short)[1:])  # the header, after them


def make_arrays(count: int = 3) -> dict:
    rng = np.random.default_rng(count)
    return {
        "obs/image": rng.integers(0, 256, (count, 16, 16, 3), dtype=np.uint8),
        "obs/state": rng.standard_normal((count, 19)).astype(np.float32),
        "action": rng.standard_normal((count, 7)).astype(">f8"),
        "every_other": np.arange(count * 8, dtype=np.int64).reshape(count, 8)[:, ::2],  # not contiguous
        "nothing": np.zeros((count, 0), np.float32),
        "done": np.arange(count) % 2 == 1,
    }


def dirty(size: int) -> bytearray:
    return bytearray(b"\xa5" * size)


@pytest.mark.parametrize("count", [1, 3])
def test_pack_transitions_gives_the_bytes_pack_gives_also_in_a_dirty_reused_buffer(count):
    arrays = make_arrays(count)
    expected = bytes(pack(TransitionBatch("stream", 41, arrays, {"episode": 2}, 3.5)))

    for _ in range(2):  # the second time from the cached layout
        assert bytes(pack_transitions("stream", 41, arrays, {"episode": 2}, 3.5)) == expected
        assert bytes(pack_transitions("stream", 41, arrays, {"episode": 2}, 3.5, allocate=dirty)) == expected
    received = unpack(expected)
    assert received.seq == 41 and received.info == {"episode": 2} and received.sent_time == 3.5
    for name, array in arrays.items():
        np.testing.assert_array_equal(received.arrays[name], array)
        assert received.arrays[name].dtype == array.dtype


def test_pack_transitions_of_large_arrays_gives_the_bytes_pack_gives():
    # Arrays from 256 KB on are copied by numpy (without the GIL): also a strided one and
    # one of the other byte order.
    rng = np.random.default_rng(3)
    images = rng.integers(0, 255, (8, 128, 128, 3), np.uint8)  # 393 KB
    arrays = {
        "image": images,
        "flipped": images[:, ::-1],  # not C-contiguous
        "depth": rng.random((8, 128, 128), np.float64).astype(">f8"),
        "reward": np.ones(8, np.float32),
    }
    expected = bytes(pack(TransitionBatch("stream", 7, arrays)))

    for _ in range(2):
        assert bytes(pack_transitions("stream", 7, arrays)) == expected
        assert bytes(pack_transitions("stream", 7, arrays, allocate=dirty)) == expected
    received = unpack(expected)
    for name, array in arrays.items():
        np.testing.assert_array_equal(received.arrays[name], array)
        assert received.arrays[name].dtype == array.dtype


def test_pack_transitions_of_lists_and_scalars_takes_the_general_path():
    arrays = {"reward": [0.5, 1.0], "done": np.array([False, True])}

    packed = pack_transitions("s", 0, arrays)

    assert bytes(packed) == bytes(pack(TransitionBatch("s", 0, arrays)))
    np.testing.assert_array_equal(unpack(packed).arrays["reward"], [0.5, 1.0])


def test_pack_transitions_refuses_arrays_that_disagree_on_the_transition_count():
    with pytest.raises(ValueError, match="same leading \\(transition\\) axis"):
        pack_transitions("s", 0, {"a": np.zeros((2, 3)), "b": np.zeros((3, 3))})
    with pytest.raises(ValueError, match="same leading \\(transition\\) axis"):
        pack_transitions("s", 0, {"a": np.zeros((2, 3)), "scalar": np.float32(1.0)})


def test_messages_of_one_layout_decode_to_their_own_arrays():
    first = unpack(bytes(pack_transitions("s", 0, {"x": np.full((2, 3), 1.0, np.float32)})))
    second = unpack(bytes(pack_transitions("s", 1, {"x": np.full((2, 3), 2.0, np.float32)})))

    assert first.arrays["x"].tolist() == [[1.0] * 3] * 2 and second.arrays["x"].tolist() == [[2.0] * 3] * 2


def test_an_array_table_accepted_under_loose_limits_is_checked_again_under_tight_ones():
    frames = wire_frames(HEADERS["transitions"], [["obs", "<f4", [0, 5000]]], [b""])
    assert decode(frames).arrays["obs"].shape == (0, 5000)

    with pytest.raises(DecodeError, match="has a size that is not a non-negative integer"):
        decode(frames, WireLimits(max_message_bytes=1000))


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"seq": 3, "info": {"a": 1}, "sent_time": 2.5}, (3, {"a": 1}, 2.5)),
        ({"seq": 3, "info": {}, "sent_time": 2}, (3, {}, 2.0)),  # an integer time, as msgpack may carry it
        ({"seq": 3}, (3, {}, 0.0)),  # fields left at their defaults
    ],
    ids=["usual types", "integer time", "defaults"],
)
def test_transitions_headers_of_usual_and_unusual_but_valid_types_decode_alike(fields, expected):
    frames = wire_frames({"type": "transitions", "stream_id": "s", **fields}, [["x", "<f4", [2]]], [bytes(8)])

    message = decode(frames)

    assert (message.seq, message.info, message.sent_time) == expected and type(message.sent_time) is float
    assert message.arrays["x"].shape == (2,)


def test_a_message_without_an_array_table_part_is_refused():
    frames = wire_frames(HEADERS["ack"])[:1]

    with pytest.raises(DecodeError, match="message has a header but no array-table part"):
        decode(frames)


def test_an_array_table_that_is_not_a_list_is_refused():
    frames = wire_frames(HEADERS["ack"])
    frames[1] = msgpack.packb({"obs": "<f4"})

    with pytest.raises(DecodeError, match="array table is a dict, not a list"):
        decode(frames)


def test_a_header_carrying_an_arrays_field_is_refused():
    frames = wire_frames({**HEADERS["transitions"], "arrays": [["obs", "<f4", [1]]]}, [], [bytes(4)])

    with pytest.raises(DecodeError, match="header has an 'arrays' field"):
        decode(frames)


def test_a_packed_table_pointing_outside_the_message_is_refused():
    packed = bytearray(pack(EXAMPLES["ack"]))
    struct.pack_into("<QQ", packed, 8, 64, 10**6)

    with pytest.raises(DecodeError, match="lies outside"):
        unpack(bytes(packed))


def test_fields_left_at_their_defaults_come_back_as_the_defaults():
    message = Hello(actor_id="a", task_id="t", stream_id="s")

    received = decode(as_bytes(encode(message)))

    assert received == message


@pytest.mark.parametrize(
    "values",
    [
        np.array([True, False, True]),
        np.array([-128, 0, 127], dtype=np.int8),
        np.array([0, 1, 65535], dtype=np.uint16),
        np.array([1.5, -2.25, np.inf], dtype=">f8"),
        np.array([-(2**31), 0, 2**31 - 1], dtype=">i4"),
        np.array([1 + 2j, -3.5j, 0], dtype=np.complex64),
        np.array([0.5, -65504.0, np.nan], dtype=np.float16),
        np.array([b"gripp", b"ab", b""], dtype="S5"),
        np.array(["abc", "é", "🤖"], dtype="U3"),
    ],
    ids=lambda values: values.dtype.str,
)
def test_batch_arrays_of_every_wire_dtype_come_back_with_dtype_byte_order_and_values(values):
    message = batch_with(values=values)

    received = decode(as_bytes(encode(message)))

    assert received.arrays["values"].dtype.str == values.dtype.str
    np.testing.assert_array_equal(received.arrays["values"], values)


def test_a_zero_dimensional_array_in_a_batch_is_refused_at_encode():
    message = batch_with(reward=np.array(1.0, dtype=np.float32))

    with pytest.raises(ValueError, match="same leading \\(transition\\) axis"):
        encode(message)


@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 128, 128, 3)])
def test_empty_arrays_keep_their_shape(shape):
    message = batch_with(empty=np.zeros(shape, dtype=np.float32))

    received = decode(as_bytes(encode(message)))

    assert received.arrays["empty"].shape == shape
    assert received.arrays["empty"].dtype == np.float32


def test_non_contiguous_arrays_arrive_with_the_values_they_showed():
    cube = np.arange(4 * 6 * 8, dtype=np.int32).reshape(4, 6, 8)
    message = batch_with(
        strided=cube[:, ::2, 1::3],
        transposed=cube.transpose(0, 2, 1),
        column=cube[:, 3, 5],
        reversed=cube[::-1],
        fortran=np.asfortranarray(cube.astype(np.float64)),
    )
    assert not any(array.flags.c_contiguous for array in message.arrays.values())

    received = decode(as_bytes(encode(message)))

    assert_same_message(received, message)


@pytest.mark.parametrize("kind", ["transitions", "stats", "event"])
def test_nested_maps_lists_none_and_bytes_in_info_values_and_detail_survive(kind):
    name = {"transitions": "info", "stats": "values", "event": "detail"}[kind]
    message = replace(EXAMPLES[kind], **{name: NESTED_INFO})

    received = decode(as_bytes(encode(message)))

    assert getattr(received, name) == NESTED_INFO


# --------------------------------------------------------------------------- refused at encode


def test_a_batch_whose_arrays_disagree_on_the_transition_count_is_refused_at_encode():
    message = batch_with(observation=np.zeros((4, 3)), action=np.zeros((5, 2)))

    with pytest.raises(ValueError, match="same leading \\(transition\\) axis.*'observation': 4.*'action': 5"):
        encode(message)


def test_an_object_array_is_refused_at_encode():
    message = batch_with(anything=np.array([{"a": 1}, None], dtype=object))

    with pytest.raises(TypeError, match="cannot travel on the wire"):
        encode(message)


# --------------------------------------------------------------------------- refused at decode


def test_a_message_with_the_wrong_magic_is_refused():
    frames = wire_frames(HEADERS["ack"], magic=b"HTTP")

    with pytest.raises(DecodeError, match="not a robot-stack message.*b'HTTP'"):
        decode(frames)


def test_a_message_of_another_protocol_version_is_refused_naming_both_versions():
    frames = wire_frames(HEADERS["ack"], version=PROTOCOL_VERSION + 1)

    with pytest.raises(VersionMismatch) as raised:
        decode(frames)

    assert f"v{PROTOCOL_VERSION + 1}" in str(raised.value) and f"v{PROTOCOL_VERSION}" in str(raised.value)
    assert (raised.value.peer_version, raised.value.own_version) == (PROTOCOL_VERSION + 1, PROTOCOL_VERSION)


def test_a_version_mismatch_is_a_decode_error():
    assert issubclass(VersionMismatch, DecodeError)


@pytest.mark.parametrize(
    "header, problem",
    [
        ({"type": "teleport", "stream_id": "s"}, "unknown message type 'teleport'"),
        ({"stream_id": "s", "received_seq": 1, "committed_seq": 0}, "unknown message type None"),
        ({"type": "ack", "stream_id": "s", "received_seq": 1}, "ack.committed_seq is missing"),
        ({**HEADERS["ack"], "priority": 1}, "ack message has unknown field\\(s\\) \\['priority'\\]"),
        ({**HEADERS["transitions"], "seq": "7"}, "transitions.seq must be an integer >= -1, got '7'"),
        ({**HEADERS["transitions"], "seq": True}, "transitions.seq must be an integer"),
        ({**HEADERS["ack"], "committed_seq": -2}, "ack.committed_seq must be an integer >= -1"),
        ({**HEADERS["ack"], "rewind": 1}, "ack.rewind must be true or false"),
        ({**HEADERS["ack"], "stream_id": ""}, "ack.stream_id must be a printable string"),
        ({"type": "heartbeat", "sender_id": "a", "sent_time": float("nan")}, "heartbeat.sent_time must be a finite"),
        ({**HEADERS["transitions"], "info": [1, 2]}, "transitions.info must be a map"),
        (
            {"type": "hello", "actor_id": "a", "task_id": "t", "stream_id": "s", "action_spec": {"a": ["|O", [3]]}},
            "hello.action_spec.a: dtype '|O' is not allowed",
        ),
    ],
    ids=[
        "unknown type",
        "no type",
        "missing field",
        "unknown field",
        "seq as string",
        "seq as bool",
        "seq below -1",
        "flag as int",
        "empty id",
        "nan time",
        "info as list",
        "object dtype in spec",
    ],
)
def test_a_header_that_does_not_match_its_message_type_is_refused_naming_the_field(header, problem):
    frames = wire_frames(header)

    with pytest.raises(DecodeError, match=problem):
        decode(frames)


def test_a_message_with_more_array_frames_than_its_header_lists_is_refused():
    frames = wire_frames(HEADERS["transitions"], [["a", "<f4", [1]]], [bytes(4), bytes(4)])

    with pytest.raises(DecodeError, match="array table lists 1 arrays but the message carries 2 array parts"):
        decode(frames)


def test_a_message_with_fewer_array_frames_than_its_header_lists_is_refused():
    frames = wire_frames(HEADERS["transitions"], [["a", "<f4", [1]], ["b", "<f4", [1]]], [bytes(4)])

    with pytest.raises(DecodeError, match="array table lists 2 arrays but the message carries 1 array parts"):
        decode(frames)


@pytest.mark.parametrize("length", [23, 25, 0])
def test_an_array_frame_whose_length_is_not_dtype_times_shape_is_refused(length):
    frames = wire_frames(HEADERS["transitions"], [["obs", "<f4", [2, 3]]], [bytes(length)])

    with pytest.raises(DecodeError, match=f"array 'obs' \\(<f4 \\[2, 3\\]\\) needs 24 bytes but its part has {length}"):
        decode(frames)


@pytest.mark.parametrize("dtype", ["|O", "O", "|V8", "<V8", "S0", "<U0", "<M8", "float32"])
def test_an_array_of_a_dtype_outside_numeric_bool_and_text_is_refused(dtype):
    frames = wire_frames(HEADERS["transitions"], [["obs", dtype, [1]]], [bytes(8)])

    with pytest.raises(DecodeError, match=f"dtype '{dtype}' is not allowed on the wire"):
        decode(frames)


def test_an_array_whose_shape_multiplies_past_the_message_limit_is_refused():
    # 2**28 ** 4 is 0 modulo 2**64: the frame length must be checked against the true size.
    frames = wire_frames(HEADERS["transitions"], [["obs", "|u1", [2**28] * 4]], [b""])

    with pytest.raises(DecodeError, match=f"needs {2**112} bytes but its part has 0"):
        decode(frames)


@pytest.mark.parametrize("shape", [[0, 2**28, 2**28, 2**28], [2**28, 2**28, 0], [0, 2**20, 2**20]])
def test_an_empty_array_whose_other_sizes_multiply_past_the_message_limit_is_refused(shape):
    frames = wire_frames(HEADERS["transitions"], [["obs", "<f4", shape]], [b""])

    with pytest.raises(DecodeError, match="array 'obs'.*more than the message limit"):
        decode(frames)


def test_a_message_over_the_size_limit_is_refused_before_it_is_parsed():
    frames = encode(batch_with(image=np.zeros((1, 2000), dtype=np.uint8)))

    with pytest.raises(DecodeError, match="message is \\d+ bytes; the limit is 1000"):
        decode(frames, WireLimits(max_message_bytes=1000))


@pytest.mark.parametrize(
    "data, problem",
    [
        (b"", "msgpack extension type 5; extensions are not allowed"),
        (b"payload", "header is not valid msgpack: .*exceeds max_ext_len\\(0\\)"),
    ],
    ids=["empty extension", "extension with data"],
)
def test_a_header_with_a_msgpack_extension_type_is_refused(data, problem):
    body = msgpack.packb({**HEADERS["ack"], "arrays": [], "stream_id": msgpack.ExtType(5, data)})
    frames = [b"RSTP" + struct.pack("<H", PROTOCOL_VERSION) + body]

    with pytest.raises(DecodeError, match=problem):
        decode(frames)


def test_a_header_with_byte_string_keys_beside_text_keys_is_refused_naming_them():
    frames = wire_frames({**HEADERS["ack"], b"raw": 1, "text": 2})

    with pytest.raises(DecodeError, match="ack message has unknown field\\(s\\)"):
        decode(frames)


def test_a_header_that_is_not_a_map_is_refused():
    frames = [b"RSTP" + struct.pack("<H", PROTOCOL_VERSION) + msgpack.packb([1, 2, 3])]

    with pytest.raises(DecodeError, match="header is a list, not a map"):
        decode(frames)


def test_a_message_of_no_frames_is_refused():
    with pytest.raises(DecodeError, match="empty message"):
        decode([])


def test_a_message_that_takes_no_arrays_is_refused_when_it_carries_one():
    frames = wire_frames(HEADERS["ack"], [["extra", "|u1", [1]]], [b"\x00"])

    with pytest.raises(DecodeError, match="ack message carries arrays \\['extra'\\]; it takes none"):
        decode(frames)


def test_a_batch_whose_received_arrays_disagree_on_the_transition_count_is_refused():
    frames = wire_frames(HEADERS["transitions"], [["a", "|u1", [2]], ["b", "|u1", [3]]], [bytes(2), bytes(3)])

    with pytest.raises(DecodeError, match="arrays disagree on the transition count"):
        decode(frames)


def test_a_weights_chunk_with_more_payload_than_its_blob_is_refused():
    chunk = WeightsChunk(version=1, index=0, count=1, total_bytes=4, blob_id=BLOB_ID, crc32=0, payload=b"12345")

    with pytest.raises(DecodeError, match="payload \\(5 bytes\\) exceeds the blob size 4"):
        decode(encode(chunk))


def test_a_weights_chunk_whose_index_is_not_below_its_count_is_refused():
    chunk = WeightsChunk(version=1, index=2, count=2, total_bytes=4, blob_id=BLOB_ID, crc32=0, payload=b"12")

    with pytest.raises(DecodeError, match="chunk 2/2 of version 1 .* inconsistent numbering"):
        decode(encode(chunk))


# --------------------------------------------------------------------------- weights

TENSORS = {
    "actor.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
    "actor.bias": np.array([0.5, -0.5, 1.0], dtype=np.float32),
    "step": np.array([123456789], dtype=np.int64),
    "half": np.array([1.0, 2.0], dtype=np.float16),
}
BLOB = pack_weights(TENSORS)


def received(chunks):
    return [decode(as_bytes(encode(chunk))) for chunk in chunks]


def assemble(chunks, assembler=None):
    assembler = assembler or WeightsAssembler(max_blob_bytes=1 << 20)
    updates = [assembler.add(chunk, now=5.0) for chunk in chunks]
    return [update for update in updates if update is not None]


def test_weights_packed_to_safetensors_unpack_to_the_same_tensors():
    tensors = unpack_weights(BLOB)

    assert sorted(tensors) == sorted(TENSORS)
    for name, array in TENSORS.items():
        assert tensors[name].dtype == array.dtype
        np.testing.assert_array_equal(tensors[name], array)


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 3 * 64 + 2])
def test_chunk_payloads_after_the_wire_concatenate_to_the_blob(size):
    blob = bytes(np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8))

    chunks = received(chunk_weights(7, blob, chunk_bytes=64))

    assert b"".join(bytes(chunk.payload) for chunk in chunks) == blob
    assert [chunk.index for chunk in chunks] == list(range(max(1, -(-size // 64))))
    assert all(chunk.count == len(chunks) and chunk.total_bytes == size for chunk in chunks)


@pytest.mark.parametrize(
    "chunk_bytes", [len(BLOB) + 1, len(BLOB), len(BLOB) - 1, 7], ids=["blob=chunk-1", "blob=chunk", "blob=chunk+1", "many"]
)
def test_the_assembler_rebuilds_the_exact_blob_from_chunks_after_the_wire(chunk_bytes):
    chunks = received(chunk_weights(4, BLOB, chunk_bytes))

    updates = assemble(chunks)

    assert [(update.version, update.blob, update.received_time) for update in updates] == [(4, BLOB, 5.0)]


def test_the_assembler_rebuilds_the_blob_from_chunks_in_any_order_and_repeated():
    chunks = received(chunk_weights(4, BLOB, 10))

    updates = assemble(chunks[::-1][:-1] + chunks[:3])

    assert [update.blob for update in updates] == [BLOB]


def test_the_assembler_reads_the_learners_training_progress_from_the_blob_metadata():
    blob = safetensors.numpy.save(TENSORS, metadata=TrainingProgress(env_steps=3183, updates=1256).metadata())

    (update,) = assemble(received(chunk_weights(9, blob, 64)))

    assert update.progress == TrainingProgress(env_steps=3183, updates=1256)
    assert sorted(update.tensors()) == sorted(TENSORS)


def test_a_blob_without_training_progress_from_an_older_learner_is_taken_without_it():
    (update,) = assemble(received(chunk_weights(9, BLOB, 64)))

    assert update.blob == BLOB and update.progress is None


@pytest.mark.parametrize(
    "metadata",
    [{"learner_env_steps": "-5", "learner_updates": "1"}, {"learner_env_steps": "12"},
     {"learner_env_steps": "1e3", "learner_updates": "0"}],
    ids=["negative", "half", "not-an-integer"],
)
def test_a_blob_whose_training_progress_is_not_two_counts_is_refused(metadata):
    blob = safetensors.numpy.save(TENSORS, metadata=metadata)

    with pytest.raises(DecodeError, match="weights blob __metadata__ 'learner_(env_steps|updates)' must be a non-negative integer"):
        assemble(received(chunk_weights(9, blob, 64)))


@pytest.mark.parametrize("size", [0, 1])
def test_the_assembler_refuses_a_blob_too_short_to_be_safetensors(size):
    chunks = received(chunk_weights(1, b"\x00" * size, 64))

    with pytest.raises(DecodeError, match=f"weights blob is {size} bytes, too short for a safetensors header"):
        assemble(chunks)


def test_a_chunk_whose_blob_id_disagrees_with_the_rest_of_its_version_is_refused():
    first, second = received(chunk_weights(2, BLOB, len(BLOB) // 2 + 1))
    assembler = WeightsAssembler(max_blob_bytes=1 << 20)
    assembler.add(first, now=0.0)
    forged = WeightsChunk(2, second.index, second.count, second.total_bytes, bytes(16), second.crc32, second.payload)

    with pytest.raises(DecodeError, match="weights version 2: chunks disagree on count, size or blob id"):
        assembler.add(forged, now=0.0)


def test_a_chunk_whose_count_disagrees_with_the_rest_of_its_version_is_refused():
    first, second = received(chunk_weights(2, BLOB, len(BLOB) // 2 + 1))
    assembler = WeightsAssembler(max_blob_bytes=1 << 20)
    assembler.add(first, now=0.0)
    forged = WeightsChunk(2, 1, 3, second.total_bytes, second.blob_id, second.crc32, second.payload)

    with pytest.raises(DecodeError, match="chunks disagree on count, size or blob id"):
        assembler.add(forged, now=0.0)


def damaged(chunk):
    payload = bytearray(chunk.payload)
    payload[len(payload) // 2] ^= 0x40
    return WeightsChunk(chunk.version, chunk.index, chunk.count, chunk.total_bytes, chunk.blob_id, chunk.crc32, bytes(payload))


def test_a_chunk_whose_bytes_do_not_match_its_crc_is_dropped_and_its_version_stays_incomplete():
    chunks = received(chunk_weights(2, BLOB, 32))
    assembler = WeightsAssembler(max_blob_bytes=1 << 20)
    assemble(chunks[:3], assembler)

    with pytest.raises(DecodeError, match="weights version 2 chunk 3: CRC-32 mismatch; chunk dropped"):
        assembler.add(damaged(chunks[3]), now=0.0)

    assert assemble(chunks[4:], assembler) == []
    assert assembler.completed_version == -1


def test_a_version_with_a_damaged_chunk_completes_when_that_chunk_is_sent_again_intact():
    chunks = received(chunk_weights(2, BLOB, 32))
    assembler = WeightsAssembler(max_blob_bytes=1 << 20)
    with pytest.raises(DecodeError, match="CRC-32 mismatch"):
        assembler.add(damaged(chunks[0]), now=0.0)
    assert assemble(chunks[1:], assembler) == []

    updates = assemble(chunks[:1], assembler)

    assert [(update.version, update.blob) for update in updates] == [(2, BLOB)]


def test_a_late_joiners_copy_with_the_same_blob_id_fills_the_chunks_still_missing():
    blob_id = bytes(range(16))
    first_send = received(chunk_weights(2, BLOB, 32, blob_id))
    resend = received(chunk_weights(2, BLOB, 32, blob_id))
    assembler = WeightsAssembler(max_blob_bytes=1 << 20)
    assemble(first_send[::2], assembler)

    updates = assemble(resend, assembler)

    assert [update.blob for update in updates] == [BLOB]


def test_every_chunk_of_one_publication_names_the_same_blob_id_and_each_publication_a_new_one():
    first = list(chunk_weights(2, BLOB, 32))
    second = list(chunk_weights(2, BLOB, 32))

    assert len({chunk.blob_id for chunk in first}) == 1
    assert first[0].blob_id != second[0].blob_id and len(first[0].blob_id) == 16


def test_the_assembler_reuses_a_blob_buffer_only_once_nobody_holds_it():
    blobs = [pack_weights({"w": np.full(100, float(version), np.float32)}) for version in range(1, 5)]
    assembler = WeightsAssembler(max_blob_bytes=1 << 20)

    held = assemble(received(chunk_weights(1, blobs[0], 64)), assembler)[0]
    second = assemble(received(chunk_weights(2, blobs[1], 64)), assembler)[0]
    assert second.blob is not held.blob  # version 1 is still held by the caller
    view = memoryview(second.blob)
    second_buffer_id = id(second.blob)
    del second
    third = assemble(received(chunk_weights(3, blobs[2], 64)), assembler)[0]
    assert id(third.blob) != second_buffer_id  # a memoryview still refers to version 2's buffer
    view.release()
    released_id = id(held.blob)
    del held
    fourth = assemble(received(chunk_weights(4, blobs[3], 64)), assembler)[0]

    # Buffers of versions 1 and 2, both let go now, are alive in the assembler: one is filled again.
    assert id(fourth.blob) in (released_id, second_buffer_id)
    assert fourth.blob == blobs[3] and third.blob == blobs[2]
    np.testing.assert_array_equal(fourth.tensors()["w"], np.full(100, 4.0, np.float32))


def test_a_chunk_whose_payload_length_does_not_fit_its_index_is_refused():
    first = next(chunk_weights(2, BLOB, 32))
    short = WeightsChunk(2, 0, first.count, first.total_bytes, first.blob_id, first.crc32, bytes(first.payload)[:-1])
    size = len(first.payload)

    with pytest.raises(DecodeError, match=f"weights version 2 chunk 0: {size - 1} bytes, expected {size}"):
        assemble(received([short]))


def test_a_blob_over_the_assemblers_bound_is_refused():
    chunks = received(chunk_weights(2, BLOB, 32))

    with pytest.raises(DecodeError, match=f"weights version 2 is {len(BLOB)} bytes; the limit is 100"):
        assemble(chunks, WeightsAssembler(max_blob_bytes=100))


def test_a_newer_version_abandons_an_older_partial_version():
    newer_blob = pack_weights({"w": np.ones(5, dtype=np.float32)})
    older = received(chunk_weights(1, BLOB, 32))
    newer = received(chunk_weights(2, newer_blob, 32))

    updates = assemble(older[:1] + newer + older[1:])

    assert [(update.version, update.blob) for update in updates] == [(2, newer_blob)]


def test_chunks_of_a_version_already_taken_are_ignored():
    assembler = WeightsAssembler(max_blob_bytes=1 << 20)
    assemble(received(chunk_weights(3, BLOB, 32)), assembler)

    updates = assemble(received(chunk_weights(3, BLOB, 32)) + received(chunk_weights(2, BLOB, 32)), assembler)

    assert updates == [] and assembler.completed_version == 3


def test_check_safetensors_names_the_tensors_of_a_valid_blob():
    assert sorted(check_safetensors(BLOB)) == sorted(TENSORS)


@pytest.mark.parametrize(
    "cut, problem",
    [
        (4, "weights blob is 4 bytes, too short for a safetensors header"),
        (20, "declares a \\d+-byte header in a 20-byte blob"),
        (len(BLOB) - 1, "points outside the blob"),
    ],
    ids=["inside the length", "inside the header", "inside the data"],
)
def test_check_safetensors_refuses_a_truncated_blob(cut, problem):
    with pytest.raises(DecodeError, match=problem):
        check_safetensors(BLOB[:cut])


def safetensors_blob(header, data=b""):
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


@pytest.mark.parametrize(
    "offsets",
    [[0, 9], [-1, 4], [6, 2], [0, 2**70]],
    ids=["past the end", "negative", "reversed", "huge"],
)
def test_check_safetensors_refuses_offsets_pointing_outside_the_data(offsets):
    blob = safetensors_blob({"w": {"dtype": "U8", "shape": [8], "data_offsets": offsets}}, bytes(8))

    with pytest.raises(DecodeError, match="weights blob entry 'w' points outside the blob"):
        check_safetensors(blob)


@pytest.mark.parametrize(
    "blob, problem",
    [
        (safetensors_blob({"w": {"dtype": "U8", "shape": [1]}}, b"\x00"), "entry 'w' has no valid data_offsets"),
        (safetensors_blob({"w": {"data_offsets": [0, "1"]}}, b"\x00"), "entry 'w' has no valid data_offsets"),
        (safetensors_blob([1, 2]), "header is not a JSON object"),
        (struct.pack("<Q", 3) + b"{x}", "header is not JSON"),
        (struct.pack("<Q", 2) + b"\xff\xfe", "header is not JSON"),
        (struct.pack("<Q", 5000) + b"[" * 5000, "header is not JSON"),
        (struct.pack("<Q", 5000) + b"9" * 5000, "header is not JSON"),
    ],
    ids=["no offsets", "text offset", "not an object", "bad json", "bad utf-8", "deep nesting", "huge number"],
)
def test_check_safetensors_refuses_a_header_it_cannot_read(blob, problem):
    with pytest.raises(DecodeError, match=problem):
        check_safetensors(blob)


@pytest.mark.parametrize(
    "entry, data, problem",
    [
        ({"dtype": "F32", "shape": [5], "data_offsets": [0, 8]}, bytes(8), "SafetensorError"),
        ({"dtype": "BF16", "shape": [4], "data_offsets": [0, 8]}, bytes(8), "KeyError: 'BF16'"),
    ],
    ids=["shape disagrees with offsets", "dtype numpy lacks"],
)
def test_unpack_weights_refuses_a_well_framed_blob_that_does_not_load(entry, data, problem):
    blob = safetensors_blob({"w": entry}, data)

    with pytest.raises(DecodeError, match=f"weights blob does not load as numpy arrays: {problem}"):
        unpack_weights(blob)


@pytest.mark.parametrize("name", ["transitions", "weights", "hello"])
def test_a_message_packed_into_a_reused_dirty_buffer_is_byte_for_byte_the_fresh_one(name):
    fresh = pack(EXAMPLES[name], prefix=b"topic")
    sizes = []

    def dirty(size):
        sizes.append(size)
        return bytearray(b"\xff" * size)

    reused = pack(EXAMPLES[name], prefix=b"topic", allocate=dirty)

    assert sizes == [len(fresh)] and bytes(reused) == bytes(fresh)


def test_an_allocator_returning_the_wrong_size_is_refused():
    with pytest.raises(ValueError, match="returned 3 bytes"):
        pack(EXAMPLES["ack"], allocate=lambda size: bytearray(3))
