"""Run robot-stack's ROS 2 nodes as separate processes, on loopback, for tests.

``ros_environment()`` builds ros_ws if needed (scripts/build_ros.sh) and returns the
environment that scripts/ros_env.sh sets up, plus a unique ROS_DOMAIN_ID, DDS on localhost
and ROS_LOG_DIR in a temp dir. ``NodeProcess`` starts one node executable with parameters
and stops it with a signal, bounded in time. ``LaunchProcess`` runs a launch file with ROS 2's
own launch, in a session of its own, so that every process it started can be found and
cleaned up.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "ros_ws" / "install"
NODE_DIR = INSTALL / "robot_stack_ros" / "lib" / "robot_stack_ros"
_domains = itertools.count((os.getpid() % 90) + 10)
_cached_env: Optional[dict] = None


class RosUnavailable(RuntimeError):
    pass


def ros_environment() -> dict:
    """The environment of a sourced ros_ws, on a fresh domain id."""
    global _cached_env
    if _cached_env is None:
        venv = Path(sys.prefix)
        try:
            import rclpy  # noqa: F401 (is ROS 2 installed?)
        except ImportError as error:
            raise RosUnavailable(f"rclpy is not installed ({error}): scripts/setup.sh dev,ros installs it") from None
        build = subprocess.run(
            ["bash", str(REPO / "scripts" / "build_ros.sh")], cwd=REPO, capture_output=True, text=True,
            env={**os.environ, "VENV": str(venv)}, timeout=600,
        )
        if build.returncode != 0:
            raise RuntimeError(f"building ros_ws failed:\n{build.stdout}\n{build.stderr}")
        dump = subprocess.run(
            ["bash", "-c", f'VENV="{venv}" source "{REPO}/scripts/ros_env.sh" >/dev/null && env -0'],
            capture_output=True, timeout=60, check=True,
        ).stdout
        _cached_env = dict(item.split("=", 1) for item in dump.decode().split("\0") if "=" in item)
    env = dict(_cached_env)
    env["ROS_DOMAIN_ID"] = str(next(_domains) % 101 + 100)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["ROS_LOG_DIR"] = tempfile.mkdtemp(prefix="ros-log-")
    env["MUJOCO_GL"] = env.get("MUJOCO_GL", "egl")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def enter_ros_environment(env: dict) -> None:
    """Make this (test) process a ROS participant of ``env``'s domain: rclpy reads the
    variables at init, and the built interface packages must be importable."""
    for key in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOG_DIR", "AMENT_PREFIX_PATH", "RMW_IMPLEMENTATION"):
        if key in env:
            os.environ[key] = env[key]
    for entry in reversed(env.get("PYTHONPATH", "").split(os.pathsep)):
        if entry and entry not in sys.path:
            sys.path.insert(0, entry)


def param_args(params: dict) -> list[str]:
    args = ["--ros-args"]
    for key, value in params.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        args += ["-p", f"{key}:={value}"]
    return args


class NodeProcess:
    def __init__(self, executable: str, params: dict, env: dict, log_dir: Path, cwd: Path = REPO, remaps: dict = None):
        """``remaps``: ROS name remappings as ``ros2 run``/launch pass them (``-r from:=to``)."""
        self.name = executable
        self.log_path = Path(log_dir) / f"{executable}.log"
        self._log = open(self.log_path, "w")
        remap_args = [arg for key, value in (remaps or {}).items() for arg in ("-r", f"{key}:={value}")]
        self.process = subprocess.Popen(
            [str(NODE_DIR / executable), *param_args(params), *remap_args], cwd=cwd, env=env,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 15.0) -> int:
        """Signal the node and wait for it; kills it (and fails loudly) past the timeout."""
        if self.alive():
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
                self._log.close()
                raise AssertionError(f"{self.name} did not stop within {timeout_s} s of {signal.Signals(sig).name}:\n{self.log()[-3000:]}")
        self._log.close()
        return self.process.returncode


def wait_for(predicate, timeout_s: float, what: str, processes=(), poll_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        for p in processes:
            if not p.alive():
                raise AssertionError(f"{p.name} exited ({p.process.returncode}) while waiting for {what}:\n{p.log()[-4000:]}")
        time.sleep(poll_s)
    logs = "\n".join(f"--- {p.name}\n{p.log()[-2500:]}" for p in processes)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}\n{logs}")


# ros2launch's own entry point, for machines with launch and launch_ros but no ros2 command
# (launch built from source: there are no PyPI wheels of launch or ros2cli).
_LAUNCH_DRIVER = (
    "import sys; from ros2launch.api import launch_a_launch_file; "
    "sys.exit(launch_a_launch_file(launch_file_path=sys.argv[1], launch_file_arguments=sys.argv[2:], noninteractive=True))"
)


def launch_command(env: dict) -> list[str]:
    """``ros2 launch`` where ROS 2 is installed with its CLI, else launch's Python API;
    RosUnavailable where neither exists."""
    ros2 = shutil.which("ros2", path=env.get("PATH"))
    if ros2 is not None:
        return [ros2, "launch"]
    probe = subprocess.run([sys.executable, "-c", "import launch_ros, ros2launch.api"], env=env, cwd=tempfile.gettempdir(),
                           capture_output=True, timeout=60)
    if probe.returncode != 0:
        raise RosUnavailable("neither the ros2 command nor the launch, launch_ros and ros2launch packages are installed")
    return [sys.executable, "-c", _LAUNCH_DRIVER]


def session_processes(session_id: int) -> list[int]:
    """Live processes (zombies excluded) of the session ``session_id``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == session_id and fields[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class LaunchProcess:
    """A launch file run with ROS 2's launch in a session of its own: the processes it starts
    stay in that session (launch does not detach them), also once launch itself is gone."""

    def __init__(self, launch_file: Path, arguments: dict, env: dict, log_dir: Path, cwd: Path = REPO):
        self.name = f"launch {Path(launch_file).name}"
        self.log_path = Path(log_dir) / "launch.log"
        self._log = open(self.log_path, "w")
        args = [f"{key}:={value}" for key, value in arguments.items()]
        self.process = subprocess.Popen(
            [*launch_command(env), str(launch_file), *args], cwd=cwd, env=env,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.session_id = self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def started(self) -> list[int]:
        """The processes launch started that are still running (launch itself excluded)."""
        return [pid for pid in session_processes(self.session_id) if pid != self.process.pid]

    def wait(self, timeout_s: float) -> int:
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running after {timeout_s} s:\n{self.log()[-4000:]}") from None

    def kill_all(self) -> None:
        """Whatever is left of the session: the test's own clean-up, after its assertions."""
        for pid in [self.process.pid, *self.started()]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.process.wait(10)
        finally:
            self._log.close()
