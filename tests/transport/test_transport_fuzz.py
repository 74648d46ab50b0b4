"""Fuzzing the receiving side: whatever bytes arrive, decoding ends in a message or a DecodeError.

A learner and its actors read frames from the network, so ``decode``, the weights
assembler and the safetensors check must refuse malformed input with ``DecodeError``
(``VersionMismatch`` is one) and never fail any other way, allocate without bound or hang.
The inputs are random frames, and valid messages of every type mutated: bytes flipped,
frames cut, dropped, repeated or added, header fields replaced by random msgpack.

The last test does the same to a whole running learner process: random, mutated and
well-formed but semantically bad messages at both of its ports, then a real actor.
"""

import json
import struct
import threading
import time

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from learner.learner_loop import Learner
from robot_stack.config import load_task_config
from robot_stack.data.spec import ArraySpec, action_spec, observation_spec, transition_batch_spec
from robot_stack.config import with_fields
from robot_stack.transport import ActorLink
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
    unpack,
)
from robot_stack.transport.weights_stream import (
    WeightsAssembler,
    WeightsUpdate,
    check_safetensors,
    chunk_weights,
    pack_weights,
    unpack_weights,
)
from robot_stack.transport.wire import PROTOCOL_VERSION, DecodeError, WireLimits, join_frames
from test_transport_restarts import free_ports

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


# --------------------------------------------------------------------------- a whole learner under fire


@pytest.fixture
def learner_config(pick_cube_state_yaml, tmp_path):
    transitions_port, weights_port = free_ports(2)
    config = load_task_config(pick_cube_state_yaml)
    config = with_fields(config, "session", learner_host="127.0.0.1", transitions_port=transitions_port,
                         weights_port=weights_port, checkpoint_dir=tmp_path / "checkpoints", log_dir=tmp_path / "logs")
    config = with_fields(config, "session.transport", outbox_dir=tmp_path / "outbox", heartbeat_interval_s=0.1,
                         handshake_timeout_s=0.5, peer_timeout_s=2.0)
    config = with_fields(config, "agent", batch_size=16, hidden_dims=(32, 32))
    return with_fields(config, "training", min_online_transitions=20, publish_every_updates=5, publish_every_s=0.2,
                       checkpoint_every_s=3600, log_every_updates=5, torch_threads=1)


