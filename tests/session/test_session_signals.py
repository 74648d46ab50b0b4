"""A session's learner and actor never outlive it: a second Ctrl-C while they stop ends the
session at once (no traceback, one line saying what happened, both processes gone), and a
session killed outright takes them with it within seconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robot_stack.config import config_to_yaml, load_task_config
from robot_stack.session import with_fields


@pytest.fixture
def quick_task(pick_cube_state_yaml, tmp_path) -> Path:
    """Small networks, no demos, no evaluation: the learner and the actor start in seconds."""
    config = load_task_config(pick_cube_state_yaml)
    config = with_fields(config, "agent", batch_size=32, hidden_dims=(64, 64))
    config = with_fields(config, "training", min_online_transitions=50, torch_threads=1, demo_episodes=0,
                         eval_episodes=0, checkpoint_every_s=2.0)
    # An orphaned actor waits this long for its learner to take what it sent, then stops.
    config = with_fields(config, "actor", stop_timeout_s=2.0)
    path = tmp_path / "quick_pick_cube.yaml"
    path.write_text(config_to_yaml(config))
    return path


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _stat(int(entry.name))[1] == pid:
            found.append(int(entry.name))
    return found


def _stat(pid: int) -> tuple[str, int]:
    """(state, parent pid) of a process; ("gone", 0) once it no longer exists."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return "gone", 0
    return fields[0], int(fields[1])


def _gone(pid: int) -> bool:
    return _stat(pid)[0] in ("gone", "Z", "X")


class RunningSession:
    def __init__(self, task: Path, run_dir: Path):
        self.run_dir = run_dir
        self.process = subprocess.Popen(
            [sys.executable, "-m", "robot_stack", "session", str(task), "--run-dir", str(run_dir),
             "--demos", str(run_dir.parent / "demos"), "--no-progress", "--max-env-steps", "100000"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.output: list[str] = []
        self.children: list[int] = []

    def wait_for_learner_and_actor(self, timeout_s: float = 120) -> list[int]:
        logs = self.run_dir / "logs"
        deadline = time.monotonic() + timeout_s
        while not ((logs / "status.json").exists() and (logs / "actor.log").exists()):
            assert self.process.poll() is None, self.process.communicate()[0]
            assert time.monotonic() < deadline, "the session did not start its learner and actor"
            time.sleep(0.1)
        self.children = _children(self.process.pid)
        assert len(self.children) == 2, self.children
        return self.children

    def read_until(self, text: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        for line in self.process.stdout:
            self.output.append(line)
            if text in line:
                return
            assert time.monotonic() < deadline, f"no {text!r} in:\n{''.join(self.output)}"
        raise AssertionError(f"the session ended without printing {text!r}:\n{''.join(self.output)}")

    def finish(self, timeout_s: float) -> str:
        rest, _ = self.process.communicate(timeout=timeout_s)
        return "".join(self.output) + rest

    def clean_up(self) -> None:
        for pid in [self.process.pid, *self.children]:
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(10)


def _wait_until_gone(pids: list[int], timeout_s: float) -> float:
    started = time.monotonic()
    while not all(_gone(pid) for pid in pids):
        alive = [pid for pid in pids if not _gone(pid)]
        assert time.monotonic() - started < timeout_s, f"still running {timeout_s} s later: {alive}"
        time.sleep(0.1)
    return time.monotonic() - started


def test_second_ctrl_c_while_stopping_ends_the_session_cleanly_with_no_child_left(quick_task, tmp_path):
    session = RunningSession(quick_task, tmp_path / "run")
    try:
        children = session.wait_for_learner_and_actor()
        session.process.send_signal(signal.SIGINT)
        session.read_until("stopping:")
        session.process.send_signal(signal.SIGINT)
        output = session.finish(timeout_s=30)
        assert session.process.returncode == 0, output
        assert "Traceback" not in output
        assert len([line for line in output.splitlines() if "SIGINT while stopping" in line]) == 1, output
        _wait_until_gone(children, 5)
        assert json.loads((tmp_path / "run" / "summary.json").read_text())["interrupted"]
    finally:
        session.clean_up()


def test_learner_and_actor_stop_within_seconds_of_the_session_being_killed(quick_task, tmp_path):
    session = RunningSession(quick_task, tmp_path / "run")
    try:
        children = session.wait_for_learner_and_actor()
        session.process.kill()
        session.process.wait(10)
        _wait_until_gone(children, 6)
    finally:
        session.clean_up()
