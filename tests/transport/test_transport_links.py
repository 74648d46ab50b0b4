"""ActorLink <-> LearnerLink over loopback TCP in one process: delivery, weights, refusals."""

from __future__ import annotations

import logging
import struct
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import zmq

from robot_stack.config import SessionConfig
from robot_stack.data.spec import ArraySpec
from robot_stack.transport import (
    Ack,
    ActorLink,
    Hello,
    LearnerLink,
    LinkRefused,
    Refuse,
    TransitionBatch,
    Welcome,
    encode,
    generate_keys,
    pack_weights,
    unpack_weights,
)
from robot_stack.transport.messages import pack, unpack
from robot_stack.transport.wire import PROTOCOL_VERSION, join_frames, split_frames
from test_transport_restarts import free_ports

OBSERVATION_SPEC = {"image": ArraySpec("|u1", (8, 8, 3)), "state": ArraySpec("<f4", (5,))}
ACTION_SPEC = {"action": ArraySpec("<f4", (7,))}


@pytest.fixture
def session(tmp_path: Path) -> Callable[..., SessionConfig]:
    transitions_port, weights_port = free_ports(2)

    def make(**overrides) -> SessionConfig:
        transport = {
            "heartbeat_interval_s": 0.1, "peer_timeout_s": 0.6, "handshake_timeout_s": 0.5,
            "outbox_dir": str(tmp_path / "outbox"), **overrides.pop("transport", {}),
        }
        return SessionConfig(
            learner_host="127.0.0.1", transitions_port=transitions_port, weights_port=weights_port,
            transport=transport, **overrides,
        )

    return make


@pytest.fixture
def links():
    opened = []

    def track(link):
        opened.append(link)
        return link

    yield track
    for link in reversed(opened):
        link.close()


def batch(step: int, count: int = 2) -> dict[str, np.ndarray]:
    return {
        "image": np.full((count, 8, 8, 3), step % 256, np.uint8),
        "state": np.full((count, 5), step, np.float32),
        "action": np.zeros((count, 7), np.float32),
    }


def actor(session: SessionConfig, actor_id: str = "robot1", **kwargs) -> ActorLink:
    return ActorLink(session, actor_id, "pick", OBSERVATION_SPEC, ACTION_SPEC, **kwargs)


def learner(session: SessionConfig) -> LearnerLink:
    return LearnerLink(session, task_id="pick", observation_spec=OBSERVATION_SPEC, action_spec=ACTION_SPEC)


def receive_all(link: LearnerLink, count: int, timeout_s: float = 5.0) -> list:
    received, deadline = [], time.monotonic() + timeout_s
    while len(received) < count and time.monotonic() < deadline:
        received += link.receive(timeout_s=0.05)
    return received