class Barrage:
    """Random, mutated and well-formed but semantically bad messages for a learner's ports,
    drawn from one seeded generator (a failure replays with the same seed)."""

    def __init__(self, config, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.task = config.task.name
        self.observation_spec, self.action_spec = observation_spec(config), action_spec(config)
        self.spec = transition_batch_spec(self.observation_spec, self.action_spec)
        self.valid = [bytes(pack(message)) for message in VALID_MESSAGES]

    def hello(self, stream: str, **changes) -> Hello:
        fields = {"actor_id": "fuzz", "task_id": self.task, "stream_id": stream,
                  "observation_spec": self.observation_spec, "action_spec": self.action_spec, **changes}
        return Hello(**fields)

    def arrays(self, count: int) -> dict:
        return {key: self.rng.uniform(-1, 1, (count, *spec.shape)).astype(np.dtype(spec.dtype)) if spec.dtype != "|b1"
                else self.rng.random((count, *spec.shape)) < 0.5 for key, spec in self.spec.items()}

    def poisoned_arrays(self) -> dict:
        arrays = self.arrays(int(self.rng.integers(0, 6)))
        key = str(self.rng.choice(sorted(arrays)))
        spoil = int(self.rng.integers(0, 7))
        if spoil == 0 and arrays[key].dtype.kind == "f" and arrays[key].size:
            arrays[key].reshape(-1)[0] = self.rng.choice([np.nan, np.inf, -np.inf])
        elif spoil == 1:
            del arrays[key]
        elif spoil == 2:
            arrays[key] = arrays[key].astype(np.float64)
        elif spoil == 3:
            arrays[key] = np.concatenate([arrays[key], arrays[key]])  # one array's count disagrees
        elif spoil == 4:
            arrays["actions"] = arrays["actions"] * 1e6
        elif spoil == 5:
            arrays["surprise"] = np.zeros(len(arrays[key]), np.float32)
        else:
            arrays[key] = arrays[key].reshape(len(arrays[key]), -1)[:, :1]
        return arrays

    def semantic(self, stream: str, seq: int) -> bytes:
        """A well-formed message that means something wrong (a third are poisoned batches)."""
        rng, choice = self.rng, int(self.rng.integers(0, 15))
        if choice == 0:
            return bytes(pack(self.hello(stream, task_id="another_task")))
        if choice == 1:
            return bytes(pack(self.hello(stream, observation_spec={"state": ArraySpec("<f4", (2**20,))})))
        if choice == 2:
            return bytes(pack(self.hello(stream, action_spec={})))
        if 3 <= choice <= 7:
            try:
                return bytes(pack(TransitionBatch(stream, seq, self.poisoned_arrays())))
            except ValueError:  # counts that disagree are refused at encode: send them raw
                return bytes(join_frames([PREFIX + msgpack.packb({"type": "transitions", "stream_id": stream, "seq": seq,
                                                                   "info": {}, "sent_time": 0.0}),
                                          msgpack.packb([["rewards", "<f4", [0, 2**30, 2**30]]]), b""]))
        if choice == 8:
            return bytes(pack(TransitionBatch(stream, int(rng.choice([seq + 5, 2**63 - 1, -1])), self.arrays(2))))
        if choice == 9:
            return bytes(pack(Stats("fuzz", {f"k{index}": index for index in range(int(rng.integers(60, 3000)))})))
        if choice == 10:
            return bytes(pack(Stats("fuzz", {"a,b": 1, "x" * 300: 2, "nested": {"n": [1]}, "text": "t" * 5000})))
        if choice == 11:
            detail = {"success": rng.choice(["yes", 2, None]), "length": rng.choice(["ten", -3, 1.5]),
                      "return": rng.choice([float("nan"), "high", float("inf")]), "weights_version": -9}
            picked = {key: value.item() if hasattr(value, "item") else value
                      for key, value in detail.items() if rng.random() < 0.6}
            return bytes(pack(Event("fuzz", "episode_end", picked or {"length": "ten"})))
        if choice == 12:
            return bytes(pack(rng.choice([Welcome("l", stream, 1, 1, 1, 0.1), Ack(stream, 3, 2, True),
                                          Refuse("go away"), *chunk_weights(1, BLOBS[0], 40)])))
        return bytes(pack(TransitionBatch("y" * 32, seq, self.arrays(2))))  # another stream than the hello's

    def mutated(self, stream: str, seq: int) -> bytes:
        # No hello of its own here: a mutated one would move the connection to another stream.
        valid = self.valid + [bytes(pack(TransitionBatch(stream, seq, self.arrays(3)))),
                              bytes(pack(Event("fuzz", "episode_end", {"success": 1, "length": 3, "return": 1.0})))]
        buffer = bytearray(valid[int(self.rng.integers(len(valid)))])
        for _ in range(int(self.rng.integers(1, 5))):
            buffer[int(self.rng.integers(len(buffer)))] = int(self.rng.integers(256))
        return bytes(buffer[: int(self.rng.integers(len(buffer) + 1))] if self.rng.random() < 0.3 else buffer)

    def any(self, stream: str, seq: int) -> list[bytes]:
        kind = self.rng.random()
        if kind < 0.15:
            return [self.rng.bytes(int(self.rng.integers(0, 200)))]
        if kind < 0.2:
            return [self.mutated(stream, seq), self.rng.bytes(8)]  # two ZeroMQ frames
        if kind < 0.4:
            return [self.mutated(stream, seq)]
        return [self.semantic(stream, seq)]


def test_a_learner_fed_random_mutated_and_poisoned_messages_still_serves_a_real_actor(learner_config):
    """Hundreds of bad messages from several connections at both ports of a running learner;
    then a real actor's transitions are all stored, its weights arrive and training goes on."""
    config = learner_config
    learner = Learner(config)
    learner.resume_or_start()
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(target=learner.run, args=(stop,), kwargs={"ready": ready}, daemon=True)
    thread.start()
    assert ready.wait(20)
    context = zmq.Context.instance()
    barrage = Barrage(config, seed=19)
    dealers, streams, seqs = [], [], []
    for index in range(6):
        dealer = context.socket(zmq.DEALER)
        dealer.linger = 0
        dealer.connect(f"tcp://127.0.0.1:{config.session.transitions_port}")
        stream = f"{index:032x}"
        if index % 2 == 0:  # half say a valid hello first, so their batches reach the content checks
            dealer.send(pack(barrage.hello(stream)))
        dealers.append(dealer)
        streams.append(stream)
        seqs.append(0)
    subscriber = context.socket(zmq.XSUB)
    subscriber.linger = 0
    subscriber.connect(f"tcp://127.0.0.1:{config.session.weights_port}")
    actor = None
    try:
        deadline = time.monotonic() + 15
        for _ in range(600):
            assert time.monotonic() < deadline, "sending the barrage took too long"
            index = int(barrage.rng.integers(len(dealers)))
            seqs[index] = next_seq_from_acks(dealers[index], seqs[index])
            frames = barrage.any(streams[index], seqs[index])
            dealers[index].send_multipart(frames)
            if b"transitions" in frames[0]:
                # As if the batch was taken; the ack (waited for briefly) says which seq the learner expects.
                seqs[index] += 1
                dealers[index].poll(5)
            if barrage.rng.random() < 0.1:
                subscriber.send(barrage.rng.choice([b"\x01weights/to/fuzz\0", b"\x00weights/all\0", b"\x01",
                                                    barrage.rng.bytes(int(barrage.rng.integers(0, 40)))]))
        barrage_steps = learner.counters.env_steps

        actor = ActorLink(config.session, "a0", config.task.name, observation_spec(config), action_spec(config)).start()
        assert actor.wait_connected(10)
        ids = np.arange(10_000, 10_040, dtype=np.float32)
        for start in range(0, 40, 10):
            arrays = barrage.arrays(10)
            arrays["observations/state"][:, 0] = ids[start : start + 10]
            last_seq = actor.send(arrays)
        wait_until_true(lambda: actor.status().received_seq >= last_seq, 10, "the learner's ack of the actor's batches")
        wait_until_true(lambda: learner.counters.env_steps >= barrage_steps + 40, 10, "the actor's transitions stored")
        updates = learner.counters.updates
        wait_until_true(lambda: learner.counters.updates > updates, 10, "training to go on")
        wait_until_true(lambda: actor.latest_weights() is not None, 10, "weights at the actor")
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join(30)
        for socket in (*dealers, subscriber):
            socket.close(linger=0)
        if actor is not None:
            actor.close()
    assert not thread.is_alive()
    online = learner.replay.online
    stored = online.frames["state"][online.obs_frame[: len(online)] % online.frame_capacity][:, 0]
    assert set(ids.tolist()) <= set(stored.tolist())


def next_seq_from_acks(dealer: zmq.Socket, seq: int) -> int:
    """The seq the learner expects next on this connection, by the acks that arrived so far,
    so that poisoned batches come in order and reach the content checks."""
    while dealer.poll(0):
        try:
            message = unpack(dealer.recv(), LIMITS)
        except DecodeError:
            continue
        if isinstance(message, (Ack, Welcome)):
            seq = message.received_seq + 1
    return seq


def wait_until_true(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
