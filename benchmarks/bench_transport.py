"""Actor -> learner transport: throughput, latency and weight broadcasts, against raw ZeroMQ.

Every figure comes from separate processes (multiprocessing, 'spawn') talking over TCP on
127.0.0.1, measured in one run together with its baselines:

  throughput   transitions/s and MB/s arriving in the learner's buffer while one actor
               sends as fast as the link lets it. One transition = two 128x128x3 uint8
               images for obs and two for next_obs, float32 state (19) and next_state,
               float32 action (7), float32 reward, bool done and truncated (~197 KB);
               a batch of B transitions goes out per ``ActorLink.send``. The learner calls
               ``LearnerLink.receive`` and commits ``delivered_state()`` every 50 ms, so the
               outbox is released. Runs: "link" counts what receive() delivers (arrays
               viewing the received frames, as a raw recv's); "link+copy" also copies every
               array into a preallocated numpy ring buffer, as a learner's replay does; the
               durable outbox (segment files in a temp dir, + copy); CurveZMQ on (no copy).
  baselines    raw ZeroMQ PUSH -> PULL sending single-frame messages of exactly our
               messages' byte size (copy=False, preallocated buffers; each side queues as
               many messages as the link's default window holds), without ("raw") and
               with ("raw+copy") the same copy into the learner buffer; raw ZeroMQ with CURVE;
               and a pickle framing (pickle.dumps of a dict of numpy arrays per message over
               PUSH/PULL, pickle.loads, then the same copy) as research code does. Pickle is a
               trusted-local baseline for comparison only, never a way to talk to a peer.
  kept-heap    raw and link again (no copy) with glibc told to keep freed buffers in the
               heap (KEPT_HEAP_ENV in both processes). With its defaults, glibc hands the
               pages of freed multi-megabyte message buffers back to the kernel now and then,
               and the next message faults them in again page by page; how often depends on
               the order buffers are freed in, so it moves raw and link differently from run
               to run. These runs are reported beside the target, not as it.
  latency      p50/p99 from the send call (``sent_time``, time.monotonic, comparable
               across processes on Linux) to the moment the batch is in the learner's
               buffer, one transition per batch at 10 batches/s and at 500 batches/s.
  weights      ``LearnerLink.publish_weights`` of a safetensors blob of 1M, 5M and 20M
               float32 parameters to 1 and to 4 actor processes: time from the publish call
               until the last actor's ``ActorLink.latest_weights()`` returns the version
               (the actors poll it every 0.5 ms); median over repeats. Baseline: the same
               blob as one frame on a raw ZeroMQ PUB until the last SUB has received it.

    python benchmarks/bench_transport.py [--quick] [--batch-sizes 1 16] [--repeats 3] [--check] [--profile]

--quick finishes in about a minute (short windows, one repeat); the full run takes a few
minutes. Throughput figures are medians over --repeats runs, interleaved with their
baselines so that load from elsewhere on the machine hits both alike; every run also
reports how many cores other processes used meanwhile ("other load"), since on a small
machine a busy neighbour moves every figure. MB = 10^6 bytes. --profile adds one link run
with cProfile in both link threads and prints where their time goes.

Targets: link throughput >= 70% of raw ZeroMQ at the same message size (in-memory outbox,
both counted on delivery; the same ratio with the copy into a buffer on both sides is printed too);
CurveZMQ costs < 30% of the link's throughput; 5M parameters reach 4 actors in < 100 ms.
"""

from __future__ import annotations

import argparse
import os
import pickle
import queue
import shutil
import socket
import statistics
import struct
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import multiprocessing as mp  # noqa: E402

import numpy as np  # noqa: E402
import zmq  # noqa: E402

from robot_stack.config import SessionConfig, TransportConfig  # noqa: E402
from robot_stack.data.spec import ArraySpec  # noqa: E402
from robot_stack.transport import (  # noqa: E402
    ActorLink,
    LearnerLink,
    TransitionBatch,
    generate_keys,
    pack_weights,
)
from robot_stack.transport.messages import pack  # noqa: E402
from robot_stack.transport.wire import split_frames  # noqa: E402

TARGET_LINK_VS_RAW = 0.70
TARGET_CURVE_KEEPS = 0.70  # CURVE may cost at most 30% of the link's throughput
TARGET_WEIGHTS_5M_4_ACTORS_MS = 100.0

IMAGE_SHAPE = (128, 128, 3)
CAMERAS = ("front", "wrist")
STATE_DIM = 19
ACTION_DIM = 7
# glibc settings under which freed message buffers stay in the heap instead of going back
# to the kernel (to be faulted in again, page by page, for the next message): the
# "kept-heap" runs show how much of each figure is the allocator's doing.
KEPT_HEAP_ENV = {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824"}
RING_CAPACITY = 512  # transitions in the learner buffer (~100 MB)
COMMIT_PERIOD_S = 0.05
AHEAD_BYTES = 128 * 1024**2  # the producer stays at most this far ahead of the learner
WEIGHTS_POLL_S = 0.0005
LATENCY_HEAD = struct.Struct("<dI")  # sent_time, phase: the last bytes of the raw baseline's message
MB = 1e6

OBSERVATION_SPEC = {
    **{camera: ArraySpec("|u1", IMAGE_SHAPE) for camera in CAMERAS},
    "state": ArraySpec("<f4", (STATE_DIM,)),
}
ACTION_SPEC = {"action": ArraySpec("<f4", (ACTION_DIM,))}


# --------------------------------------------------------------------------- data


def transition_layout() -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """Array name -> (dtype, per-transition shape), in the order they travel."""
    layout: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}
    for prefix in ("obs", "next_obs"):
        for camera in CAMERAS:
            layout[f"{prefix}/{camera}"] = (np.dtype(np.uint8), IMAGE_SHAPE)
        layout[f"{prefix}/state"] = (np.dtype(np.float32), (STATE_DIM,))
    layout["action"] = (np.dtype(np.float32), (ACTION_DIM,))
    layout["reward"] = (np.dtype(np.float32), ())
    layout["done"] = (np.dtype(np.bool_), ())
    layout["truncated"] = (np.dtype(np.bool_), ())
    return layout


