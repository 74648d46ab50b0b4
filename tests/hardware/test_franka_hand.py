"""The Franka Hand's command runners (franky's thread, pylibfranka's process main) against
a fake Hand: once a command counts as done, the published width is where it ended."""

from __future__ import annotations

import multiprocessing
import sys
import threading
import time
import types

import pytest

from robot_stack.config.schema import GripperConfig
from robot_stack.hardware.franka import GripperWorker
from robot_stack.hardware.libfranka_torque import _run_hand_process


class FakeHand:
    """Moves and grasps take ``stroke_s`` and land exactly on their target; a state read
    takes ``read_s``, as a round trip to the Hand does."""

    def __init__(self, stroke_s: float = 0.03, read_s: float = 0.005):
        self.width = 0.0
        self.stroke_s = stroke_s
        self.read_s = read_s
        self.commands: list[float] = []

    def move(self, width: float, speed: float) -> bool:
        time.sleep(self.stroke_s)
        self.width = width
        self.commands.append(width)
        return True

    def grasp(self, width: float, speed: float, force: float, inner: float, outer: float) -> bool:
        return self.move(width, speed)

    def read_once(self):
        width = self.width
        time.sleep(self.read_s)
        return types.SimpleNamespace(width=width)


def wait_for(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


TARGETS = [0.08, 0.0, 0.05, 0.01, 0.07, 0.02, 0.08, 0.0]


def test_gripper_worker_publishes_the_final_width_before_it_reports_idle():
    hand = FakeHand()
    worker = GripperWorker(hand, lambda: hand.width, GripperConfig(), "fake")
    try:
        for target in TARGETS:
            worker.command(target)
            wait_for(lambda: worker.idle)
            assert worker.width_m == pytest.approx(target), hand.commands
    finally:
        worker.close()
    assert hand.commands == TARGETS
    assert worker.error is None


def test_hand_process_publishes_the_final_width_before_it_counts_a_command_done(monkeypatch):
    hand = FakeHand()
    monkeypatch.setitem(sys.modules, "pylibfranka", types.SimpleNamespace(Gripper=lambda address: hand))
    parent, child = multiprocessing.Pipe()
    width = multiprocessing.Value("d", float("nan"), lock=False)
    done = multiprocessing.Value("q", 0, lock=False)
    runner = threading.Thread(
        target=_run_hand_process, args=("fake", GripperConfig().model_dump(), child, width, done), daemon=True
    )
    runner.start()
    try:
        assert parent.poll(5.0) and parent.recv() == ("ready", "")
        for sent, target in enumerate(TARGETS, start=1):
            parent.send(target)
            wait_for(lambda: done.value >= sent)
            assert width.value == pytest.approx(target), hand.commands
    finally:
        parent.send(None)
        runner.join(5.0)
    assert not runner.is_alive()
    assert hand.commands == TARGETS
    assert not parent.poll()  # no error was reported
