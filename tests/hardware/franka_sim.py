"""franky-sim for the hardware tests: a MuJoCo FR3 with a Franka Hand behind the real
libfranka network protocol (robot server v10, gripper v3), on 127.0.0.1 only.

franky-sim serves one client at a time and keeps the arm where the last client left it;
a client that disconnects frees it for the next. It simulates no reflexes, no
communication errors and no external wrench, and its collision thresholds are ignored.

Run as a script, this module is the libfranka_torque check: pylibfranka cannot share a
process with franky, so the tests run it in a subprocess and read one JSON line.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from robot_stack.config.schema import FR3_HOME_RAD, RobotConfig

SIM_HOST = "127.0.0.1"
_READY_LINE = "Connect to the server using"


def missing_package(*modules_and_packages: tuple[str, str]) -> str | None:
    """Why a test cannot run here (the first of the packages that is not installed), or None."""
    for module, package in modules_and_packages:
        if importlib.util.find_spec(module) is None:
            return f"{package} is not installed (pip install -e '.[franka]')"
    return None


FRANKY = ("franky", "franky-control")
FRANKY_SIM = ("franky_sim", "franky-sim")
PYLIBFRANKA = ("pylibfranka", "pylibfranka")


def start_franky_sim(log_path: Path, timeout_s: float = 60.0) -> subprocess.Popen:
    """Start franky-sim with MuJoCo physics on 127.0.0.1 and return once it listens;
    RuntimeError with its log if it exits or is not ready within ``timeout_s``."""
    log_file = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, "-c", "from franky_sim.run_server import main; main()",
         "--simulator", "mujoco", "--hostname", SIM_HOST],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    log_file.close()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _READY_LINE in log_path.read_text():
            return process
        if process.poll() is not None:
            raise RuntimeError(
                f"franky-sim exited with code {process.returncode} before listening on {SIM_HOST} (is another "
                f"franky-sim holding port 1337?):\n{log_path.read_text()}"
            )
        time.sleep(0.1)
    stop_franky_sim(process)
    raise RuntimeError(f"franky-sim was not listening on {SIM_HOST} after {timeout_s:.0f} s:\n{log_path.read_text()}")


def stop_franky_sim(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def sim_robot_config(**overrides) -> RobotConfig:
    """The lab FR3's settings pointed at franky-sim (no real-time kernel there)."""
    fields = dict(
        backend="franka", address=SIM_HOST, realtime="ignore", joint_move_speed_factor=0.5, watchdog_timeout_s=0.5
    )
    fields.update(overrides)
    return RobotConfig(**fields)


def run_libfranka_torque_check() -> dict:
    """Home, then track a target 4.7 cm away with the Python torque loop; open and close
    the fingers while it holds there."""
    from robot_stack.hardware.devices import make_franka_backend

    policy_before = os.sched_getscheduler(0)
    backend = make_franka_backend(sim_robot_config(driver="libfranka_torque"), None)
    try:
        backend.move_to_joint_positions(np.array(FR3_HOME_RAD), 1.0)
        start = backend.read_state()
        goal = start.tcp_position_m + np.array([0.03, -0.02, -0.03])

        def track_for(seconds: float, until_gripper_idle: bool = False) -> float | None:
            """Send the goal every 50 ms; the time it first came within 3 mm, if it did."""
            started, reached_s = time.monotonic(), None
            while time.monotonic() - started < seconds:
                backend.set_target(goal, start.tcp_rotation)
                backend.advance(0.05)
                if reached_s is None and np.linalg.norm(backend.read_state().tcp_position_m - goal) < 0.003:
                    reached_s = time.monotonic() - started
                if until_gripper_idle and backend.gripper_idle:
                    break
            return reached_s

        reached_s = track_for(2.0)
        settled_error_m = float(np.linalg.norm(backend.read_state().tcp_position_m - goal))
        backend.set_gripper(0.08)
        track_for(3.0, until_gripper_idle=True)
        opened_width_m = backend.read_state().gripper_width_m
        backend.set_gripper(0.0)
        track_for(3.0, until_gripper_idle=True)
        return {
            "reached_s": reached_s,
            "settled_error_m": settled_error_m,
            "opened_width_m": opened_width_m,
            "closed_width_m": backend.read_state().gripper_width_m,
            "gripper_error": backend.gripper_error,
            "caller_kept_scheduling": os.sched_getscheduler(0) == policy_before,
        }
    finally:
        backend.close()


if __name__ == "__main__":
    print(json.dumps(run_libfranka_torque_check()))