def make_batch(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, (dtype, shape) in transition_layout().items():
        if dtype == np.uint8:
            arrays[name] = rng.integers(0, 256, (count, *shape), dtype=np.uint8)
        elif dtype == np.bool_:
            arrays[name] = rng.random((count, *shape)) < 0.01
        else:
            arrays[name] = rng.standard_normal((count, *shape)).astype(dtype)
    return arrays


def transition_bytes() -> int:
    return sum(dtype.itemsize * int(np.prod(shape)) for dtype, shape in transition_layout().values())


def link_frames(arrays: Mapping[str, np.ndarray]) -> list:
    """What ActorLink sends for one batch, as mid-run: one ZeroMQ frame (header and arrays packed)."""
    return [pack(TransitionBatch("0" * 32, 1_000_000, arrays, {}, time.monotonic()))]


def link_frame_sizes(batch_size: int) -> list[int]:
    return [memoryview(frame).nbytes for frame in link_frames(make_batch(batch_size))]


def pickle_message_bytes(batch_size: int) -> int:
    return len(pickle.dumps({"sent_time": 0.0, "phase": 0, "arrays": make_batch(batch_size)}))


def weights_tensors(params: int) -> dict[str, np.ndarray]:
    """float32 tensors totalling `params` values, in a handful of layers like a small policy."""
    rng = np.random.default_rng(params)
    sizes = [params // 2, params // 4, params // 8]
    sizes.append(params - sum(sizes))
    return {f"layer{i}.weight": rng.standard_normal(n, dtype=np.float32) for i, n in enumerate(sizes)}


class RingBuffer:
    """The learner's replay storage: preallocated (and pre-faulted) arrays, one per name."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.arrays = {name: np.ones((capacity, *shape), dtype) for name, (dtype, shape) in transition_layout().items()}
        self.cursor = 0
        self.added = 0

    def add(self, arrays: Mapping[str, np.ndarray]) -> int:
        count = next(iter(arrays.values())).shape[0]
        start, end = self.cursor, self.cursor + count
        if end <= self.capacity:
            for name, array in arrays.items():
                self.arrays[name][start:end] = array
        else:  # wraps around
            first = self.capacity - start
            for name, array in arrays.items():
                self.arrays[name][start:] = array[:first]
                self.arrays[name][: count - first] = array[first:]
        self.cursor = end % self.capacity
        self.added += count
        return count


def arrays_from_frames(frames: list, batch_size: int) -> dict[str, np.ndarray]:
    """The raw baseline's receiver: view the packed array parts (2..) as the layout's arrays (no checks)."""
    arrays = {}
    for frame, (name, (dtype, shape)) in zip(split_frames(frames[0].buffer)[2:], transition_layout().items()):
        arrays[name] = np.frombuffer(frame, dtype=dtype).reshape(batch_size, *shape)
    return arrays


class LoadProbe:
    """CPU time the rest of the machine used (cores on average) while a measurement ran: all
    busy time in /proc/stat less this process's and its finished children's. A figure well
    above zero means something else competed for the cores and the run is not trustworthy."""

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float]:
        try:
            with open("/proc/stat") as stat:
                values = [int(v) for v in stat.readline().split()[1:]]
            busy = (sum(values[:8]) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            busy = float("nan")
        times = os.times()
        return busy, times.user + times.system + times.children_user + times.children_system, time.monotonic()

    def other_cores(self) -> float:
        busy, own, now = self._sample()
        return max(0.0, (busy - self.start[0]) - (own - self.start[1])) / max(1e-9, now - self.start[2])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --------------------------------------------------------------------------- child processes
# Each role takes (cfg, results, stop): cfg a dict of plain values, results a queue for its
# figures, stop an event the parent (or the measuring side) sets to end the run.


class Meter:
    """Counts transitions arriving after a warm-up, over a fixed measurement window."""

    def __init__(self, warmup_s: float, measure_s: float) -> None:
        self.warmup_s, self.measure_s = warmup_s, measure_s
        self.first: Optional[float] = None
        self.start: Optional[float] = None
        self.end: Optional[float] = None
        self.transitions = 0
        self.batches = 0
        self.copy_s = 0.0
        self.wait_s = 0.0

    def arrived(self, batches: int, transitions: int, now: float) -> None:
        if self.first is None:
            self.first = now
        if self.start is None:
            if now - self.first >= self.warmup_s:
                self.start = now  # what arrived up to now belongs to the warm-up
            return
        self.transitions += transitions
        self.batches += batches
        self.end = now

    def done(self, now: float) -> bool:
        return self.start is not None and now - self.start >= self.measure_s

    def result(self, **extra: Any) -> dict:
        elapsed = (self.end or 0.0) - (self.start or 0.0)
        return {
            "transitions_per_s": self.transitions / elapsed if elapsed > 0 else 0.0,
            "batches_per_s": self.batches / elapsed if elapsed > 0 else 0.0,
            "elapsed_s": elapsed,
            "copy_share": self.copy_s / elapsed if elapsed > 0 else 0.0,
            "wait_share": self.wait_s / elapsed if elapsed > 0 else 0.0,
            **extra,
        }


def paced_phases(phases: list[tuple[int, float, int]], stop, send: Callable[[int], None]) -> None:
    """Send `count` messages at `rate` per phase (phase index given to `send`), with a pause
    between phases so queues drain and each phase starts from idle."""
    for phase, rate, count in phases:
        start = time.monotonic()
        for i in range(count):
            if stop.is_set():
                return
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            send(phase)
        time.sleep(0.3)


def collect_latencies(phases: list[tuple[int, float, int]], receive_some: Callable[[], list[tuple[int, float]]],
                      timeout_s: float) -> dict[int, list[float]]:
    """Per phase, latencies in seconds, until every expected message arrived (or timeout)."""
    expected = sum(count for _, _, count in phases)
    latencies: dict[int, list[float]] = {phase: [] for phase, _, _ in phases}
    got = 0
    deadline = time.monotonic() + timeout_s
    while got < expected:
        if time.monotonic() > deadline:
            raise TimeoutError(f"latency run: {got} of {expected} messages arrived within {timeout_s:.0f} s")
        for phase, latency in receive_some():
            latencies[phase].append(latency)
            got += 1
    return latencies


def wait_for_peer(cfg: Mapping[str, Any], drain: Callable[[], Any], timeout_s: float = 10.0) -> None:
    """Keep receiving until the sending side has closed its socket. Closing the receiving end
    while multipart messages are still in flight can make libzmq 4.3.5 abort the *sender*
    (errno_assert in session_base.cpp clean_pipes), so the receiver always closes last."""
    deadline = time.monotonic() + timeout_s
    while not cfg["peer_done"].is_set() and time.monotonic() < deadline:
        drain()


def session_config(cfg: Mapping[str, Any]) -> SessionConfig:
    transport = {
        "outbox_dir": cfg["tmp"],
        "durable_outbox": cfg.get("durable", False),
        "outbox_memory_mb": cfg.get("outbox_memory_mb", 2048.0),
    }
    keys = cfg.get("keys") or {}
    return SessionConfig(
        learner_host="127.0.0.1",
        transitions_port=cfg["port"],
        weights_port=cfg["weights_port"],
        transport=transport,
        **keys,
    )


def profiled(target: Callable[[], Any], sink: list):
    """Wrap a link thread's body in cProfile; the stats land in `sink`."""
    import cProfile

    def run() -> Any:
        profile = cProfile.Profile()
        try:
            return profile.runcall(target)
        finally:
            sink.append(profile)

    return run


def profile_text(profiles: list, title: str, lines: int = 14) -> str:
    import io
    import pstats

    if not profiles:
        return ""
    out = io.StringIO()
    stats = pstats.Stats(profiles[0], stream=out)
    for extra in profiles[1:]:
        stats.add(extra)
    stats.sort_stats("tottime").print_stats(lines)
    body = "\n".join(line for line in out.getvalue().splitlines() if line.strip())
    return f"--- {title} (cProfile, by own time)\n{body}"


def role_link_learner(cfg: dict, results, stop) -> None:
    link = LearnerLink(session_config(cfg), task_id="bench", observation_spec=OBSERVATION_SPEC, action_spec=ACTION_SPEC)
    thread_profiles: list = []
    if cfg.get("profile"):
        link._run = profiled(link._run, thread_profiles)  # benchmark instrumentation only
    link.start()
    ring = RingBuffer(RING_CAPACITY)
    last_commit = time.monotonic()

    def commit_now(now: float) -> None:
        nonlocal last_commit
        if now - last_commit >= COMMIT_PERIOD_S:
            link.commit(link.delivered_state())
            last_commit = now

    try:
        if cfg["mode"] == "throughput":
            meter = Meter(cfg["warmup_s"], cfg["measure_s"])
            deadline = time.monotonic() + cfg["timeout_s"]
            while True:
                wait_start = time.perf_counter()
                batches = link.receive(timeout_s=0.05)
                if meter.start is not None:
                    meter.wait_s += time.perf_counter() - wait_start
                copy_start = time.perf_counter()
                if cfg["copy"]:
                    transitions = sum(ring.add(batch.arrays) for batch in batches)
                else:  # delivered: the arrays view the received frames, as a raw recv's would
                    transitions = sum(batch.count for batch in batches)
                copy_s = time.perf_counter() - copy_start
                now = time.monotonic()
                if batches:
                    if meter.start is not None:
                        meter.copy_s += copy_s
                    meter.arrived(len(batches), transitions, now)
                commit_now(now)
                if meter.done(now):
                    break
                if now > deadline:
                    raise TimeoutError("throughput run did not finish; is the actor connected?")
            stop.set()
            counters = vars(link.counters).copy()
            results.put(("result", "learner", meter.result(counters=counters)))
            wait_for_peer(cfg, lambda: link.receive(timeout_s=0.02))
        else:  # latency
            phases = cfg["phases"]

            def receive_some() -> list[tuple[int, float]]:
                out = []
                for batch in link.receive(timeout_s=0.05):
                    ring.add(batch.arrays)
                    out.append((batch.info["phase"], time.monotonic() - batch.sent_time))
                commit_now(time.monotonic())
                return out

            latencies = collect_latencies(phases, receive_some, cfg["timeout_s"])
            stop.set()
            results.put(("result", "learner", {"latencies": latencies}))
            wait_for_peer(cfg, lambda: link.receive(timeout_s=0.02))
    finally:
        link.close()
        if thread_profiles:
            results.put(("profile", "learner", profile_text(thread_profiles, "learner link thread")))


def role_link_actor(cfg: dict, results, stop) -> None:
    outbox = Path(cfg["tmp"]) / cfg["actor_id"]
    link = ActorLink(session_config(cfg), cfg["actor_id"], "bench", OBSERVATION_SPEC, ACTION_SPEC, outbox_dir=outbox)
    thread_profiles: list = []
    if cfg.get("profile"):
        link._run = profiled(link._run, thread_profiles)  # benchmark instrumentation only
    link.start()
    try:
        if not link.wait_connected(20.0):
            raise TimeoutError("the actor link was not welcomed by the learner within 20 s")
        if cfg["mode"] == "throughput":
            arrays = make_batch(cfg["batch_size"], seed=1)
            ahead = max(4, AHEAD_BYTES // (cfg["batch_size"] * transition_bytes()))
            send_s, sends, waited_s = 0.0, 0, 0.0
            started = time.perf_counter()
            while not stop.is_set():
                if link.outbox.next_seq - 1 - link.received_seq > ahead:
                    # Far enough ahead of the learner: wait for it, as a raw sender waits for room.
                    t = time.perf_counter()
                    link.wait_received(link.outbox.next_seq - 1 - ahead, timeout_s=0.05)
                    waited_s += time.perf_counter() - t
                    continue
                t = time.perf_counter()
                link.send(arrays)
                send_s += time.perf_counter() - t
                sends += 1
            elapsed = time.perf_counter() - started
            # Close only once the learner holds everything: closing with multipart batches still
            # in flight is when libzmq 4.3.5 can abort the process (see wait_for_peer).
            deadline = time.monotonic() + 10.0
            while link.received_seq < link.outbox.next_seq - 1 and time.monotonic() < deadline:
                time.sleep(0.005)
            results.put(("result", "actor", {
                "send_call_us": 1e6 * send_s / max(1, sends),
                "actor_send_share": send_s / elapsed,
                "actor_wait_share": waited_s / elapsed,  # ahead of the learner: waiting for acknowledgements
            }))
        elif cfg["mode"] == "latency":
            arrays = make_batch(1, seed=1)
            paced_phases(cfg["phases"], stop, lambda phase: link.send(arrays, {"phase": phase}))
            stop.wait(cfg["timeout_s"])
        else:  # weights: report each complete version as soon as latest_weights() returns it
            reports = cfg["reports"]
            while not stop.is_set():
                update = link.latest_weights()
                if update is not None:
                    reports.put((cfg["actor_id"], update.version, time.monotonic(), update.received_time))
                time.sleep(WEIGHTS_POLL_S)
    finally:
        link.close()
        cfg["peer_done"].set()
        if thread_profiles:
            results.put(("profile", "actor", profile_text(thread_profiles, "actor link thread")))


def wait_versions(reports, version: int, actors: int, timeout_s: float = 30.0) -> dict[str, float]:
    """Monotonic time at which each actor reported holding `version` (older reports skipped)."""
    arrived: dict[str, float] = {}
    end = time.monotonic() + timeout_s
    while len(arrived) < actors:
        try:
            actor_id, got_version, got_at, _ = reports.get(timeout=max(0.01, end - time.monotonic()))
        except queue.Empty:
            raise TimeoutError(
                f"weights version {version}: {len(arrived)} of {actors} actors had it after {timeout_s:.0f} s"
            ) from None
        if got_version == version:
            arrived[actor_id] = got_at
    return arrived


def role_raw_weights_pub(cfg: dict, results, stop) -> None:
    """Baseline: the blob as one zero-copy frame on a raw XPUB; no chunks, CRCs or checks."""
    context = zmq.Context()
    publisher = context.socket(zmq.XPUB)
    publisher.linger = 0
    publisher.sndhwm = 10_000
    publisher.setsockopt(zmq.XPUB_VERBOSE, 1)  # one subscription message per subscriber
    publisher.bind(f"tcp://127.0.0.1:{cfg['weights_port']}")
    reports = cfg["reports"]
    try:
        subscribed, deadline = 0, time.monotonic() + 30.0
        while subscribed < cfg["actors"]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {subscribed} of {cfg['actors']} subscribers within 30 s")
            if publisher.poll(50) and publisher.recv()[:1] == b"\x01":
                subscribed += 1
        blobs = {params: pack_weights(weights_tensors(params)) for params in cfg["sizes"]}
        version = 0

        def publish(blob: bytes) -> float:
            nonlocal version
            version += 1
            start = time.monotonic()
            publisher.send_multipart([b"w", struct.pack("<q", version), blob], copy=False)
            return max(wait_versions(reports, version, cfg["actors"]).values()) - start

        publish(pack_weights(weights_tensors(1000)))
        timings = {params: [] for params in blobs}
        for params, blob in blobs.items():
            for _ in range(cfg["repeats"]):
                timings[params].append(publish(blob))
                time.sleep(0.05)
        results.put(("result", "learner", {"timings": timings, "blob_bytes": {p: len(b) for p, b in blobs.items()}}))
        stop.set()
        wait_for_peer(cfg, lambda: time.sleep(0.01))
    finally:
        stop.set()
        publisher.close(linger=0)
        context.term()


def role_raw_weights_sub(cfg: dict, results, stop) -> None:
    context = zmq.Context()
    subscriber = context.socket(zmq.SUB)
    subscriber.linger = 0
    subscriber.setsockopt(zmq.SUBSCRIBE, b"w")
    subscriber.connect(f"tcp://127.0.0.1:{cfg['weights_port']}")
    try:
        while not stop.is_set():
            if subscriber.poll(10):
                frames = subscriber.recv_multipart(copy=False)
                (version,) = struct.unpack("<q", frames[1].buffer)
                cfg["reports"].put((cfg["actor_id"], version, time.monotonic(), 0.0))
    finally:
        subscriber.close(linger=0)
        context.term()
        cfg["peer_done"].set()


def role_weights_learner(cfg: dict, results, stop) -> None:
    link = LearnerLink(session_config(cfg), task_id="bench", observation_spec=OBSERVATION_SPEC, action_spec=ACTION_SPEC)
    link.start()
    reports = cfg["reports"]
    try:
        deadline = time.monotonic() + 30.0
        while len(link.peers()) < cfg["actors"]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(link.peers())} of {cfg['actors']} actors connected within 30 s")
            time.sleep(0.01)
        blobs = {params: pack_weights(weights_tensors(params)) for params in cfg["sizes"]}
        version = 0

        def publish(blob: bytes) -> float:
            nonlocal version
            version += 1
            start = time.monotonic()
            link.publish_weights(version, blob)
            return max(wait_versions(reports, version, cfg["actors"]).values()) - start

        # Warm-up: proves every actor's subscription is live (the learner also resends the
        # latest version to each new subscriber, so this cannot be lost).
        publish(pack_weights(weights_tensors(1000)))
        timings: dict[int, list[float]] = {}
        for params, blob in blobs.items():
            timings[params] = []
            for _ in range(cfg["repeats"]):
                timings[params].append(publish(blob))
                time.sleep(0.05)
        results.put(("result", "learner", {"timings": timings, "blob_bytes": {p: len(b) for p, b in blobs.items()}}))
        stop.set()
        wait_for_peer(cfg, lambda: time.sleep(0.01))
    finally:
        stop.set()
        link.close()


def raw_hwm(batch_size: int) -> int:
    """Messages queued on each side of a baseline: the link's default window (at most
    max_in_flight_batches batches and max_in_flight_mb unacknowledged)."""
    window = TransportConfig()
    by_bytes = int(window.max_in_flight_mb * 1024**2) // (batch_size * transition_bytes())
    return max(1, min(window.max_in_flight_batches, by_bytes))


def _raw_socket(kind: int, cfg: dict, server: bool) -> tuple[zmq.Context, zmq.Socket]:
    context = zmq.Context()
    sock = context.socket(kind)
    sock.linger = 0
    # The baselines' ZeroMQ queue bound, in messages, matches the link's default window.
    sock.sndhwm = sock.rcvhwm = raw_hwm(cfg.get("batch_size", 1))
    curve = cfg.get("curve")
    if curve:
        server_public, server_secret, client_public, client_secret = curve
        if server:
            sock.curve_secretkey, sock.curve_publickey, sock.curve_server = server_secret, server_public, True
        else:
            sock.curve_secretkey, sock.curve_publickey, sock.curve_serverkey = client_secret, client_public, server_public
    address = f"tcp://127.0.0.1:{cfg['port']}"
    sock.bind(address) if server else sock.connect(address)
    return context, sock


def role_raw_sender(cfg: dict, results, stop) -> None:
    """Raw ZeroMQ PUSH of frames of our sizes (pickle: one pickled dict per message)."""
    context, sock = _raw_socket(zmq.PUSH, cfg, server=False)
    use_pickle = cfg["framing"] == "pickle"
    try:
        if cfg["mode"] == "throughput":
            arrays = make_batch(cfg["batch_size"], seed=1)
            if use_pickle:
                while not stop.is_set():
                    message = {"sent_time": time.monotonic(), "phase": 0, "arrays": arrays}
                    _send_until_stopped(sock, [pickle.dumps(message)], stop)
            else:
                # The very frames ActorLink would send for this batch, preallocated once.
                frames = link_frames(arrays)
                assert [memoryview(f).nbytes for f in frames] == cfg["frame_sizes"]
                while not stop.is_set():
                    _send_until_stopped(sock, frames, stop)
        else:  # latency
            arrays = make_batch(1, seed=1)
            if use_pickle:
                def send(phase: int) -> None:
                    message = {"sent_time": time.monotonic(), "phase": phase, "arrays": arrays}
                    _send_until_stopped(sock, [pickle.dumps(message)], stop)
            else:
                packed = bytearray(link_frames(arrays)[0])

                def send(phase: int) -> None:
                    # Send time and phase overwrite the last bytes of the message (never decoded here).
                    LATENCY_HEAD.pack_into(packed, len(packed) - LATENCY_HEAD.size, time.monotonic(), phase)
                    _send_until_stopped(sock, [bytes(packed)], stop)

            paced_phases(cfg["phases"], stop, send)
            stop.wait(cfg["timeout_s"])
    finally:
        sock.close(linger=0)
        context.term()
        cfg["peer_done"].set()


def _send_until_stopped(sock: zmq.Socket, frames: list, stop) -> None:
    while True:
        try:
            sock.send_multipart(frames, copy=False, flags=zmq.NOBLOCK)
            return
        except zmq.Again:  # the receiver's queue is full: wait for room, or for the end
            if stop.is_set():
                return
            sock.poll(50, zmq.POLLOUT)


def role_raw_receiver(cfg: dict, results, stop) -> None:
    context, sock = _raw_socket(zmq.PULL, cfg, server=True)
    use_pickle = cfg["framing"] == "pickle"
    copy = cfg.get("copy", True)
    ring = RingBuffer(RING_CAPACITY) if copy else None
    batch_size = cfg.get("batch_size", 1)
    try:
        if cfg["mode"] == "throughput":
            meter = Meter(cfg["warmup_s"], cfg["measure_s"])
            deadline = time.monotonic() + cfg["timeout_s"]
            while True:
                if not sock.poll(50):
                    if time.monotonic() > deadline:
                        raise TimeoutError("throughput run did not finish; is the sender connected?")
                    continue
                frames = sock.recv_multipart(copy=False)
                copy_start = time.perf_counter()
                if use_pickle:
                    count = ring.add(pickle.loads(frames[0].buffer)["arrays"])
                elif copy:
                    count = ring.add(arrays_from_frames(frames, batch_size))
                else:
                    count = batch_size
                now = time.monotonic()
                if meter.start is not None:
                    meter.copy_s += time.perf_counter() - copy_start
                meter.arrived(1, count, now)
                if meter.done(now):
                    break
                if now > deadline:
                    raise TimeoutError("throughput run did not finish in time")
            stop.set()
            results.put(("result", "receiver", meter.result()))
            wait_for_peer(cfg, lambda: sock.poll(20) and sock.recv_multipart(copy=False))
        else:  # latency

            def receive_some() -> list[tuple[int, float]]:
                if not sock.poll(50):
                    return []
                frames = sock.recv_multipart(copy=False)
                if use_pickle:
                    message = pickle.loads(frames[0].buffer)
                    ring.add(message["arrays"])
                    sent_time, phase = message["sent_time"], message["phase"]
                else:
                    ring.add(arrays_from_frames(frames, 1))
                    buffer = frames[0].buffer
                    sent_time, phase = LATENCY_HEAD.unpack_from(buffer, len(buffer) - LATENCY_HEAD.size)
                return [(phase, time.monotonic() - sent_time)]

            latencies = collect_latencies(cfg["phases"], receive_some, cfg["timeout_s"])
            stop.set()
            results.put(("result", "receiver", {"latencies": latencies}))
            wait_for_peer(cfg, lambda: sock.poll(20) and sock.recv_multipart(copy=False))
    finally:
        sock.close(linger=0)
        context.term()


ROLES: dict[str, Callable[[dict, Any, Any], None]] = {
    "link_learner": role_link_learner,
    "link_actor": role_link_actor,
    "weights_learner": role_weights_learner,
    "raw_weights_pub": role_raw_weights_pub,
    "raw_weights_sub": role_raw_weights_sub,
    "raw_sender": role_raw_sender,
    "raw_receiver": role_raw_receiver,
}


def child_main(role: str, cfg: dict, results, stop) -> None:
    try:
        ROLES[role](cfg, results, stop)
    except BaseException:
        results.put(("error", role, traceback.format_exc()))
        stop.set()
        sys.exit(1)


# --------------------------------------------------------------------------- parent side


class ChildFailed(RuntimeError):
    pass


class Group:
    """Child processes of one measurement; always torn down on exit, also on errors."""

    def __init__(self, context, label: str) -> None:
        self.context = context
        self.label = label
        self.results = context.Queue()
        self.stop = context.Event()
        self.peer_done = context.Event()  # set by the sending side once its socket is closed
        self.processes: list = []
        self.profiles: list[str] = []
        self.mailbox: dict[tuple[str, str], Any] = {}

    def start(self, role: str, cfg: dict, env: Optional[Mapping[str, str]] = None) -> None:
        """Start a child; ``env`` adds variables to its environment (a spawned child execs
        with the environment of the moment it starts)."""
        cfg = {**cfg, "peer_done": self.peer_done}
        process = self.context.Process(
            target=child_main, args=(role, cfg, self.results, self.stop), name=f"bench-{role}", daemon=True
        )
        saved = {name: os.environ.get(name) for name in (env or {})}
        os.environ.update(env or {})
        try:
            process.start()
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        self.processes.append(process)

    def wait(self, kind: str, who: str, timeout_s: float) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            if (kind, who) in self.mailbox:
                return self.mailbox.pop((kind, who))
            try:
                message = self.results.get(timeout=0.25)
            except queue.Empty:
                dead = [p for p in self.processes if p.exitcode not in (None, 0)]
                if dead:
                    raise ChildFailed(f"{self.label}: {dead[0].name} exited with code {dead[0].exitcode}") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.label}: no {kind} from {who} within {timeout_s:.0f} s") from None
                continue
            if message[0] == "error":
                raise ChildFailed(f"{self.label}: {message[1]} failed:\n{message[2]}")
            if message[0] == "profile":
                self.profiles.append(message[2])
                continue
            self.mailbox[(message[0], message[1])] = message[2]  # ours, or one for a later wait

    def close(self, timeout_s: float = 10.0) -> None:
        self.stop.set()
        deadline = time.monotonic() + timeout_s
        for process in self.processes:
            process.join(timeout=max(0.1, deadline - time.monotonic()))
        for process in self.processes:
            if process.is_alive():
                process.terminate()
                process.join(timeout=2.0)
            if process.is_alive():
                process.kill()
                process.join(timeout=2.0)
        # Late messages (profiles are sent while the children close their links).
        while True:
            try:
                message = self.results.get(timeout=0.05)
            except (queue.Empty, OSError, ValueError):
                break
            if message[0] == "profile":
                self.profiles.append(message[2])
        self.results.close()

    def __enter__(self) -> "Group":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.context = mp.get_context("spawn")
        self.t0 = time.monotonic()
        self.profiles: list[str] = []
        self.other_load: list[float] = []

    def progress(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.1f} s] {text}", flush=True)

    def _dirs(self, label: str) -> str:
        directory = Path(tempfile.mkdtemp(prefix=label.replace(" ", "_") + "_", dir=self.tmp))
        return str(directory)

    def throughput(self, kind: str, batch_size: int, *, durable: bool = False, curve: bool = False,
                   copy: bool = True, profile: bool = False, kept_heap: bool = False) -> dict:
        """One run: transitions/s at the receiver, plus what the sides report."""
        args = self.args
        label = f"{kind} B={batch_size}" + (" durable" if durable else "") + (" curve" if curve else "")
        env = KEPT_HEAP_ENV if kept_heap else None
        probe = LoadProbe()
        common = {
            "mode": "throughput", "batch_size": batch_size, "warmup_s": args.warmup_s, "measure_s": args.measure_s,
            "timeout_s": args.warmup_s + args.measure_s + 60.0, "tmp": self._dirs(label),
        }
        with Group(self.context, label) as group:
            if kind == "link":
                cfg = {**common, "port": free_port(), "weights_port": free_port(), "durable": durable,
                       "keys": self.link_keys if curve else None, "profile": profile, "copy": copy}
                group.start("link_learner", cfg, env)
                group.start("link_actor", {**cfg, "actor_id": "actor-0"}, env)
                result = group.wait("result", "learner", common["timeout_s"])
                result.update(group.wait("result", "actor", 20.0))
            else:
                cfg = {**common, "port": free_port(), "framing": "pickle" if kind == "pickle" else "raw",
                       "frame_sizes": link_frame_sizes(batch_size), "copy": copy,
                       "curve": self.raw_keys if curve else None}
                group.start("raw_receiver", cfg, env)
                group.start("raw_sender", cfg, env)
                result = group.wait("result", "receiver", common["timeout_s"])
        self.profiles += group.profiles
        result["other_load"] = probe.other_cores()
        self.other_load.append(result["other_load"])
        return result

    def latency(self, kind: str, phases: list[tuple[int, float, int]]) -> dict[int, list[float]]:
        label = f"{kind} latency"
        timeout = sum(count / rate for _, rate, count in phases) + 0.3 * len(phases) + 60.0
        common = {"mode": "latency", "phases": phases, "timeout_s": timeout, "tmp": self._dirs(label)}
        with Group(self.context, label) as group:
            if kind == "link":
                cfg = {**common, "port": free_port(), "weights_port": free_port(), "copy": True}
                group.start("link_learner", cfg)
                group.start("link_actor", {**cfg, "actor_id": "actor-0"})
                return group.wait("result", "learner", timeout)["latencies"]
            cfg = {**common, "port": free_port(), "framing": "pickle" if kind == "pickle" else "raw"}
            group.start("raw_receiver", cfg)
            group.start("raw_sender", cfg)
            return group.wait("result", "receiver", timeout)["latencies"]

    def weights(self, actors: int, sizes: list[int], repeats: int, raw: bool = False) -> dict:
        label = f"{'raw ' if raw else ''}weights x{actors}"
        reports = self.context.Queue()
        cfg = {"mode": "weights", "port": free_port(), "weights_port": free_port(), "tmp": self._dirs(label),
               "actors": actors, "sizes": sizes, "repeats": repeats, "reports": reports}
        timeout = 60.0 + 10.0 * repeats * len(sizes)
        try:
            with Group(self.context, label) as group:
                group.start("raw_weights_pub" if raw else "weights_learner", cfg)
                for index in range(actors):
                    group.start("raw_weights_sub" if raw else "link_actor", {**cfg, "actor_id": f"actor-{index}"})
                return group.wait("result", "learner", timeout)
        finally:
            reports.close()

    def make_keys(self) -> None:
        keys = self.tmp / "keys"
        server_public, server_secret = generate_keys(keys / "server", "learner")
        _, client_secret = generate_keys(keys / "clients", "actor-0")
        self.link_keys = {
            "server_public_key_file": str(server_public),
            "server_secret_key_file": str(server_secret),
            "client_secret_key_file": str(client_secret),
            "authorized_client_keys_dir": str(keys / "clients"),
        }
        server_public_z, server_secret_z = zmq.curve_keypair()
        client_public_z, client_secret_z = zmq.curve_keypair()
        self.raw_keys = (server_public_z, server_secret_z, client_public_z, client_secret_z)


