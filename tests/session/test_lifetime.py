"""A process started with exit_with_parent stops cleanly (its SIGTERM handler runs) when its
parent dies, through the kernel (Linux prctl) and through the portable watchdog alike."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Stands in for a learner: a clean stop on SIGTERM, announced on stdout.
CHILD = """
import signal, sys, threading
from robot_stack.lifetime import exit_with_parent
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
exit_with_parent(int(sys.argv[1]), kernel=sys.argv[2] == "kernel", poll_s=0.05)
print("ready", flush=True)
print("stopped cleanly" if stop.wait(30) else "still running", flush=True)
"""

# Stands in for a session: starts the child, then waits to be killed.
PARENT = """
import os, subprocess, sys
out = open(sys.argv[2], "w")
subprocess.Popen([sys.executable, "-c", sys.argv[1], str(os.getpid()), sys.argv[3]], stdout=out)
sys.stdin.read()
"""


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def _wait_for_text(path: Path, text: str, timeout_s: float) -> float:
    """Seconds until ``text`` appeared in the file; fails after ``timeout_s``."""
    started = time.monotonic()
    while text not in (path.read_text() if path.exists() else ""):
        assert time.monotonic() - started < timeout_s, f"no {text!r} within {timeout_s} s: {path.read_text()!r}"
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.mark.parametrize("mechanism", ["kernel", "watchdog"])
def test_child_stops_cleanly_when_its_parent_is_killed(tmp_path, mechanism):
    output = tmp_path / "child.out"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD, str(output), mechanism],
                              stdin=subprocess.PIPE, env=_env())
    try:
        _wait_for_text(output, "ready", 20)
        parent.kill()
        parent.wait(5)
        assert _wait_for_text(output, "stopped cleanly", 5) < 2
    finally:
        parent.kill()
        parent.wait(5)


def test_child_orphaned_before_it_started_watching_stops_at_once(tmp_path):
    # The supervisor named itself, but the child's parent is already someone else (this test).
    output = tmp_path / "child.out"
    with open(output, "w") as out:
        child = subprocess.Popen([sys.executable, "-c", CHILD, "1", "kernel"], stdout=out, env=_env())
        assert child.wait(20) == 0
    assert "stopped cleanly" in output.read_text()


def test_child_keeps_running_while_its_parent_lives(tmp_path):
    output = tmp_path / "child.out"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD, str(output), "watchdog"],
                              stdin=subprocess.PIPE, env=_env())
    try:
        _wait_for_text(output, "ready", 20)
        # Several watchdog polls go by; nothing may stop the child meanwhile.
        with pytest.raises(AssertionError):
            _wait_for_text(output, "stopped", 0.5)
    finally:
        parent.kill()
        parent.wait(5)
    _wait_for_text(output, "stopped cleanly", 5)
