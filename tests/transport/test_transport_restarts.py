"""Kill -9 either side mid-stream: after restart the learner holds every transition exactly once."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

PEERS = Path(__file__).with_name("peer_processes.py")
STEPS = 200


def free_ports(count: int) -> list[int]:
    sockets = []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class Peers:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.transitions_port, self.weights_port = free_ports(2)
        self.checkpoint = tmp_path / "learner"
        self.outbox = tmp_path / "actor" / "outbox"
        self.outbox.parent.mkdir(parents=True)
        self.processes: list[subprocess.Popen] = []

    def _start(self, role: str, *extra: str) -> subprocess.Popen:
        log = open(self.tmp_path / f"{role}-{len(self.processes)}.log", "w")
        process = subprocess.Popen(
            [sys.executable, str(PEERS), role, "--transitions-port", str(self.transitions_port),
             "--weights-port", str(self.weights_port), *extra],
            stdout=log, stderr=subprocess.STDOUT,
        )
        self.processes.append(process)
        return process

    def start_learner(self) -> subprocess.Popen:
        return self._start("learner", "--checkpoint", str(self.checkpoint))

    def start_actor(self) -> subprocess.Popen:
        return self._start("actor", "--outbox", str(self.outbox), "--steps", str(STEPS), "--rate-hz", "50")

    def actor_steps(self) -> int:
        try:
            return int((self.outbox.parent / "actor_steps.txt").read_text() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def learner_steps(self) -> np.ndarray:
        path = self.checkpoint / "checkpoint.npz"
        if not path.exists():
            return np.zeros(0, dtype=np.int64)
        with np.load(path, allow_pickle=False) as data:
            return data["steps"]

    def wait_for(self, condition, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; logs in {self.tmp_path}")
            time.sleep(0.05)

    def stop_learner(self, learner: subprocess.Popen) -> None:
        learner.send_signal(signal.SIGTERM)
        learner.wait(timeout=10)

    def cleanup(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=5)


@pytest.fixture
def peers(tmp_path: Path):
    peers = Peers(tmp_path)
    yield peers
    peers.cleanup()


def test_learner_killed_mid_stream_and_restarted_from_checkpoint_holds_every_transition_once(peers: Peers) -> None:
    learner = peers.start_learner()
    actor = peers.start_actor()
    peers.wait_for(lambda: len(peers.learner_steps()) >= 40, 30, "the learner to checkpoint 40 transitions")

    os.kill(learner.pid, signal.SIGKILL)
    learner.wait(timeout=5)
    steps_at_kill = peers.actor_steps()
    time.sleep(1.5)
    steps_while_learner_dead = peers.actor_steps() - steps_at_kill
    peers.start_learner()
    assert actor.wait(timeout=60) == 0, "the actor did not see all its transitions committed"
    peers.stop_learner(peers.processes[-1])

    held = peers.learner_steps()
    assert steps_while_learner_dead >= 20  # the actor kept stepping at 50 Hz without a learner
    assert len(held) == STEPS
    assert np.array_equal(np.sort(held), np.arange(STEPS))


def test_actor_killed_mid_stream_and_restarted_loses_and_duplicates_nothing(peers: Peers) -> None:
    learner = peers.start_learner()
    actor = peers.start_actor()
    peers.wait_for(lambda: peers.actor_steps() >= 80, 30, "the actor to take 80 steps")

    os.kill(actor.pid, signal.SIGKILL)
    actor.wait(timeout=5)
    restarted = peers.start_actor()
    assert restarted.wait(timeout=60) == 0, "the restarted actor did not see all its transitions committed"
    peers.stop_learner(learner)

    held = peers.learner_steps()
    assert len(held) == STEPS
    assert np.array_equal(np.sort(held), np.arange(STEPS))
