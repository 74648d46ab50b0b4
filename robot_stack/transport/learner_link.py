"""The learner's end of the link: takes transition batches from any number of actors,
publishes weights to all of them.

Exactly-once delivery rests on three sequence numbers per actor stream:
- received: the highest batch the link thread has queued (later copies are duplicates);
- delivered: the highest batch ``receive`` has handed to the training loop;
- committed: the highest batch saved in a checkpoint (``commit``), which the actor may forget.

The training loop checkpoints ``delivered_state()`` together with its replay buffer, calls
``commit`` with it once the checkpoint is on disk, and after a restart passes the
checkpoint's state to ``restore``: actors then resend exactly what the checkpoint lacks.

No message can stop the link thread: one that fails to decode, or to be handled, is logged
naming the peer and what was wrong, and dropped. With ``check_batches`` each batch is
checked against the transition spec its actor announced before it is queued (see
``_reject`` for what a rejected batch does to the sequence numbers), and Stats and Events
are held to ``ReportRules`` per actor.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from robot_stack.config import SessionConfig
from robot_stack.data.spec import ArraySpec, check_batch, transition_batch_spec
from robot_stack.transport.sockets import (
    WEIGHTS_TOPIC_ALL,
    WEIGHTS_TOPIC_DIRECT,
    QuietLog,
    Waker,
    endpoint,
    server_keys,
    set_common_options,
    single_frame,
    wire_limits,
)
from robot_stack.transport.messages import (
    Ack,
    Event,
    Heartbeat,
    Hello,
    Refuse,
    Stats,
    TransitionBatch,
    Welcome,
    pack,
    spec_mismatch,
    unpack,
)
from robot_stack.transport.security import (
    HANDSHAKE_EVENTS,
    AuthorisedKeys,
    configure_server,
    handshake_failure,
    start_authenticator,
)
from robot_stack.transport.validation import (
    DEFAULT_REPORT_RULES,
    ReportBudget,
    ReportRules,
    detail_problem,
    scalar_problem,
)
from robot_stack.transport.weights_stream import check_safetensors, chunk_weights, new_blob_id
from robot_stack.transport.wire import PROTOCOL_VERSION, DecodeError, VersionMismatch

log = logging.getLogger(__name__)


class PortInUse(RuntimeError):
    """Another process holds a port the learner must listen on."""

    # What a command that fails this way exits with: the task session then picks other ports.
    exit_code = 3

    def __init__(self, host: str, port: int, field: str):
        super().__init__(
            f"port {port} on {host} ({field}) is in use by another process: stop that process "
            f"or set {field} to a free port"
        )
        self.host, self.port, self.field = host, port, field


ACK_DELAY_S = 0.002  # longest an ack waits to be coalesced with those of later batches
# On close, how long the last acks (the final checkpoint's commit) may take to leave, and how
# long the connections stay up after a commit went out: an actor's socket drops what it has
# received but not yet read once the connection goes, so its link thread needs a moment.
CLOSE_LINGER_MS = 1000
COMMIT_GRACE_S = 0.5


@dataclass(frozen=True)
class ReceivedBatch:
    actor_id: str
    stream_id: str
    seq: int
    arrays: Mapping[str, np.ndarray]  # views of the received frame, no copy (writable: the frame belongs to this process)
    info: Mapping[str, Any]
    sent_time: float
    received_time: float
    nbytes: int = 0  # of the arrays
    rejected: bool = False  # a placeholder that only moves the stream's delivered seq (see _reject)

    @property
    def count(self) -> int:
        return next(iter(self.arrays.values())).shape[0] if self.arrays else 0


@dataclass(frozen=True)
class Report:
    """A Stats or Event message from an actor."""

    actor_id: str
    message: Any
    received_time: float


@dataclass
class PeerInfo:
    actor_id: str
    task_id: str
    stream_id: str
    last_heard: float
    batches: int = 0


@dataclass
class LearnerLinkCounters:
    batches: int = 0
    transitions: int = 0
    bytes: int = 0
    duplicates: int = 0
    malformed: int = 0
    refused: int = 0
    rejected: int = 0  # well-formed batches whose content did not match the announced spec
    reports_dropped: int = 0  # Stats/Events (or stats values) that broke the report rules
    handshakes_failed: int = 0  # CurveZMQ handshakes without a key or with one that does not decrypt
    weights_published: int = 0


class LearnerLink:
    def __init__(
        self,
        session: SessionConfig,
        learner_id: str = "learner",
        task_id: Optional[str] = None,
        observation_spec: Optional[Mapping[str, ArraySpec]] = None,
        action_spec: Optional[Mapping[str, ArraySpec]] = None,
        check_batches: bool = False,
        report_rules: ReportRules = DEFAULT_REPORT_RULES,
    ) -> None:
        """``check_batches``: batches carry the transition layout (``transition_batch_spec``
        of the specs each actor announced) and each is checked before it is queued."""
        self.session = session
        self.check_batches = check_batches
        self.report_rules = report_rules
        self.settings = session.transport
        self.learner_id = learner_id
        self.task_id = task_id
        self.observation_spec = dict(observation_spec) if observation_spec is not None else None
        self.action_spec = dict(action_spec) if action_spec is not None else None
        self.limits = wire_limits(session)
        self._keys = server_keys(session)
        self._authorised = AuthorisedKeys(session.authorized_client_keys_dir) if self._keys else None
        self._queue_limit = int(self.settings.receive_queue_mb * 1024**2)
        self._chunk_bytes = int(self.settings.weights_chunk_mb * 1024**2)
        self._lock = threading.Lock()
        self._queue: deque[ReceivedBatch] = deque()
        self._queue_bytes = 0
        self._queue_ready = threading.Condition(self._lock)
        self._reading_paused = False  # the queue was full when the link thread last looked
        self._reports: deque[Report] = deque(maxlen=10_000)
        self._received: dict[str, int] = {}
        self._delivered: dict[str, int] = {}
        self._committed: dict[str, int] = {}
        self._commit_pending = False
        self._commit_sent_at = -math.inf
        self._weights: Optional[tuple[int, bytes, bytes]] = None  # version, blob, blob id
        self._weights_pending = False
        self._peers: dict[bytes, PeerInfo] = {}
        self._ack_due: set[bytes] = set()
        self._unacked: dict[bytes, int] = {}  # batches received from a peer since its last ack
        self._unacked_bytes: dict[bytes, int] = {}  # and their bytes
        self._last_ack: dict[bytes, float] = {}
        # Acks are coalesced: one per quarter of the actor's window (max_in_flight_batches or
        # max_in_flight_mb, whichever fills first) or per ACK_DELAY_S, whichever comes first (a
        # commit or a gap is acknowledged at once), so a stream of small batches does not cost
        # an ack message each way per batch, and the window reopens long before it is used up.
        self._ack_every = max(1, self.settings.max_in_flight_batches // 4)
        self._ack_every_bytes = max(1, int(self.settings.max_in_flight_mb * 1024**2) // 4)
        self._gaps: set[bytes] = set()
        self._batch_specs: dict[bytes, dict[str, ArraySpec]] = {}  # per connection, from its hello
        self._report_budgets: dict[bytes, ReportBudget] = {}
        self._stats_names: dict[str, set[str]] = {}  # per actor id: survives its reconnections
        self.counters = LearnerLinkCounters()
        self._waker = Waker()
        self._stop = threading.Event()
        self._bound = threading.Event()
        self._error: Optional[BaseException] = None
        self._thread: Optional[threading.Thread] = None
        self._quiet = QuietLog(log)

    # ----------------------------------------------------------------- training-loop API

    def restore(self, state: Mapping[str, int]) -> None:
        """Before start: the per-stream sequence numbers saved in the checkpoint being resumed."""
        if self._thread is not None:
            raise RuntimeError("restore() must come before start()")
        for stream, seq in state.items():
            self._received[stream] = self._delivered[stream] = self._committed[stream] = int(seq)

    def start(self, timeout_s: float = 10.0) -> "LearnerLink":
        self._thread = threading.Thread(target=self._run, name="learner-link", daemon=True)
        self._thread.start()
        if not self._bound.wait(timeout_s) or self._error is not None:
            if isinstance(self._error, PortInUse):
                raise self._error
            raise RuntimeError(f"learner link failed to start: {self._error}")
        return self

    def receive(self, max_batches: Optional[int] = None, timeout_s: float = 0.0) -> list[ReceivedBatch]:
        """Batches received since the last call (waits up to timeout_s for the first one)."""
        with self._queue_ready:
            if not self._queue and timeout_s > 0:
                self._queue_ready.wait(timeout_s)
            taken = []
            popped = False
            while self._queue and (max_batches is None or len(taken) < max_batches):
                batch = self._queue.popleft()
                popped = True
                self._queue_bytes -= batch.nbytes
                self._delivered[batch.stream_id] = batch.seq
                if not batch.rejected:
                    taken.append(batch)
            resume = popped and self._reading_paused
        if resume:
            self._waker.wake()  # the queue has room again: the link thread reads the router again
        return taken

    def delivered_state(self) -> dict[str, int]:
        """Per-stream sequence numbers of everything ``receive`` has returned: save it with the buffer."""
        with self._lock:
            return dict(self._delivered)

    def commit(self, state: Mapping[str, int]) -> None:
        """A checkpoint holding ``state`` is on disk: actors may forget those batches."""
        with self._lock:
            for stream, seq in state.items():
                if seq > self._committed.get(stream, -1):
                    self._committed[stream] = int(seq)
            self._commit_pending = True
        self._waker.wake()

    def publish_weights(self, version: int, blob: bytes) -> None:
        """Send a safetensors blob to every actor, now and to any actor that joins later."""
        check_safetensors(blob)
        with self._lock:
            if self._weights is not None and version <= self._weights[0]:
                raise ValueError(f"weights version {version} is not newer than the published {self._weights[0]}")
            self._weights = (version, blob, new_blob_id())
            self._weights_pending = True
        self._waker.wake()

    def reports(self) -> list[Report]:
        with self._lock:
            taken = list(self._reports)
            self._reports.clear()
            return taken

    def peers(self) -> list[PeerInfo]:
        with self._lock:
            return [PeerInfo(**vars(peer)) for peer in self._peers.values()]

    def refused_keys(self) -> int:
        return self._authorised.refused if self._authorised else 0

    def close(self, timeout_s: float = 2.0 + COMMIT_GRACE_S + CLOSE_LINGER_MS / 1000) -> None:
        """Stop the link; acknowledgements due (a commit made just before) are sent first."""
        self._stop.set()
        self._waker.wake()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
        self._waker.close()

    def __enter__(self) -> "LearnerLink":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ----------------------------------------------------------------- link thread

    def _run(self) -> None:
        # A context of its own: terminating it on the way out waits (up to CLOSE_LINGER_MS) until
        # the last acks have left, so a commit made just before close() reaches the actors.
        context = zmq.Context()
        authenticator = None
        router = context.socket(zmq.ROUTER)
        publisher = context.socket(zmq.XPUB)
        monitors: list[zmq.Socket] = []
        try:
            for socket in (router, publisher):
                set_common_options(socket, self.session)
                if self._keys:
                    configure_server(socket, self._keys)
            if self._keys:
                authenticator = start_authenticator(context, self._authorised)
                monitors = [socket.get_monitor_socket(HANDSHAKE_EVENTS) for socket in (router, publisher)]
            # Every subscription reaches us, also a repeated one from a restarted actor,
            # so a late or returning actor gets the latest weights at once.
            publisher.setsockopt(zmq.XPUB_VERBOSE, 1)
            publisher.sndhwm = 10_000
            _bind(router, self.session.learner_host, self.session.transitions_port, "session.transitions_port")
            _bind(publisher, self.session.learner_host, self.session.weights_port, "session.weights_port")
        except Exception as error:
            self._error = error
            self._bound.set()
            _close_monitored(router, publisher, monitors)
            if authenticator is not None:
                authenticator.stop()
            context.term()
            return
        self._bound.set()
        last_heartbeat = 0.0
        reading, not_reading = zmq.Poller(), zmq.Poller()
        for poller in (reading, not_reading):
            poller.register(publisher, zmq.POLLIN)
            poller.register(self._waker.read_fd, zmq.POLLIN)
            for monitor in monitors:
                poller.register(monitor, zmq.POLLIN)
        reading.register(router, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                # While the receive queue is full the router is not read, so TCP pushes back.
                poller = reading if self._queue_has_room() else not_reading
                timeout_ms = ACK_DELAY_S * 1000 if self._ack_due else self.settings.heartbeat_interval_s * 1000 / 2
                ready = dict(poller.poll(timeout=max(1, int(timeout_ms))))
                if self._waker.read_fd in ready:
                    self._waker.drain()
                if router in ready:
                    self._receive(router)
                if publisher in ready:
                    self._subscriptions(publisher)
                for monitor in monitors:
                    if monitor in ready:
                        self._handshake_failures(monitor)
                self._publish_pending(publisher)
                self._send_acks(router)
                now = time.monotonic()
                if now - last_heartbeat >= self.settings.heartbeat_interval_s:
                    self._heartbeat(router, now)
                    last_heartbeat = now
        except Exception as error:
            self._error = error
            log.exception("learner link thread failed")
            raise
        finally:
            try:
                self._send_acks(router)  # a commit made since the last turn (the final checkpoint's)
            except zmq.ZMQError as error:
                log.warning("could not send the last acknowledgements: %s", error)
            grace = self._commit_sent_at + COMMIT_GRACE_S - time.monotonic()
            if grace > 0:
                time.sleep(grace)
            _close_monitored(router, publisher, monitors, router_linger_ms=CLOSE_LINGER_MS)
            if authenticator is not None:
                authenticator.stop()
            context.term()

    def _queue_has_room(self) -> bool:
        with self._lock:
            self._reading_paused = self._queue_bytes >= self._queue_limit
            return not self._reading_paused

    def _receive(self, router: zmq.Socket) -> None:
        # Batches are handed to the training thread together, under one lock, at the end.
        arrived: list[ReceivedBatch] = []
        with self._lock:
            room = self._queue_limit - self._queue_bytes  # only grows meanwhile (receive() takes)
        for _ in range(256):
            if room <= 0:
                break
            try:
                frames = router.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            identity, body = frames[0].bytes, frames[1:]
            try:
                item = self._handle(router, identity, body)
            except Exception as error:  # a bug met by one message must not stop every actor's link
                self.counters.malformed += 1
                log.debug("handling a message failed", exc_info=True)
                self._quiet.warning(
                    "unhandled", "dropped a message from %s that could not be handled: %s: %s",
                    self._peer_name(identity), type(error).__name__, error,
                )
                continue
            if item is not None:
                arrived.append(item)
                room -= item.nbytes
            if self._ack_now(identity):
                # Acknowledge now, not after the whole read: the actor's window reopens
                # while the rest is read, instead of the stream stopping once per window.
                self._send_acks(router)
        if arrived:
            with self._queue_ready:
                self._queue.extend(arrived)
                self._queue_bytes += sum(item.nbytes for item in arrived)
                self._queue_ready.notify_all()

    def _handle(self, router: zmq.Socket, identity: bytes, body: list) -> Optional[ReceivedBatch]:
        """One received message; returns what to queue for the training thread, if anything."""
        now = time.monotonic()
        try:
            message = unpack(single_frame(body), self.limits)
        except VersionMismatch as error:
            self.counters.refused += 1
            self._quiet.warning("version", "refused a connection: %s", error)
            self._reply(router, identity, Refuse(str(error), PROTOCOL_VERSION, error.peer_version))
            return None
        except Exception as error:  # DecodeError, or anything else the decoder met
            self.counters.malformed += 1
            reason = str(error) if isinstance(error, DecodeError) else f"{type(error).__name__}: {error}"
            self._quiet.warning("malformed", "dropped a malformed message from %s: %s", self._peer_name(identity), reason)
            return None
        if isinstance(message, Hello):
            self._on_hello(router, identity, message, now)
            return None
        peer = self._peers.get(identity)
        if peer is None:
            # Typically our own restart: the actor's socket reconnected by itself.
            self._reply(router, identity, Refuse("this learner does not know the connection; say hello", retry=True))
            return None
        peer.last_heard = now
        if isinstance(message, TransitionBatch):
            return self._on_batch(identity, peer, message, now)
        if isinstance(message, (Stats, Event)):
            report = self._checked_report(identity, peer, message, now)
            if report is not None:
                with self._lock:
                    self._reports.append(Report(peer.actor_id, report, now))
        elif not isinstance(message, Heartbeat):
            self._quiet.warning("unexpected", "ignored an unexpected %s from %s", type(message).__name__, peer.actor_id)
        return None

    def _peer_name(self, identity: bytes) -> str:
        peer = self._peers.get(identity)
        return f"actor '{peer.actor_id}'" if peer else f"an unknown peer (connection {identity.hex()})"

    def _on_hello(self, router: zmq.Socket, identity: bytes, hello: Hello, now: float) -> None:
        problems = []
        if self.task_id is not None and hello.task_id != self.task_id:
            problems.append(f"task '{hello.task_id}' but this learner trains task '{self.task_id}'")
        if self.observation_spec is not None:
            problems += spec_mismatch(self.observation_spec, hello.observation_spec, "observation")
        if self.action_spec is not None:
            problems += spec_mismatch(self.action_spec, hello.action_spec, "action")
        if problems:
            self.counters.refused += 1
            reason = f"actor '{hello.actor_id}' does not match this learner: " + "; ".join(problems)
            self._quiet.warning(f"refused:{hello.actor_id}", "refused: %s", reason)
            self._reply(router, identity, Refuse(reason))
            return
        with self._lock:
            for old_identity, peer in list(self._peers.items()):
                if peer.stream_id == hello.stream_id and old_identity != identity:
                    self._forget_peer(old_identity)  # the same actor, reconnected
            self._peers[identity] = PeerInfo(hello.actor_id, hello.task_id, hello.stream_id, now)
            if self.check_batches:
                self._batch_specs[identity] = transition_batch_spec(hello.observation_spec, hello.action_spec)
            received = self._received.setdefault(hello.stream_id, -1)
            committed = self._committed.get(hello.stream_id, -1)
            weights_version = self._weights[0] if self._weights else -1
        log.info(
            "actor '%s' connected (stream %s; holding up to seq %d, committed %d)",
            hello.actor_id, hello.stream_id, received, committed,
        )
        self._reply(
            router, identity,
            Welcome(self.learner_id, hello.stream_id, received, committed, weights_version, self.settings.heartbeat_interval_s),
        )

    def _on_batch(self, identity: bytes, peer: PeerInfo, batch: TransitionBatch, now: float) -> Optional[ReceivedBatch]:
        """The batch to hand to the training thread, or None (a duplicate, a gap, another stream)."""
        if batch.stream_id != peer.stream_id:
            self.counters.malformed += 1
            self._quiet.warning("stream", "actor %s sent a batch of another stream; dropped", peer.actor_id)
            return None
        received = self._received.get(batch.stream_id, -1)
        size = batch.nbytes
        self._ack_due.add(identity)
        self._unacked[identity] = self._unacked.get(identity, 0) + 1
        self._unacked_bytes[identity] = self._unacked_bytes.get(identity, 0) + size
        if batch.seq <= received:
            self.counters.duplicates += 1
            return None
        if batch.seq > received + 1:
            # A gap: ask the actor to resend from what we hold rather than accept out of order.
            self._gaps.add(identity)
            return None
        spec = self._batch_specs.get(identity)
        if spec is not None:
            try:
                check_batch(batch.arrays, spec, where=f"batch {batch.seq} of stream {batch.stream_id} from actor '{peer.actor_id}'")
            except ValueError as error:
                return self._reject(peer, batch, str(error), now)
        item = ReceivedBatch(
            peer.actor_id, batch.stream_id, batch.seq, batch.arrays, batch.info, batch.sent_time, now, size
        )
        self._received[batch.stream_id] = batch.seq  # only this thread writes it once started
        peer.batches += 1
        self.counters.batches += 1
        self.counters.transitions += batch.count
        self.counters.bytes += size
        return item

    def _reject(self, peer: PeerInfo, batch: TransitionBatch, problem: str, now: float) -> ReceivedBatch:
        """A placeholder for a batch whose content is unusable.

        Rejecting consumes the batch without storing it. Its seq counts as received, so the
        ack covers it and the actor moves on: refusing to acknowledge it would stall the
        stream for good, since the actor's outbox resends the same bytes after every
        reconnection. The placeholder queued in its place moves the stream's delivered seq
        past it once the training loop has taken the batches before it, so a checkpoint
        commits it and the actor can forget it, like any batch, in order. Its transitions
        are neither stored nor counted as received (counters.rejected counts it instead):
        the loss is that one batch, and the log says which, from whom and why."""
        self.counters.rejected += 1
        self._quiet.warning(f"rejected:{peer.actor_id}", "rejected %s; its transitions are not stored", problem)
        self._received[batch.stream_id] = batch.seq
        return ReceivedBatch(peer.actor_id, batch.stream_id, batch.seq, {}, {}, batch.sent_time, now, 0, rejected=True)

    def _checked_report(self, identity: bytes, peer: PeerInfo, message: Any, now: float) -> Optional[Any]:
        """The Stats or Event to pass to the training loop (a Stats may lose values), or None."""
        rules = self.report_rules
        kind = "stats" if isinstance(message, Stats) else f"event '{message.kind}'"
        budget = self._report_budgets.get(identity)
        if budget is None:
            budget = self._report_budgets[identity] = ReportBudget(rules, now)
        if not budget.take(now):
            return self._drop_report(peer, kind, f"more than {rules.messages_per_s:g} reports a second")
        if isinstance(message, Event):
            problem = detail_problem(message.detail, rules)
            return message if problem is None else self._drop_report(peer, kind, problem)
        if len(message.values) > rules.max_keys:
            return self._drop_report(peer, kind, f"{len(message.values)} values; at most {rules.max_keys}")
        names = self._stats_names.setdefault(peer.actor_id, set())
        kept, problems = {}, []
        for name, value in message.values.items():
            problem = scalar_problem(name, value, rules)
            if problem is None and name not in names:
                if len(names) >= rules.max_names_per_actor:
                    problem = f"new name '{name}' beyond the {rules.max_names_per_actor} stats names an actor may use"
                else:
                    names.add(name)
            if problem is None:
                kept[name] = value
            else:
                problems.append(problem)
        if problems:
            self._drop_report(peer, kind, f"{len(problems)} value(s) dropped, e.g. {problems[0]}")
        if not kept:
            return None
        return message if not problems else Stats(message.sender_id, kept)

    def _drop_report(self, peer: PeerInfo, kind: str, problem: str) -> None:
        self.counters.reports_dropped += 1
        self._quiet.warning(f"report:{peer.actor_id}", "dropped %s from actor '%s': %s", kind, peer.actor_id, problem)
        return None

    def _handshake_failures(self, monitor: zmq.Socket) -> None:
        while True:
            try:
                event = recv_monitor_message(monitor, flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            self.counters.handshakes_failed += 1
            reason = handshake_failure(event["event"], event["value"])
            # One rate limit per reason: a burst of one kind must not hide another.
            self._quiet.warning(f"handshake:{reason}", "refused a connection on %s: %s",
                                event["endpoint"].decode(errors="replace"), reason)

    def _ack_now(self, identity: bytes) -> bool:
        """A quarter of the peer's window is unacknowledged."""
        return (
            self._unacked.get(identity, 0) >= self._ack_every
            or self._unacked_bytes.get(identity, 0) >= self._ack_every_bytes
        )

    def _send_acks(self, router: zmq.Socket) -> None:
        now = time.monotonic()
        with self._lock:
            forced = set(self._peers) if self._commit_pending else set()
            if forced:
                self._commit_sent_at = now
            self._commit_pending = False
            gaps, self._gaps = self._gaps, set()
            due, deferred = forced | gaps, set()
            for identity in self._ack_due:
                if self._ack_now(identity) or now - self._last_ack.get(identity, 0.0) >= ACK_DELAY_S:
                    due.add(identity)
                elif identity not in due:
                    deferred.add(identity)
            self._ack_due = deferred
            acks = []
            for identity in due:
                peer = self._peers.get(identity)
                if peer is None:  # forgotten meanwhile
                    continue
                self._unacked[identity] = 0
                self._unacked_bytes[identity] = 0
                self._last_ack[identity] = now
                stream = peer.stream_id
                acks.append(
                    (identity, Ack(stream, self._received.get(stream, -1), self._committed.get(stream, -1), identity in gaps))
                )
        for identity, ack in acks:
            self._reply(router, identity, ack)

    def _heartbeat(self, router: zmq.Socket, now: float) -> None:
        with self._lock:
            peers = list(self._peers.items())
        for identity, peer in peers:
            if now - peer.last_heard > self.settings.peer_timeout_s:
                log.info("actor '%s' silent for %.1f s; forgetting its connection", peer.actor_id, now - peer.last_heard)
                with self._lock:
                    self._forget_peer(identity)
                continue
            self._reply(router, identity, Heartbeat(self.learner_id, now))

    def _forget_peer(self, identity: bytes) -> None:
        """Drop a connection and its acknowledgement state (under the lock)."""
        self._peers.pop(identity, None)
        self._unacked.pop(identity, None)
        self._unacked_bytes.pop(identity, None)
        self._last_ack.pop(identity, None)
        self._ack_due.discard(identity)
        self._batch_specs.pop(identity, None)
        self._report_budgets.pop(identity, None)

    def _reply(self, router: zmq.Socket, identity: bytes, message: Any) -> None:
        try:
            router.send_multipart([identity, pack(message)], flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            self._quiet.warning("reply", "could not send a %s to an actor (its queue is full)", type(message).__name__)

    def _subscriptions(self, publisher: zmq.Socket) -> None:
        while True:
            try:
                event = publisher.recv(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            if not event or event[0] != 1:
                continue
            topic = event[1:]
            if topic.startswith(WEIGHTS_TOPIC_DIRECT):
                with self._lock:
                    weights = self._weights
                if weights is not None:
                    self._send_weights(publisher, topic, *weights)

    def _publish_pending(self, publisher: zmq.Socket) -> None:
        with self._lock:
            if not self._weights_pending:
                return
            self._weights_pending = False
            version, blob, blob_id = self._weights
        if not isinstance(blob, bytes):  # a buffer the caller could still change: keep our own copy
            blob = bytes(blob)
            with self._lock:
                if self._weights[0] == version:
                    self._weights = (version, blob, blob_id)
        self._send_weights(publisher, WEIGHTS_TOPIC_ALL, version, blob, blob_id)
        self.counters.weights_published += 1

    def _send_weights(
        self, publisher: zmq.Socket, topic: bytes, version: int, blob: bytes, blob_id: bytes
    ) -> None:
        # A late joiner gets the same blob id, so its copy joins chunks it may already hold.
        for chunk in chunk_weights(version, blob, self._chunk_bytes, blob_id):
            try:
                publisher.send(pack(chunk, prefix=topic), flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                self._quiet.warning("weights", "weights version %d: a subscriber's queue is full; chunk dropped", version)
                return


def _close_monitored(router: zmq.Socket, publisher: zmq.Socket, monitors: list[zmq.Socket], router_linger_ms: int = 0) -> None:
    for socket, linger in ((router, router_linger_ms), (publisher, 0)):
        if monitors:
            try:
                socket.disable_monitor()
            except zmq.ZMQError:
                pass
        socket.close(linger=linger)
    for monitor in monitors:
        monitor.close(linger=0)


def _bind(socket: zmq.Socket, host: str, port: int, field: str, patience_s: float = 3.0) -> None:
    # A learner restarted at once (or a link closed and reopened in one process) can find its
    # port still held for a moment while ZeroMQ finishes closing the old socket.
    deadline = time.monotonic() + patience_s
    while True:
        try:
            socket.bind(endpoint(host, port))
            return
        except zmq.ZMQError as error:
            if error.errno != zmq.EADDRINUSE:
                raise
            if time.monotonic() > deadline:
                raise PortInUse(host, port, field) from None
            time.sleep(0.05)
