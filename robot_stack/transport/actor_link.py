"""The actor's end of the link: streams transition batches out, takes weights in.

The control loop only ever calls non-blocking methods: ``send`` stores the batch in the
outbox and returns its sequence number; ``latest_weights`` returns a newer complete
weights version if one has arrived. A background thread runs the link: it says hello,
sends what the learner has not received (at most ``max_in_flight_batches`` batches and
``max_in_flight_mb`` ahead of the learner's acknowledgements), releases what the learner
has committed, assembles weight chunks, exchanges heartbeats, and when the learner falls
silent or restarts it drops the connection and says hello again, resending from what the
learner reports it holds.

When the link is up, idle and inside its window, ``send`` puts the batch on the socket
itself (non-blocking), which spares a wake-up of the link thread per batch. The two
threads take turns on the socket under a lock; the link thread waits on the socket's
file descriptor rather than on the socket, so its waiting never touches the socket while
the caller sends, and whoever touched the socket last checks for input that arrived
meanwhile (ZeroMQ signals that descriptor once per change, not per message).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from robot_stack.config import SessionConfig
from robot_stack.data.spec import ArraySpec
from robot_stack.transport.sockets import (
    WEIGHTS_TOPIC_ALL,
    QuietLog,
    Waker,
    client_keys,
    direct_topic,
    endpoint,
    set_common_options,
    single_frame,
    strip_topic,
    wire_limits,
)
from robot_stack.transport.messages import (
    Ack,
    Event,
    Heartbeat,
    Hello,
    Refuse,
    Stats,
    WeightsChunk,
    Welcome,
    pack,
    pack_transitions,
    unpack,
)
from robot_stack.transport.outbox import Outbox
from robot_stack.transport.security import configure_client
from robot_stack.transport.weights_stream import WeightsAssembler, WeightsUpdate
from robot_stack.transport.wire import DecodeError, VersionMismatch

log = logging.getLogger(__name__)


class LinkRefused(RuntimeError):
    """The learner refused this actor for a reason retrying cannot fix (version, spec, key)."""


@dataclass
class ActorLinkStatus:
    connected: bool
    learner_id: Optional[str]
    stream_id: str
    next_seq: int
    received_seq: int
    committed_seq: int
    weights_version: int
    reconnects: int
    malformed_dropped: int
    refused: Optional[str]
    outbox: dict = field(default_factory=dict)
    sent_directly: int = 0  # batches send() put on the socket itself (the link was idle)
    in_flight_batches: int = 0  # sent on this connection, not yet acknowledged
    in_flight_bytes: int = 0


class ActorLink:
    def __init__(
        self,
        session: SessionConfig,
        actor_id: str,
        task_id: str,
        observation_spec: Mapping[str, ArraySpec],
        action_spec: Mapping[str, ArraySpec],
        outbox_dir: Optional[Path] = None,
        prepare_weights: Optional[Callable[[bytes], Any]] = None,
    ) -> None:
        """``prepare_weights`` runs in the link thread on each new verified blob (e.g.
        ``safetensors.torch.load``), so decoding large weights never stalls the control loop."""
        self.session = session
        self.prepare_weights = prepare_weights
        self.settings = session.transport
        self.actor_id = actor_id
        self.task_id = task_id
        self.observation_spec = dict(observation_spec)
        self.action_spec = dict(action_spec)
        self.limits = wire_limits(session)
        self._keys = client_keys(session)
        directory = Path(outbox_dir) if outbox_dir is not None else self.settings.outbox_dir / actor_id
        self.outbox = Outbox(
            directory,
            memory_limit_bytes=int(self.settings.outbox_memory_mb * 1024**2),
            durable=self.settings.durable_outbox,
            max_disk_bytes=int(self.settings.outbox_max_disk_gb * 1024**3),
        )
        self._send_lock = threading.Lock()
        # Held by whichever thread uses the transitions socket; see the module text.
        self._socket_lock = threading.Lock()
        self._connection: Optional[_Connection] = None
        self._state_lock = threading.Lock()
        self._progress = threading.Condition()  # notified when the learner acknowledges or refuses
        self._reports: list[Any] = []
        self._latest: Optional[WeightsUpdate] = None
        self._taken_version = -1
        self._assembler = WeightsAssembler(self.limits.max_message_bytes * 64)
        self._waker = Waker()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._quiet = QuietLog(log)
        # Owned by the link thread once started.
        self.learner_id: Optional[str] = None
        self.received_seq = -1
        self.reconnects = 0
        self.malformed_dropped = 0
        self.refused: Optional[str] = None
        self._next_send = 0
        self._sent_directly = 0
        # Batches sent and not yet acknowledged, oldest first: (seq, bytes). Under the socket lock.
        self._in_flight: deque[tuple[int, int]] = deque()
        self._in_flight_bytes = 0
        self._window_bytes = int(self.settings.max_in_flight_mb * 1024**2)

    # ----------------------------------------------------------------- control-loop API

    def start(self) -> "ActorLink":
        self._thread = threading.Thread(target=self._run, name=f"actor-link-{self.actor_id}", daemon=True)
        self._thread.start()
        return self

    def send(self, arrays: Mapping[str, np.ndarray], info: Optional[Mapping[str, Any]] = None) -> int:
        """Queue one batch (arrays share a leading transition axis); returns its sequence number.

        Never blocks on the network. Raises LinkRefused if the learner refused this actor,
        OutboxFull if the learner has committed nothing for longer than the disk bound allows.
        """
        if self.refused:
            raise LinkRefused(self.refused)
        with self._send_lock:
            seq = self.outbox.next_seq
            packed = pack_transitions(
                self.outbox.stream_id, seq, arrays, info, time.monotonic(), allocate=self.outbox.allocate
            )
            self.outbox.add(seq, [packed])
        if not self._send_now(seq):
            self._waker.wake()
        return seq

    def _send_now(self, seq: int) -> bool:
        """Send batch ``seq`` from the caller's thread if the link is up and idle, without
        waiting for the socket lock. False: the link thread must act (send it, or read
        what arrived); True also when earlier batches still wait for the link thread,
        which then keeps sending without being woken."""
        if self._next_send < seq:
            return True  # a backlog: the link thread polls without waiting until it is sent
        if not self._socket_lock.acquire(blocking=False):
            return False
        try:
            connection = self._connection
            if (
                connection is None
                or not connection.welcomed
                or connection.blocked
                or connection.reset_reason is not None
                or self._next_send != seq
                or not self._window_open()
            ):
                return False
            frames = self.outbox.frames(seq)
            if frames is None:
                return False
            try:
                connection.socket.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                connection.blocked = True
                return False
            self._next_send = seq + 1
            self._note_sent(seq, frames)
            self._sent_directly += 1
            connection.last_sent = time.monotonic()
            # Sending may have consumed the descriptor's signal for an ack that arrived.
            return not connection.socket.getsockopt(zmq.EVENTS) & zmq.POLLIN
        finally:
            self._socket_lock.release()

    def send_stats(self, values: Mapping[str, Any]) -> None:
        """Best-effort: statistics are not kept across restarts."""
        self._queue_report(Stats(self.actor_id, dict(values)))

    def send_event(self, kind: str, detail: Optional[Mapping[str, Any]] = None) -> None:
        self._queue_report(Event(self.actor_id, kind, dict(detail or {})))

    def latest_weights(self) -> Optional[WeightsUpdate]:
        """A complete weights version newer than the last one taken, or None. Never blocks."""
        with self._state_lock:
            update = self._latest
            if update is None or update.version <= self._taken_version:
                return None
            self._taken_version = update.version
            # Not kept here: once the caller lets it go, its buffer assembles a later version.
            self._latest = None
            return update

    def wait_connected(self, timeout_s: float) -> bool:
        """True once the learner has welcomed this actor; raises LinkRefused if it refused."""
        deadline = time.monotonic() + timeout_s
        while not self._connected.wait(timeout=min(0.05, max(0.0, deadline - time.monotonic()))):
            if self.refused:
                raise LinkRefused(self.refused)
            if time.monotonic() >= deadline:
                return False
        return True

    def wait_received(self, seq: int, timeout_s: float) -> bool:
        """True once the learner has received every batch up to seq; False after timeout_s.
        For a producer that would rather wait than let the outbox grow, and before an exit."""
        return self._wait_for(lambda: self.received_seq >= seq, timeout_s)

    def wait_committed(self, seq: int, timeout_s: float) -> bool:
        """True once the learner has committed every batch up to seq (e.g. before a clean exit)."""
        return self._wait_for(lambda: self.outbox.committed_seq >= seq, timeout_s)

    def _wait_for(self, condition: Callable[[], bool], timeout_s: float) -> bool:
        # The link thread notifies on every ack, welcome and refusal.
        deadline = time.monotonic() + timeout_s
        with self._progress:
            while not condition():
                if self.refused:
                    raise LinkRefused(self.refused)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._progress.wait(remaining)
        return True

    def status(self) -> ActorLinkStatus:
        return ActorLinkStatus(
            connected=self._connected.is_set(),
            learner_id=self.learner_id,
            stream_id=self.outbox.stream_id,
            next_seq=self.outbox.next_seq,
            received_seq=self.received_seq,
            committed_seq=self.outbox.committed_seq,
            weights_version=self._assembler.completed_version,
            reconnects=self.reconnects,
            malformed_dropped=self.malformed_dropped,
            refused=self.refused,
            outbox=self.outbox.sizes(),
            sent_directly=self._sent_directly,
            in_flight_batches=len(self._in_flight),
            in_flight_bytes=self._in_flight_bytes,
        )

    def close(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        self._waker.wake()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
        self.outbox.close()
        self._waker.close()

    def __enter__(self) -> "ActorLink":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def _queue_report(self, message: Any) -> None:
        with self._state_lock:
            if len(self._reports) < 10_000:
                self._reports.append(message)
        self._waker.wake()

    # ----------------------------------------------------------------- link thread

    def _run(self) -> None:
        context = zmq.Context.instance()
        weights = context.socket(zmq.SUB)
        set_common_options(weights, self.session)
        if self._keys:
            configure_client(weights, *self._keys)
        weights.setsockopt(zmq.SUBSCRIBE, WEIGHTS_TOPIC_ALL)
        weights.setsockopt(zmq.SUBSCRIBE, direct_topic(self.actor_id))
        weights.connect(endpoint(self.session.learner_host, self.session.weights_port))
        connection: Optional[_Connection] = None
        try:
            while not self._stop.is_set():
                if self.refused:
                    self._stop.wait(0.1)
                    continue
                if connection is None:
                    with self._socket_lock:
                        connection = self._connection = self._open(context)
                    poller = zmq.Poller()
                    poller.register(connection.fd, zmq.POLLIN)
                    poller.register(connection.monitor, zmq.POLLIN)
                    poller.register(weights, zmq.POLLIN)
                    poller.register(self._waker.read_fd, zmq.POLLIN)
                ready = dict(poller.poll(timeout=self._poll_timeout_ms(connection)))
                if self._waker.read_fd in ready:
                    self._waker.drain()
                if weights in ready:
                    self._receive_weights(weights)
                if connection.monitor in ready:
                    self._watch_handshake(connection)
                with self._socket_lock:
                    if connection.socket.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                        self._receive(connection)
                    now = time.monotonic()
                    if connection.reset_reason is None:
                        connection.reset_reason = self._check_liveness(connection, now)
                    if connection.reset_reason is not None:
                        log.info("link to learner reset: %s; reconnecting", connection.reset_reason)
                        connection.close()
                        connection = self._connection = None
                        self._connected.clear()
                        self.reconnects += 1
                        continue
                    if connection.welcomed:
                        self._send_pending(connection)
                        self._send_reports(connection)
                        if now - connection.last_sent >= self.settings.heartbeat_interval_s:
                            self._send(connection, Heartbeat(self.actor_id, now))
                    # Sending may have consumed the descriptor's signal for input that arrived.
                    connection.input_waiting = bool(connection.socket.getsockopt(zmq.EVENTS) & zmq.POLLIN)
        except Exception:  # the link thread must never die silently
            log.exception("actor link thread failed")
            self.refused = self.refused or "the actor link thread failed; see the log"
            self._notify_progress()
            raise
        finally:
            with self._socket_lock:
                if connection is not None:
                    connection.close()
                self._connection = None
            weights.close(linger=0)

    def _open(self, context: zmq.Context) -> "_Connection":
        socket = context.socket(zmq.DEALER)
        set_common_options(socket, self.session)
        socket.immediate = True  # queue nothing to a learner that is not connected
        if self._keys:
            configure_client(socket, *self._keys)
        monitor = socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL)
        socket.connect(endpoint(self.session.learner_host, self.session.transitions_port))
        connection = _Connection(socket, monitor, socket.getsockopt(zmq.FD))
        hello = Hello(
            self.actor_id, self.task_id, self.outbox.stream_id, self.observation_spec, self.action_spec,
            self._assembler.completed_version,
        )
        # With `immediate`, a hello sent before the TCP connection is up would be refused by
        # ZeroMQ; it is sent again until the learner answers.
        self._send(connection, hello, retry_later=True)
        connection.hello = hello
        return connection

    def _poll_timeout_ms(self, connection: "_Connection") -> int:
        if connection.input_waiting:
            return 0
        if connection.blocked:
            return 10  # ZeroMQ's queue to the learner is full: give it time to drain
        if connection.welcomed and self._next_send < self.outbox.next_seq and self._window_open():
            return 0
        return max(1, int(self.settings.heartbeat_interval_s * 1000 / 2))

    def _window_open(self) -> bool:
        """Room for one more batch: fewer than max_in_flight_batches and max_in_flight_mb
        unacknowledged (one batch always fits, however large)."""
        return (
            self._next_send - self.received_seq <= self.settings.max_in_flight_batches
            and (self._in_flight_bytes < self._window_bytes or not self._in_flight)
        )

    def _note_sent(self, seq: int, frames: list) -> None:
        size = sum(len(frame) for frame in frames)
        self._in_flight.append((seq, size))
        self._in_flight_bytes += size

    def _forget_in_flight(self, received_seq: Optional[int] = None) -> None:
        """Drop what the learner acknowledged (everything, when sending restarts from an earlier batch)."""
        in_flight = self._in_flight
        if received_seq is None:
            in_flight.clear()
            self._in_flight_bytes = 0
            return
        while in_flight and in_flight[0][0] <= received_seq:
            self._in_flight_bytes -= in_flight.popleft()[1]

    def _check_liveness(self, connection: "_Connection", now: float) -> Optional[str]:
        if not connection.welcomed:
            if connection.hello_pending and now - connection.last_sent >= 0.1:
                self._send(connection, connection.hello, retry_later=True)
            if now - connection.opened > self.settings.handshake_timeout_s:
                return f"no welcome from {self.session.learner_host}:{self.session.transitions_port} within {self.settings.handshake_timeout_s} s"
            return None
        silent = now - connection.last_heard
        if silent > self.settings.peer_timeout_s:
            return f"learner silent for {silent:.1f} s"
        return None

    def _send(self, connection: "_Connection", message: Any, retry_later: bool = False) -> bool:
        try:
            connection.socket.send(pack(message), flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            if retry_later and isinstance(message, Hello):
                connection.hello_pending = True
            return False
        if isinstance(message, Hello):
            connection.hello_pending = False
        connection.last_sent = time.monotonic()
        return True

    def _send_pending(self, connection: "_Connection") -> None:
        connection.blocked = False
        while self._next_send < self.outbox.next_seq and self._window_open():
            frames = self.outbox.frames(self._next_send)
            if frames is None:  # already committed (released) meanwhile
                self._next_send += 1
                continue
            try:
                connection.socket.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                connection.blocked = True
                return
            self._note_sent(self._next_send, frames)
            self._next_send += 1
            connection.last_sent = time.monotonic()

    def _send_reports(self, connection: "_Connection") -> None:
        with self._state_lock:
            reports, self._reports = self._reports, []
        for message in reports:
            self._send(connection, message)

    def _receive(self, connection: "_Connection") -> None:
        for _ in range(1000):
            try:
                frames = connection.socket.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                message = unpack(single_frame(frames), self.limits)
            except VersionMismatch as error:
                self._refuse_for_good(str(error))
                return
            except Exception as error:  # DecodeError, or anything else the decoder met: never the link's end
                self.malformed_dropped += 1
                reason = str(error) if isinstance(error, DecodeError) else f"{type(error).__name__}: {error}"
                self._quiet.warning("malformed", "dropped a malformed message from the learner: %s", reason)
                continue
            connection.last_heard = time.monotonic()
            if isinstance(message, Welcome):
                self._on_welcome(connection, message)
            elif isinstance(message, Ack):
                self._on_ack(message)
            elif isinstance(message, Refuse):
                if message.retry:
                    connection.reset_reason = f"learner asked for a new hello ({message.reason})"
                    return
                self._refuse_for_good(
                    f"learner refused this actor: {message.reason} "
                    f"(learner protocol v{message.learner_protocol}, actor protocol v{message.actor_protocol})"
                )
                return
            elif not isinstance(message, Heartbeat):
                self._quiet.warning("unexpected", "ignored an unexpected %s from the learner", type(message).__name__)

    def _on_welcome(self, connection: "_Connection", welcome: Welcome) -> None:
        if welcome.stream_id != self.outbox.stream_id:
            connection.reset_reason = f"welcome names stream {welcome.stream_id}, ours is {self.outbox.stream_id}"
            return
        connection.welcomed = True
        self.learner_id = welcome.learner_id
        self.received_seq = welcome.received_seq
        self.outbox.release(welcome.committed_seq)
        # Resend everything the learner does not hold; it drops whatever it already has.
        self._next_send = max(welcome.received_seq + 1, self.outbox.committed_seq + 1)
        self._forget_in_flight()
        self._connected.set()
        self._notify_progress()
        log.info(
            "connected to learner %s: stream %s, learner holds up to seq %d (committed %d), resending from %d",
            welcome.learner_id, welcome.stream_id, welcome.received_seq, welcome.committed_seq, self._next_send,
        )

    def _on_ack(self, ack: Ack) -> None:
        if ack.stream_id != self.outbox.stream_id:
            return
        self.received_seq = ack.received_seq
        self.outbox.release(ack.committed_seq)
        if ack.rewind and ack.received_seq + 1 < self._next_send:
            self._next_send = ack.received_seq + 1
            self._forget_in_flight()
        else:
            self._forget_in_flight(ack.received_seq)
        self._notify_progress()

    def _notify_progress(self) -> None:
        with self._progress:
            self._progress.notify_all()

    def _receive_weights(self, socket: zmq.Socket) -> None:
        for _ in range(1000):
            try:
                frames = socket.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                message = unpack(strip_topic(single_frame(frames)), self.limits)
                if not isinstance(message, WeightsChunk):
                    raise DecodeError(f"a {type(message).__name__} on the weights channel")
                update = self._assembler.add(message, time.monotonic())
            except VersionMismatch as error:
                self._refuse_for_good(str(error))
                return
            except Exception as error:  # as in _receive
                self.malformed_dropped += 1
                reason = str(error) if isinstance(error, DecodeError) else f"{type(error).__name__}: {error}"
                self._quiet.warning("weights", "dropped a weights message: %s", reason)
                continue
            if update is not None and self.prepare_weights is not None:
                try:
                    update = dataclasses.replace(update, prepared=self.prepare_weights(update.blob))
                except Exception as error:  # a blob our own model cannot take: keep the old weights
                    self._quiet.warning("prepare", "weights version %d not usable: %s", update.version, error)
                    update = None
            if update is not None:
                with self._state_lock:
                    self._latest = update

    def _watch_handshake(self, connection: "_Connection") -> None:
        while True:
            try:
                event = recv_monitor_message(connection.monitor, flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self._refuse_for_good(
                    "the learner refused this actor's CurveZMQ key: add its public key file to the learner's "
                    "authorized_client_keys_dir, and check server_public_key_file names the learner's key"
                )
            elif event["event"] == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
                self._quiet.warning(
                    "handshake", "ZeroMQ handshake with the learner failed (is authentication configured on both sides?)"
                )

    def _refuse_for_good(self, reason: str) -> None:
        if self.refused is None:
            log.error("%s", reason)
        self.refused = reason
        self._connected.clear()
        self._notify_progress()


@dataclass
class _Connection:
    socket: zmq.Socket
    monitor: zmq.Socket
    fd: int  # signals changes on the socket (edge-triggered): check EVENTS after each use
    opened: float = field(default_factory=time.monotonic)
    last_heard: float = field(default_factory=time.monotonic)
    last_sent: float = 0.0
    welcomed: bool = False
    hello: Optional[Hello] = None
    hello_pending: bool = False
    blocked: bool = False
    input_waiting: bool = False  # input arrived that the descriptor will not signal again
    reset_reason: Optional[str] = None

    def close(self) -> None:
        try:
            self.socket.disable_monitor()
        except zmq.ZMQError:
            pass
        self.monitor.close(linger=0)
        self.socket.close(linger=0)
