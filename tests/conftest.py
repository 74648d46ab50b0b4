import os
from pathlib import Path

import pytest

# Offscreen rendering on headless machines; must be set before mujoco is imported.
os.environ.setdefault("MUJOCO_GL", "egl")

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
