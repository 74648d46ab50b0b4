"""The simulated cell under ROS 2's own launch: a wrong launch argument fails before any process
starts and leaves none behind; a learner that dies ends the whole cell with a non-zero exit and
no process left; a launch that is killed takes every process with it.

Skipped where launch is not installed: it has no PyPI wheels. On a machine with ROS 2 from the
ros-* wheels, launch, launch_ros and ros2launch built from source (or their source folders on
PYTHONPATH) are enough; with ROS 2 from apt, the ros2 command is used."""

from __future__ import annotations

import os
import signal

import pytest

from rosproc import REPO, LaunchProcess, RosUnavailable, command_line, launch_command, wait_for

from robot_stack.config import load_task_config
from robot_stack.config.loader import config_to_yaml
from robot_stack.run_dir import RunPaths
from robot_stack.config import with_fields
from robot_stack.session import session_config

SIM_SESSION = REPO / "launch" / "sim_session.launch.py"


@pytest.fixture
def launch_env(ros_env):
    try:
        launch_command(ros_env)
    except RosUnavailable as error:
        pytest.skip(str(error))
    return ros_env


def _task_file(tmp_path):
    base = load_task_config(REPO / "hardware_configs" / "tasks" / "sim_pick_cube_state.yaml")
    paths = RunPaths.under(tmp_path, tmp_path / "demos")
    config = with_fields(session_config(base, paths, demo_episodes=0), "ros", state_timeout_s=3.0)
    for directory in (paths.logs, paths.checkpoints):
        directory.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text(config_to_yaml(config))
    return paths


def _no_process_left(cell: LaunchProcess, timeout_s: float) -> None:
    try:
        wait_for(lambda: not cell.started(), timeout_s, "every process launch started to exit")
    except AssertionError:
        left = {pid: command_line(pid) for pid in cell.started()}
        raise AssertionError(f"still running {timeout_s} s after launch exited: {left}\n{cell.log()[-3000:]}") from None


def test_a_wrong_boolean_argument_fails_launch_and_leaves_no_process(launch_env, tmp_path):
    paths = _task_file(tmp_path)
    cell = LaunchProcess(SIM_SESSION, {"config": paths.config_file, "use_cameras": "no"}, launch_env, tmp_path)
    try:
        assert cell.wait(60) != 0, cell.log()
        _no_process_left(cell, 10)
        assert 'Argument "use_cameras" provided value "no" is not valid' in cell.log()
    finally:
        cell.kill_all()


# The whole cell starts and stops: ~15 s on two cores. Fast variant without launch:
# test_launch_and_docker_files.py::test_the_cell_ends_when_the_learner_or_the_controller_exits
@pytest.mark.slow
def test_a_learner_that_dies_ends_the_cell_with_a_non_zero_exit(launch_env, tmp_path):
    paths = _task_file(tmp_path)
    arguments = {"config": paths.config_file, "use_cameras": "false", "run_dir": tmp_path, "demos": paths.demos}
    cell = LaunchProcess(SIM_SESSION, arguments, launch_env, tmp_path)
    try:
        wait_for(lambda: (paths.logs / "status.json").exists(), 120, "the learner's first status", [cell])
        learners = [pid for pid in cell.started() if " learner " in command_line(pid)]
        assert len(learners) == 1, {pid: command_line(pid) for pid in cell.started()}
        os.kill(learners[0], signal.SIGKILL)
        assert cell.wait(90) != 0, cell.log()
        _no_process_left(cell, 10)
        assert "exited (code -9): the cell cannot run without it" in cell.log()
    finally:
        cell.kill_all()


# ~15 s on two cores. Fast variant: tests/session/test_lifetime.py (the helper every node calls).
@pytest.mark.slow
def test_every_process_stops_when_launch_itself_is_killed(launch_env, tmp_path):
    paths = _task_file(tmp_path)
    arguments = {"config": paths.config_file, "use_cameras": "false", "run_dir": tmp_path, "demos": paths.demos}
    cell = LaunchProcess(SIM_SESSION, arguments, launch_env, tmp_path)
    try:
        wait_for(lambda: (paths.logs / "status.json").exists(), 120, "the learner's first status", [cell])
        assert len(cell.started()) == 5, {pid: command_line(pid) for pid in cell.started()}
        cell.process.kill()
        cell.wait(10)
        _no_process_left(cell, 15)
    finally:
        cell.kill_all()