def wait_until(condition: Callable[[], object], timeout_s: float = 5.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    return condition()


def plain_dealer(config: SessionConfig) -> zmq.Socket:
    """A bare DEALER connected to the learner's transitions port (the caller closes it)."""
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.linger = 0
    dealer.connect(f"tcp://127.0.0.1:{config.transitions_port}")
    return dealer


def welcomed_dealer(config: SessionConfig) -> zmq.Socket:
    """A bare DEALER that has said hello for stream 's' * 32 and been welcomed."""
    dealer = plain_dealer(config)
    dealer.send(pack(Hello("robot1", "pick", "s" * 32, OBSERVATION_SPEC, ACTION_SPEC)))
    assert dealer.poll(5000) and isinstance(unpack(dealer.recv()), Welcome)
    return dealer


def acks_until(dealer: zmq.Socket, last_seq: int, timeout_s: float = 2.0) -> list[Ack]:
    """The acks that arrive until one covers ``last_seq`` (or the timeout)."""
    acks, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline and (not acks or acks[-1].received_seq < last_seq):
        if dealer.poll(100):
            message = unpack(dealer.recv())
            if isinstance(message, Ack):
                acks.append(message)
    return acks


def test_batches_arrive_in_order_with_their_arrays_and_info(session, links) -> None:
    config = session()
    server = links(learner(config).start())
    client = links(actor(config).start())

    for step in range(30):
        client.send(batch(step), {"episode": 3, "step": step})
    received = receive_all(server, 30)

    assert [b.seq for b in received] == list(range(30))
    assert all(b.actor_id == "robot1" and b.count == 2 for b in received)
    assert np.array_equal(received[17].arrays["state"], np.full((2, 5), 17, np.float32))
    assert received[17].info == {"episode": 3, "step": 17}


def test_an_idle_link_puts_each_batch_on_the_socket_from_the_calling_thread(session, links) -> None:
    config = session()
    server = links(learner(config).start())
    client = links(actor(config).start())
    assert client.wait_connected(5.0)

    for step in range(40):  # paced like a control loop: the link is idle at every send
        client.send(batch(step))
        time.sleep(0.005)
    received = receive_all(server, 40)

    assert [b.seq for b in received] == list(range(40))
    # Now and then the link thread holds the socket (a heartbeat, an ack): it sends those.
    assert client.status().sent_directly >= 30


def test_a_burst_many_windows_long_flows_without_waiting_for_heartbeats(session, links) -> None:
    # Each window waits for an ack; the link thread must see every ack at once, also one
    # whose arrival its own sending took the socket descriptor's signal for.
    config = session(transport={"max_in_flight_batches": 4, "heartbeat_interval_s": 1.0, "peer_timeout_s": 10.0})
    server = links(learner(config).start())
    client = links(actor(config).start())
    assert client.wait_connected(5.0)

    started = time.monotonic()
    for step in range(400):
        client.send(batch(step, count=1))
    received = receive_all(server, 400, timeout_s=20.0)
    elapsed = time.monotonic() - started

    assert [b.seq for b in received] == list(range(400))
    assert elapsed < 4.0  # 100 windows; a stall until the next heartbeat (0.5 s) in a few would exceed it


def test_a_full_receive_queue_stops_reading_and_taking_from_it_resumes_at_once(session, links) -> None:
    # A queue of ~4 small batches: the link thread stops reading the socket until receive()
    # makes room, and receive() must wake it then (its next poll would be 0.5 s away). With
    # a window of 4, every batch is acknowledged at once, so no ack due shortens that poll.
    config = session(transport={
        "receive_queue_mb": 0.001, "max_in_flight_batches": 4, "heartbeat_interval_s": 1.0, "peer_timeout_s": 10.0,
    })
    server = links(learner(config).start())
    client = links(actor(config).start())
    assert client.wait_connected(5.0)

    for step in range(200):
        client.send(batch(step, count=1))
    time.sleep(0.3)
    queued = server.counters.batches
    started = time.monotonic()
    received = receive_all(server, 200, timeout_s=20.0)
    elapsed = time.monotonic() - started

    assert queued <= 8  # held back by the full queue, not read into memory
    assert [b.seq for b in received] == list(range(200))
    assert [int(b.arrays["state"][0, 0]) for b in received] == list(range(200))
    assert elapsed < 2.0  # ~0.03 s here; waiting for polls that time out instead takes 4-6 s


def test_batches_sent_from_two_threads_arrive_once_each_and_in_sequence(session, links) -> None:
    config = session(transport={"max_in_flight_batches": 8})
    server = links(learner(config).start())
    client = links(actor(config).start())
    assert client.wait_connected(5.0)
    seqs: dict[int, list[int]] = {0: [], 1: []}

    def sender(thread: int) -> None:
        for step in range(150):
            seqs[thread].append(client.send(batch(1000 * thread + step, count=1), {"thread": thread, "step": step}))
            if step % 7 == 0:
                time.sleep(0.001)

    threads = [threading.Thread(target=sender, args=(thread,)) for thread in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    received = receive_all(server, 300)

    assert [b.seq for b in received] == list(range(300))
    assert sorted(seqs[0] + seqs[1]) == list(range(300))
    by_seq = {b.seq: b for b in received}
    for thread in (0, 1):
        steps = [by_seq[seq].info["step"] for seq in seqs[thread]]
        assert steps == list(range(150))  # each thread's batches in its own order, none lost
        assert all(by_seq[seq].info["thread"] == thread for seq in seqs[thread])
        assert all(by_seq[seq].arrays["state"][0, 0] == 1000 * thread + step for step, seq in enumerate(seqs[thread]))


def test_commit_lets_the_actor_forget_its_batches(session, links) -> None:
    config = session()
    server = links(learner(config).start())
    client = links(actor(config).start())
    for step in range(10):
        client.send(batch(step))
    receive_all(server, 10)

    server.commit(server.delivered_state())

    assert wait_until(lambda: client.status().committed_seq == 9)
    assert client.status().outbox["unreleased_batches"] == 0


def test_a_commit_made_just_before_the_learner_closes_reaches_the_actor(session, links) -> None:
    config = session(transport={"peer_timeout_s": 5.0})  # a loaded machine must not reset the link meanwhile
    server = learner(config).start()
    client = links(actor(config).start())
    last = [client.send(batch(step)) for step in range(5)][-1]
    assert len(receive_all(server, 5)) == 5
    # A learner's final checkpoint: commit, then close at once.
    server.commit(server.delivered_state())
    server.close()
    assert client.wait_committed(last, timeout_s=3.0)
    assert client.status().outbox["unreleased_batches"] == 0


def test_two_actors_stream_into_one_learner_each_complete(session, links) -> None:
    config = session()
    server = links(learner(config).start())
    first = links(actor(config, "robot1").start())
    second = links(actor(config, "robot2").start())

    for step in range(20):
        first.send(batch(step))
        second.send(batch(step))
    received = receive_all(server, 40)

    by_actor = {name: [b.seq for b in received if b.actor_id == name] for name in ("robot1", "robot2")}
    assert by_actor == {"robot1": list(range(20)), "robot2": list(range(20))}


def test_an_actor_without_a_learner_keeps_sending_and_delivers_once_the_learner_starts(session, links) -> None:
    config = session()
    client = links(actor(config).start())

    started = time.monotonic()
    connected = client.wait_connected(0.3)
    waited = time.monotonic() - started
    for step in range(15):
        client.send(batch(step))
    server = links(learner(config).start())
    received = receive_all(server, 15)

    assert not connected and waited < 1.0
    assert [b.seq for b in received] == list(range(15))


def test_restarted_learner_gets_exactly_what_its_checkpoint_lacks(session, links) -> None:
    config = session()
    first = learner(config).start()
    client = links(actor(config).start())
    for step in range(20):
        client.send(batch(step))
    receive_all(first, 20)
    checkpoint = {client.outbox.stream_id: 11}  # the checkpoint holds seq 0..11 only
    first.commit(checkpoint)
    wait_until(lambda: client.status().committed_seq == 11)
    first.close()

    second = learner(config)
    second.restore(checkpoint)
    links(second.start())
    for step in range(20, 25):
        client.send(batch(step))
    received = receive_all(second, 13)
    time.sleep(0.3)
    received += second.receive()

    assert [b.seq for b in received] == list(range(12, 25))
    assert client.status().reconnects >= 1


def test_weights_reach_the_actor_and_only_newer_versions_are_taken(session, links) -> None:
    config = session()
    server = links(learner(config).start())
    client = links(actor(config).start())
    client.wait_connected(5)
    time.sleep(0.2)  # let the subscription reach the publisher

    server.publish_weights(1, pack_weights({"w": np.arange(10, dtype=np.float32)}))
    update = wait_until(client.latest_weights)
    repeat = client.latest_weights()

    assert update.version == 1
    assert np.array_equal(update.tensors()["w"], np.arange(10, dtype=np.float32))
    assert repeat is None


def test_weights_are_prepared_in_the_link_thread_and_unusable_ones_are_skipped(session, links) -> None:
    config = session()
    server = links(learner(config).start())

    def prepare(blob: bytes) -> dict:
        tensors = unpack_weights(blob)
        if "w" not in tensors:
            raise KeyError("w")
        return tensors

    client = links(actor(config, prepare_weights=prepare).start())
    client.wait_connected(5)
    time.sleep(0.2)

    server.publish_weights(1, pack_weights({"other": np.zeros(2, np.float32)}))
    time.sleep(0.3)
    skipped = client.latest_weights()
    server.publish_weights(2, pack_weights({"w": np.ones(4, np.float32)}))
    update = wait_until(client.latest_weights)

    assert skipped is None
    assert update.version == 2 and np.array_equal(update.prepared["w"], np.ones(4, np.float32))


def test_a_late_joining_actor_gets_the_latest_weights_at_once(session, links) -> None:
    config = session(transport={"weights_chunk_mb": 0.25})
    server = links(learner(config).start())
    blob = pack_weights({"w": np.random.default_rng(0).standard_normal(300_000).astype(np.float32)})
    server.publish_weights(1, pack_weights({"w": np.zeros(3, np.float32)}))
    server.publish_weights(2, blob)
    time.sleep(0.2)

    client = links(actor(config).start())
    update = wait_until(client.latest_weights, timeout_s=5)

    assert update.version == 2 and update.blob == blob  # 1.2 MB in 5 chunks


def test_a_publisher_refuses_weights_that_are_not_safetensors_or_not_newer(session, links) -> None:
    server = links(learner(session()).start())
    server.publish_weights(3, pack_weights({"w": np.zeros(3, np.float32)}))

    with pytest.raises(ValueError, match="not newer"):
        server.publish_weights(3, pack_weights({"w": np.zeros(3, np.float32)}))
    with pytest.raises(ValueError, match="weights blob declares"):
        server.publish_weights(4, b"\x80\x04not a safetensors blob")


def test_an_actor_with_another_observation_spec_is_refused_with_both_specs_named(session, links) -> None:
    config = session()
    links(learner(config).start())
    wrong = {"image": ArraySpec("|u1", (16, 16, 3)), "state": ArraySpec("<f4", (5,))}
    client = links(ActorLink(config, "robot1", "pick", wrong, ACTION_SPEC).start())

    with pytest.raises(LinkRefused) as error:
        client.wait_connected(5)

    assert "learner expects uint8[8, 8, 3], actor sends uint8[16, 16, 3]" in str(error.value)
    with pytest.raises(LinkRefused):
        client.send(batch(0))


def test_an_actor_of_another_task_is_refused(session, links) -> None:
    config = session()
    links(learner(config).start())
    client = links(ActorLink(config, "robot1", "insert", OBSERVATION_SPEC, ACTION_SPEC).start())

    with pytest.raises(LinkRefused, match="task 'insert' but this learner trains task 'pick'"):
        client.wait_connected(5)
    started = time.monotonic()
    with pytest.raises(LinkRefused, match="task 'insert'"):
        client.wait_received(0, timeout_s=5.0)  # at once, not after the timeout
    assert time.monotonic() - started < 1.0


def test_a_peer_speaking_another_protocol_version_is_refused_with_both_versions(session, links) -> None:
    config = session()
    links(learner(config).start())
    frames = encode(Hello("robot1", "pick", "s" * 32, OBSERVATION_SPEC, ACTION_SPEC))
    frames[0] = frames[0][:4] + struct.pack("<H", 7) + bytes(frames[0][6:])
    dealer = plain_dealer(config)

    dealer.send(join_frames(frames))
    assert dealer.poll(5000)
    reply = unpack(dealer.recv())
    dealer.close()

    assert isinstance(reply, Refuse) and not reply.retry
    assert (reply.learner_protocol, reply.actor_protocol) == (PROTOCOL_VERSION, 7)
    assert "v7" in reply.reason and f"v{PROTOCOL_VERSION}" in reply.reason


def test_an_actor_receiving_another_protocol_version_stops_with_both_versions(session, links) -> None:
    config = session()
    router = zmq.Context.instance().socket(zmq.ROUTER)
    router.linger = 0
    router.bind(f"tcp://127.0.0.1:{config.transitions_port}")
    client = links(actor(config).start())
    assert router.poll(5000)
    identity, packed = router.recv_multipart()
    frames = [bytes(frame) for frame in split_frames(packed)]
    frames[0] = frames[0][:4] + struct.pack("<H", 9) + frames[0][6:]
    router.send_multipart([identity, join_frames(frames)])

    with pytest.raises(LinkRefused) as error:
        client.wait_connected(5)
    router.close()

    assert "v9" in str(error.value) and f"v{PROTOCOL_VERSION}" in str(error.value)


def test_garbage_frames_are_dropped_and_the_learner_keeps_serving(session, links) -> None:
    config = session()
    server = links(learner(config).start())
    dealer = plain_dealer(config)
    junk = (
        [b"\x00" * 3],
        [join_frames([b"RSTP" + struct.pack("<H", PROTOCOL_VERSION) + b"\xc1"])],
        [join_frames([b"RSTP" + struct.pack("<H", PROTOCOL_VERSION) + b"\x81\xa4type\xa5hello", b"x"])],
        [b"GET / HTTP/1.1\r\n"],
        [join_frames([b"RSTP"]), b"second frame"],
    )
    for message in junk:
        dealer.send_multipart(message)
    client = links(actor(config).start())
    client.send(batch(0))
    received = receive_all(server, 1)
    dealer.close()

    assert [b.seq for b in received] == [0]
    assert server.counters.malformed == 5


def test_the_actor_reconnects_after_the_learner_falls_silent(session, links) -> None:
    config = session()
    first = learner(config).start()
    client = links(actor(config).start())
    assert client.wait_connected(5)

    first.close()
    disconnected = wait_until(lambda: not client.status().connected, timeout_s=3)
    links(learner(config).start())
    reconnected = client.wait_connected(5)

    assert disconnected and reconnected
    assert client.status().reconnects >= 1


def test_stats_and_events_reach_the_learner(session, links) -> None:
    config = session()
    server = links(learner(config).start())
    client = links(actor(config).start())
    client.wait_connected(5)

    client.send_stats({"episode_return": 1.5, "jitter_ms_p99": 2})
    client.send_event("episode_end", {"success": True, "steps": 41})
    reports = []
    wait_until(lambda: reports.extend(server.reports()) or len(reports) >= 2)

    kinds = {type(r.message).__name__: r.message for r in reports}
    assert kinds["Stats"].values == {"episode_return": 1.5, "jitter_ms_p99": 2}
    assert kinds["Event"].kind == "episode_end" and kinds["Event"].detail["steps"] == 41


# --------------------------------------------------------------------------- CurveZMQ


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    generate_keys(tmp_path / "keys", "learner")
    generate_keys(tmp_path / "keys" / "actors", "robot1")
    generate_keys(tmp_path / "keys" / "strangers", "intruder")
    return tmp_path / "keys"


def secured(session, keys: Path, client_secret: Path) -> SessionConfig:
    return session(
        server_public_key_file=keys / "learner.key",
        server_secret_key_file=keys / "learner.key_secret",
        client_secret_key_file=client_secret,
        authorized_client_keys_dir=keys / "actors",
    )


def test_an_authorised_actor_streams_over_curve(session, links, keys) -> None:
    config = secured(session, keys, keys / "actors" / "robot1.key_secret")
    server = links(learner(config).start())
    client = links(actor(config).start())

    client.send(batch(0))
    received = receive_all(server, 1)

    assert [b.seq for b in received] == [0]
    assert server.refused_keys() == 0


def test_an_actor_without_an_authorised_key_is_refused_and_logged(session, links, keys, caplog) -> None:
    config = secured(session, keys, keys / "strangers" / "intruder.key_secret")
    caplog.set_level(logging.WARNING)
    server = links(learner(config).start())
    client = links(actor(config).start())

    with pytest.raises(LinkRefused, match="refused this actor's CurveZMQ key"):
        client.wait_connected(5)

    assert server.refused_keys() >= 1
    assert server.receive() == []
    assert any("is not in" in record.getMessage() for record in caplog.records)


def test_a_plain_actor_cannot_talk_to_a_curve_learner(session, links, keys) -> None:
    secure = secured(session, keys, keys / "actors" / "robot1.key_secret")
    server = links(learner(secure).start())
    plain = session()
    client = links(actor(plain).start())

    client.send(batch(0))
    connected = client.wait_connected(1.0)

    assert not connected
    assert server.receive(timeout_s=0.2) == []


def test_acks_for_a_burst_of_batches_are_coalesced_and_the_last_one_covers_the_burst(session, links) -> None:
    config = session(transport={"max_in_flight_batches": 64})
    links(learner(config).start())
    dealer = welcomed_dealer(config)

    for seq in range(64):  # a batch every 0.3 ms: the learner's loop sees about one at a time
        dealer.send(pack(TransitionBatch("s" * 32, seq, batch(seq))))
        time.sleep(0.0003)
    acks = acks_until(dealer, 63)
    dealer.close()

    assert acks and acks[-1].received_seq == 63
    assert len(acks) <= 24  # one per 16 batches (a quarter of the window) or per 2 ms, not one per batch


def test_acks_come_once_a_quarter_of_the_window_in_bytes_is_unacknowledged(session, links) -> None:
    # Batches of ~1 KB against a 16 KB window: a quarter is 4 batches, far below the batch
    # count's quarter (64), so acks follow every ~4 batches even when sent in one burst.
    config = session(transport={"max_in_flight_batches": 256, "max_in_flight_mb": 16 / 1024})
    links(learner(config).start())
    dealer = welcomed_dealer(config)

    for seq in range(40):
        dealer.send(pack(TransitionBatch("s" * 32, seq, batch(seq, count=4))))  # 960 bytes of arrays
    acks = acks_until(dealer, 39)
    dealer.close()

    assert acks and acks[-1].received_seq == 39
    steps = np.diff([-1] + [ack.received_seq for ack in acks])
    assert steps.max() <= 5  # 4 KB of batches (5 x 960 B > 4 KB) never go unacknowledged


def test_the_window_bounds_unacknowledged_bytes_while_the_learner_holds_back(session, links) -> None:
    # The learner's receive queue holds ~1 KB, so it stops reading (and acknowledging) until
    # receive() takes; the actor must then stop at ~6 KB in flight, not at 256 batches.
    config = session(transport={
        "receive_queue_mb": 0.001, "max_in_flight_batches": 256, "max_in_flight_mb": 6 / 1024,
        "heartbeat_interval_s": 1.0, "peer_timeout_s": 10.0,
    })
    server = links(learner(config).start())
    client = links(actor(config).start())
    assert client.wait_connected(5.0)
    message_bytes = len(pack(TransitionBatch(client.status().stream_id, 0, batch(0, count=4))))

    for step in range(100):
        client.send(batch(step, count=4))
    time.sleep(0.3)
    held = client.status()
    received = receive_all(server, 100, timeout_s=10.0)

    assert 0 < held.in_flight_bytes < 6 * 1024 + message_bytes
    assert held.in_flight_batches <= 6 * 1024 // message_bytes + 1
    assert [b.seq for b in received] == list(range(100))
    assert client.wait_received(99, timeout_s=2.0)
    assert wait_until(lambda: client.status().in_flight_batches == 0, timeout_s=2.0)


def test_wait_received_returns_once_the_learner_holds_the_batch_and_times_out_without_one(session, links) -> None:
    config = session()
    client = links(actor(config).start())
    seq = client.send(batch(0))

    started = time.monotonic()
    assert client.wait_received(seq, timeout_s=0.3) is False  # no learner yet
    assert 0.25 < time.monotonic() - started < 2.0

    links(learner(config).start())
    assert client.wait_received(seq, timeout_s=5.0) is True
    assert client.status().received_seq >= seq


def test_a_reconnected_stream_leaves_no_state_behind_for_its_old_connections(session, links) -> None:
    # The same stream says hello from five connections in turn (an actor reconnecting):
    # the learner keeps one peer and the acknowledgement state of that one only.
    config = session()
    server = links(learner(config).start())
    for attempt in range(5):
        dealer = welcomed_dealer(config)
        dealer.send(pack(TransitionBatch("s" * 32, attempt, batch(attempt))))
        assert receive_all(server, 1)[0].seq == attempt
        dealer.close()

    assert len(server.peers()) == 1
    assert wait_until(lambda: len(server._unacked) == len(server._last_ack) == 1, timeout_s=2.0)
    assert len(server._unacked_bytes) == 1
