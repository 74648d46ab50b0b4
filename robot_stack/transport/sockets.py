"""Pieces both link threads share: the socket options, the wake-up pipe and quiet logging."""

from __future__ import annotations

import logging
import os
import time
from typing import Optional

import zmq

from robot_stack.config import SessionConfig
from robot_stack.transport.security import KeyPair, load_keys
from robot_stack.transport.wire import DecodeError, WireLimits

# Topics end with a NUL, which also marks where the packed message starts in the frame.
WEIGHTS_TOPIC_ALL = b"weights/all\0"
WEIGHTS_TOPIC_DIRECT = b"weights/to/"
MAX_TOPIC_BYTES = 256


def direct_topic(actor_id: str) -> bytes:
    # The NUL ends the id, so actor "a" does not also receive what is meant for "ab".
    return WEIGHTS_TOPIC_DIRECT + actor_id.encode() + b"\0"


def single_frame(frames: list) -> memoryview:
    """The one frame a message travels in (see wire.join_frames)."""
    if len(frames) != 1:
        raise DecodeError(f"message arrived in {len(frames)} ZeroMQ frames; robot-stack messages travel in one")
    return frames[0].buffer


def strip_topic(frame: memoryview) -> memoryview:
    end = bytes(frame[:MAX_TOPIC_BYTES]).find(b"\0")
    if end < 0:
        raise DecodeError(f"weights message has no NUL-terminated topic in its first {MAX_TOPIC_BYTES} bytes")
    return frame[end + 1 :]


def endpoint(host: str, port: int) -> str:
    return f"tcp://{host}:{port}"


def wire_limits(session: SessionConfig) -> WireLimits:
    return WireLimits(max_message_bytes=int(session.transport.max_message_mb * 1024 * 1024))


def server_keys(session: SessionConfig) -> Optional[KeyPair]:
    if session.server_secret_key_file is None:
        return None
    return load_keys(session.server_secret_key_file, need_secret=True)


def client_keys(session: SessionConfig) -> Optional[tuple[KeyPair, bytes]]:
    if session.client_secret_key_file is None:
        return None
    own = load_keys(session.client_secret_key_file, need_secret=True)
    server = load_keys(session.server_public_key_file, need_secret=False)
    return own, server.public


ZERO_COPY_MIN_BYTES = 64 * 1024


def set_common_options(socket: zmq.Socket, session: SessionConfig) -> None:
    socket.linger = 0
    # ZeroMQ's own limit: frames beyond it close the connection before Python sees them.
    socket.maxmsgsize = int(session.transport.max_message_mb * 1024 * 1024)
    # Kernel keepalive as a second line behind heartbeats, for half-open TCP after a cable pull.
    socket.tcp_keepalive = 1
    socket.tcp_keepalive_idle = 10
    socket.tcp_keepalive_intvl = 5
    # pyzmq hands a buffer to libzmq without copying (copy=False) only from this size on;
    # below it a copy is cheaper than the zero-copy bookkeeping (pyzmq's garbage-collector
    # thread drops each buffer once libzmq is done with it). At 200 KB the copy loses: it
    # costs the sending thread ~20 us plus the page faults of a fresh 200 KB ZeroMQ message
    # (~12 a message here), the bookkeeping ~8 us in that other thread.
    socket.copy_threshold = ZERO_COPY_MIN_BYTES


class Waker:
    """A pipe the owning thread polls, so another thread can wake it at once."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)

    def wake(self) -> None:
        try:
            os.write(self.write_fd, b"x")
        except BlockingIOError:  # pipe full: a wake-up is already pending
            pass

    def drain(self) -> None:
        try:
            while os.read(self.read_fd, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass


class QuietLog:
    """Logs the first occurrence of a kind of problem at once, then at most every few seconds
    with a count, so a peer that sends garbage cannot flood the log."""

    MAX_KINDS = 1024  # kinds may name peers: a peer inventing names must not grow this without bound

    def __init__(self, logger: logging.Logger, every_s: float = 5.0) -> None:
        self.logger = logger
        self.every_s = every_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, kind: str, message: str, *args) -> None:
        now = time.monotonic()
        if kind not in self._last and len(self._last) >= self.MAX_KINDS:
            self._last.clear()  # every kind may log once more: a bounded price for bounded memory
            self._suppressed.clear()
        if now - self._last.get(kind, -1e9) >= self.every_s:
            suppressed = self._suppressed.pop(kind, 0)
            suffix = f" ({suppressed} more like this since the last report)" if suppressed else ""
            self.logger.warning(message + suffix, *args)
            self._last[kind] = now
        else:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
