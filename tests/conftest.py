import os
from pathlib import Path

import pytest

# Offscreen rendering on headless machines; must be set before mujoco is imported.
os.environ.setdefault("MUJOCO_GL", "egl")

# A process that loads pyrealsense2 (it carries its own DDS) before rclpy crashes at exit
# (SIGSEGV after the last test); rclpy first is fine. The ROS nodes import rclpy first;
# the test process, which uses both, does the same here.
try:
    import rclpy  # noqa: F401
except ImportError:  # ROS 2 is not installed: the ROS tests skip themselves
    pass

REPO_ROOT = Path(__file__).resolve().parents[1]
TASKS = REPO_ROOT / "hardware_configs" / "tasks"


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def pick_cube_yaml() -> Path:
    return TASKS / "sim_pick_cube.yaml"


@pytest.fixture
def pick_cube_state_yaml() -> Path:
    return TASKS / "sim_pick_cube_state.yaml"


@pytest.fixture
def peg_yaml() -> Path:
    return TASKS / "sim_peg_insertion.yaml"