# --------------------------------------------------------------------------- report


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short windows, one repeat: about a minute")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16], help="transitions per send")
    parser.add_argument("--repeats", type=int, default=None, help="throughput runs per case (median); 3, quick 1")
    parser.add_argument("--measure-s", type=float, default=None, help="throughput window; 2.0, quick 0.6")
    parser.add_argument("--warmup-s", type=float, default=None, help="throughput warm-up; 0.5, quick 0.25")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--profile", action="store_true",
                        help="also run the link at the largest batch size with cProfile in both link threads")
    args = parser.parse_args()
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.measure_s = args.measure_s or (0.6 if args.quick else 2.0)
    args.warmup_s = args.warmup_s or (0.25 if args.quick else 0.5)
    batch_sizes = sorted(set(args.batch_sizes))
    main_batch = batch_sizes[-1]
    if args.quick:
        latency_phases = [(0, 50.0, 10), (1, 10.0, 15), (2, 500.0, 500)]
        weight_sizes, weight_repeats = [1_000_000, 5_000_000, 20_000_000], 3
    else:
        latency_phases = [(0, 50.0, 20), (1, 10.0, 50), (2, 500.0, 2000)]
        weight_sizes, weight_repeats = [1_000_000, 5_000_000, 20_000_000], 5
    # Phase 0 is a warm-up and is not reported.
    phase_names = {1: "10 batches/s", 2: "500 batches/s"}

    per_transition = transition_bytes()
    message_bytes = {b: sum(link_frame_sizes(b)) for b in batch_sizes}
    pickle_bytes = {b: pickle_message_bytes(b) for b in batch_sizes}
    print(
        f"one transition = {per_transition} bytes of arrays (4 x 128x128x3 uint8, 2 x {STATE_DIM} + {ACTION_DIM} float32, "
        f"reward, done, truncated); link message = {', '.join(f'{message_bytes[b]} B at B={b}' for b in batch_sizes)}; "
        f"{os.cpu_count()} CPUs; pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}"
    )
    print(
        f"throughput: median of {args.repeats} run(s), {args.warmup_s} s warm-up + {args.measure_s} s window each; "
        f"learner ring buffer {RING_CAPACITY} transitions; commit every {COMMIT_PERIOD_S * 1000:.0f} ms",
        flush=True,
    )

    tmp = Path(tempfile.mkdtemp(prefix="bench_transport_"))
    bench = Bench(args, tmp)
    whole_run = LoadProbe()
    try:
        bench.make_keys()
        # ------------------------------------------------------------ throughput
        cases: list[tuple[str, str, int, dict]] = []
        for b in batch_sizes:
            cases += [
                (f"raw B={b}", "raw", b, {"copy": False}),
                (f"link B={b}", "link", b, {"copy": False}),
                (f"raw+copy B={b}", "raw", b, {"copy": True}),
                (f"link+copy B={b}", "link", b, {"copy": True}),
                (f"link durable B={b}", "link", b, {"durable": True}),
                (f"pickle B={b}", "pickle", b, {}),
                (f"raw curve B={b}", "raw", b, {"copy": False, "curve": True}),
                (f"link curve B={b}", "link", b, {"copy": False, "curve": True}),
                (f"raw kept-heap B={b}", "raw", b, {"copy": False, "kept_heap": True}),
                (f"link kept-heap B={b}", "link", b, {"copy": False, "kept_heap": True}),
            ]
        runs: dict[str, list[dict]] = {name: [] for name, *_ in cases}
        for repeat in range(args.repeats):
            for name, kind, b, options in cases:
                result = bench.throughput(kind, b, **options)
                runs[name].append(result)
                bench.progress(
                    f"throughput {name:22s} run {repeat + 1}/{args.repeats}: {result['transitions_per_s']:9.0f} transitions/s "
                    f"({result['batches_per_s']:8.0f} msgs/s; other load {result['other_load']:.2f} cores)"
                )
        tput = {name: statistics.median(r["transitions_per_s"] for r in rs) for name, rs in runs.items()}

        profile_text_out: list[str] = []
        if args.profile:
            result = bench.throughput("link", main_batch, profile=True)
            bench.progress(f"profiled link B={main_batch}: {result['transitions_per_s']:.0f} transitions/s (under cProfile)")
            profile_text_out = bench.profiles

        # ------------------------------------------------------------ latency
        latencies = {}
        for kind in ("raw", "link", "pickle"):
            latencies[kind] = bench.latency(kind, latency_phases)
            bench.progress(
                f"latency {kind:6s}: "
                + ", ".join(
                    f"{phase_names[p]} p50 {1e3 * percentile(latencies[kind][p], 50):.2f} ms"
                    for p in phase_names
                )
            )

        # ------------------------------------------------------------ weights
        weights, raw_weights = {}, {}
        for actors in (1, 4):
            for raw, store in ((True, raw_weights), (False, weights)):
                store[actors] = bench.weights(actors, weight_sizes, weight_repeats, raw=raw)
                bench.progress(
                    f"weights to {actors} {'raw subscriber' if raw else 'actor'}(s): "
                    + ", ".join(
                        f"{p / 1e6:g}M {1e3 * statistics.median(t):.1f} ms" for p, t in store[actors]["timings"].items()
                    )
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    other_load = whole_run.other_cores()

    # ---------------------------------------------------------------- tables
    ok = True
    print()
    print(f"THROUGHPUT (medians; 'vs raw' = the case / raw ZeroMQ at the same message size, both delivering to the "
          f"receiver without a copy, target >= {TARGET_LINK_VS_RAW:.0%}; 'vs raw+copy' = both also copying every batch "
          "into the learner's ring buffer)")
    print(f"{'case':26s} {'transitions/s':>13s} {'msgs/s':>9s} {'MB/s':>8s} {'vs raw':>7s} {'vs raw+copy':>11s}  note")
    summary: list[tuple[str, str, str]] = []
    for b in batch_sizes:
        raw = tput[f"raw B={b}"]
        raw_copy = tput[f"raw+copy B={b}"]
        for name, size in (
            (f"raw B={b}", message_bytes[b]),
            (f"link B={b}", message_bytes[b]),
            (f"raw+copy B={b}", message_bytes[b]),
            (f"link+copy B={b}", message_bytes[b]),
            (f"link durable B={b}", message_bytes[b]),
            (f"pickle B={b}", pickle_bytes[b]),
        ):
            rate = tput[name]
            note = ""
            if name == f"link B={b}":
                passed = rate / raw >= TARGET_LINK_VS_RAW
                ok &= passed
                note = f"delivered by LearnerLink.receive(); target >= {TARGET_LINK_VS_RAW:.0%} of raw: {verdict(passed)}"
                summary.append((f"link B={b} vs raw ZeroMQ (delivered)", f"{rate / raw:.0%}", verdict(passed)))
            elif name == f"link+copy B={b}":
                note = f"the link + the copy: {rate / raw_copy:.0%} of raw+copy"
                summary.append((f"link+copy B={b} vs raw+copy (reported)", f"{rate / raw_copy:.0%}", ""))
            elif name.startswith("link durable"):
                note = f"+ copy, durable outbox ({rate / tput[f'link+copy B={b}']:.0%} of link+copy)"
            elif name.startswith("raw+copy"):
                note = "raw + the copy into the learner buffer"
            elif name.startswith("raw"):
                note = "baseline: recv only"
            elif name.startswith("pickle"):
                note = f"pickle framing + copy; link+copy is {tput[f'link+copy B={b}'] / rate:.2f}x this"
            print(
                f"{name:26s} {rate:13.0f} {rate / b:9.0f} {rate / b * size / MB:8.0f} {rate / raw:7.0%} "
                f"{rate / raw_copy:11.0%}  {note}"
            )
    curve_cost = {}
    for b in batch_sizes:
        raw_plain, raw_curve = tput[f"raw B={b}"], tput[f"raw curve B={b}"]
        link_plain, link_curve = tput[f"link B={b}"], tput[f"link curve B={b}"]
        curve_keeps = link_curve / link_plain
        curve_cost[b] = 1 - curve_keeps
        curve_passed = curve_keeps >= TARGET_CURVE_KEEPS
        ok &= curve_passed
        print(
            f"{f'raw curve B={b}':26s} {raw_curve:13.0f} {raw_curve / b:9.0f} "
            f"{raw_curve / b * message_bytes[b] / MB:8.0f} {raw_curve / raw_plain:7.0%} {'':11s}  "
            f"raw ZeroMQ with CURVE (cost {1 - raw_curve / raw_plain:.0%}: libzmq's own)"
        )
        print(
            f"{f'link curve B={b}':26s} {link_curve:13.0f} {link_curve / b:9.0f} "
            f"{link_curve / b * message_bytes[b] / MB:8.0f} {link_curve / raw_plain:7.0%} {'':11s}  "
            f"CurveZMQ on: {curve_keeps:.0%} of the link without (cost {1 - curve_keeps:.0%}; target < 30%: "
            f"{verdict(curve_passed)}); {link_curve / raw_curve:.0%} of raw with CURVE"
        )
        summary.append((f"CurveZMQ cost on the link, B={b}", f"{1 - curve_keeps:.0%}", verdict(curve_passed)))
    for b in batch_sizes:
        raw_kept, link_kept = tput[f"raw kept-heap B={b}"], tput[f"link kept-heap B={b}"]
        print(
            f"{f'raw kept-heap B={b}':26s} {raw_kept:13.0f} {raw_kept / b:9.0f} {raw_kept / b * message_bytes[b] / MB:8.0f} "
            f"{raw_kept / tput[f'raw B={b}']:7.0%} {'':11s}  both processes keep freed buffers in the heap (glibc settings)"
        )
        print(
            f"{f'link kept-heap B={b}':26s} {link_kept:13.0f} {link_kept / b:9.0f} {link_kept / b * message_bytes[b] / MB:8.0f} "
            f"{link_kept / tput[f'raw B={b}']:7.0%} {'':11s}  {link_kept / raw_kept:.0%} of raw kept-heap (reported)"
        )
        summary.append((f"link vs raw, both kept-heap, B={b} (reported)", f"{link_kept / raw_kept:.0%}", ""))
    print("where the main threads spent the window (the run with the median throughput):")
    for name in [n for n in runs if n.startswith("link")]:
        extra = sorted(runs[name], key=lambda r: r["transitions_per_s"])[len(runs[name]) // 2]
        print(
            f"  {name:20s} learner: {extra['copy_share']:4.0%} copying into the buffer, {extra['wait_share']:4.0%} waiting "
            f"in receive() | actor: {extra['actor_send_share']:4.0%} in ActorLink.send ({extra['send_call_us']:5.0f} us "
            f"per call), {extra['actor_wait_share']:4.0%} waiting for acknowledgements"
        )

    print()
    print("LATENCY (send call -> copied into the learner buffer; one transition per batch; ms)")
    print(f"{'case':10s} {'rate':>15s} {'n':>6s} {'p50':>8s} {'p99':>8s} {'max':>8s}")
    for kind, label in (("raw", "raw ZeroMQ"), ("link", "link"), ("pickle", "pickle")):
        for phase, phase_label in phase_names.items():
            values = latencies[kind][phase]
            print(
                f"{label:10s} {phase_label:>15s} {len(values):6d} {1e3 * percentile(values, 50):8.2f} "
                f"{1e3 * percentile(values, 99):8.2f} {1e3 * max(values):8.2f}"
            )

    print()
    print(f"WEIGHTS BROADCAST (publish_weights -> last actor's latest_weights() returns it; median of {weight_repeats}; ms)")
    print("  raw = baseline: the blob as one frame on a raw ZeroMQ PUB, time until the last SUB has received it")
    print(
        f"{'params':>8s} {'blob MB':>8s} {'raw x1':>8s} {'1 actor':>9s} {'raw x4':>8s} {'4 actors':>9s} "
        f"{'4 actors min..max':>19s}  note"
    )
    for params in weight_sizes:
        one = weights[1]["timings"][params]
        four = weights[4]["timings"][params]
        raw_one = statistics.median(raw_weights[1]["timings"][params])
        raw_four = statistics.median(raw_weights[4]["timings"][params])
        note = ""
        if params == 5_000_000:
            passed = 1e3 * statistics.median(four) < TARGET_WEIGHTS_5M_4_ACTORS_MS
            ok &= passed
            note = f"target < {TARGET_WEIGHTS_5M_4_ACTORS_MS:.0f} ms: {verdict(passed)}"
            summary.append(("5M params to 4 actors", f"{1e3 * statistics.median(four):.1f} ms", verdict(passed)))
        print(
            f"{params / 1e6:7g}M {weights[1]['blob_bytes'][params] / MB:8.1f} {1e3 * raw_one:8.1f} "
            f"{1e3 * statistics.median(one):9.1f} {1e3 * raw_four:8.1f} {1e3 * statistics.median(four):9.1f} "
            f"{1e3 * min(four):9.1f}..{1e3 * max(four):<9.1f}  {note}"
        )

    print()
    print(
        f"LOAD FROM OTHER PROCESSES: {other_load:.2f} cores on average over the run; per throughput run median "
        f"{statistics.median(bench.other_load):.2f}, max {max(bench.other_load):.2f} (of {os.cpu_count()} cores)"
    )
    if max(bench.other_load) > 0.25:
        print("  WARNING: something else competed for the CPUs during some runs; rerun on an idle machine to trust figures")
    print()
    print("TARGETS")
    for what, value, passed in summary:
        print(f"  {what:45s} {value:>10s}  {passed}")
    if profile_text_out:
        print()
        for text in profile_text_out:
            print(text)
            print()
    print()
    for b in batch_sizes:
        print(f"link_transitions_per_s_b{b}={tput[f'link B={b}']:.0f}")
        print(f"link_vs_raw_b{b}={tput[f'link B={b}'] / tput[f'raw B={b}']:.3f}")
        print(f"link_copy_vs_raw_copy_b{b}={tput[f'link+copy B={b}'] / tput[f'raw+copy B={b}']:.3f}")
    for b in batch_sizes:
        print(f"curve_cost_b{b}={curve_cost[b]:.3f}")
        print(f"link_vs_raw_kept_heap_b{b}={tput[f'link kept-heap B={b}'] / tput[f'raw kept-heap B={b}']:.3f}")
    print(f"weights_5m_4_actors_ms={1e3 * statistics.median(weights[4]['timings'][5_000_000]):.1f}")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
