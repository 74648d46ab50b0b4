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
        """The pids of the two, once the actor has connected to the learner."""
        status = self.run_dir / "logs" / "status.json"
        deadline = time.monotonic() + timeout_s
        while not _connected_actors(status):
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


def _connected_actors(status: Path) -> list[str]:
    try:
        return json.loads(status.read_text())["actors"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return []


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
        try:
            _wait_until_gone(children, 6)
        except AssertionError as error:
            logs = session.run_dir / "logs"
            raise AssertionError(f"{error}\n{(logs / 'learner.log').read_text()[-3000:]}\n{(logs / 'actor0.log').read_text()[-3000:]}")
    finally:
        session.clean_up()



class SessionRecordingDemos(RunningSession):
    """A session still in its first step: recording many demos."""

    def __init__(self, task: Path, run_dir: Path):
        self.run_dir = run_dir
        self.demos = run_dir.parent / "demos"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "robot_stack", "session", str(task), "--run-dir", str(run_dir),
             "--demos", str(self.demos), "--no-progress", "--demo-episodes", "500"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.output = []
        self.children = []

    def wait_for_a_finished_demo(self, timeout_s: float = 120) -> int:
        """The recorder's pid, once it has written its first demo."""
        deadline = time.monotonic() + timeout_s
        while not list(self.demos.glob("episode_*.safetensors")):
            assert self.process.poll() is None, self.process.communicate()[0]
            assert time.monotonic() < deadline, "the session recorded no demo"
            time.sleep(0.1)
        self.children = _children(self.process.pid)
        assert len(self.children) == 1, self.children
        return self.children[0]


def _kept_demos(demos: Path) -> dict:
    kept = json.loads((demos / "demos.json").read_text())
    assert kept["interrupted"] and 1 <= len(kept["episodes"]) < 500
    assert all((demos / episode["file"]).exists() for episode in kept["episodes"])
    return kept


def test_ctrl_c_while_the_session_records_demos_keeps_the_finished_ones_and_leaves_no_process(quick_task, tmp_path):
    session = SessionRecordingDemos(quick_task, tmp_path / "run")
    try:
        recorder = session.wait_for_a_finished_demo()
        session.process.send_signal(signal.SIGINT)
        output = session.finish(timeout_s=60)
        assert session.process.returncode == 130, output
        assert "Traceback" not in output
        assert "record-demos: interrupted after" in output and "session interrupted" in output, output
        _wait_until_gone([recorder], 5)
        _kept_demos(session.demos)
    finally:
        session.clean_up()


def test_a_session_killed_while_recording_demos_takes_the_recorder_with_it_and_keeps_its_demos(quick_task, tmp_path):
    session = SessionRecordingDemos(quick_task, tmp_path / "run")
    try:
        recorder = session.wait_for_a_finished_demo()
        session.process.kill()
        session.process.wait(10)
        _wait_until_gone([recorder], 10)
        _kept_demos(session.demos)
    finally:
        session.clean_up()
