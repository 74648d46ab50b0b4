"""The transition layout has one home, robot_stack/data/spec.py, that every stage imports."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from robot_stack.config import load_task_config
from robot_stack.envs import make_sim_env

REPO = Path(__file__).resolve().parents[2]
HOME = REPO / "robot_stack" / "data" / "spec.py"
PACKAGES = ("robot_stack", "actor", "learner", "benchmarks")

# The names of the layout's own definitions, and the literal values of its constants.
DEFINED_NAMES = {"ArraySpec", "flatten_observation", "check_batch", "batch_spec", "transition_batch_spec",
                 "observation_spec", "action_spec", "env_action_dim", "state_dim", "env_spec",
                 "GRIPPER_THRESHOLD", "STATE_KEY_SIZES", "STATE_ENTRY_NAMES", "state_names", "action_names", "FLAG_KEYS"}
CONSTANT_VALUES = {"observations/", "next_observations/", "images/",
                   ("terminated", "truncated", "interventions", "gripper_changed")}


def module_level_definitions(path: Path):
    """(line, name, literal value or None) of each module-level def, class and assignment."""
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            yield node.lineno, node.name, None
        elif isinstance(node, ast.Assign) and all(isinstance(target, ast.Name) for target in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                value = None
            for target in node.targets:
                yield node.lineno, target.id, value


def test_the_transition_layout_is_defined_only_in_data_spec():
    elsewhere = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if path == HOME:
                continue
            for line, name, value in module_level_definitions(path):
                hashable = isinstance(value, (str, tuple))
                if name in DEFINED_NAMES or (hashable and value in CONSTANT_VALUES):
                    elsewhere.append(f"{path.relative_to(REPO)}:{line} {name}")

    assert elsewhere == [], "import these from robot_stack.data.spec instead of defining them again"


def test_the_data_stage_imports_neither_the_transport_nor_the_envs():
    # The wire, the replay and the env all build on the layout; it builds on none of them.
    code = (
        "import sys, robot_stack.data.transitions, robot_stack.data.demo_sets;"
        "print(sorted({m for m in sys.modules if m.startswith(('robot_stack.transport', 'robot_stack.envs', 'robot_stack.policy'))}))"
    )
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=environment, check=True)

    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("task", ["sim_pick_cube_state.yaml", "sim_pick_cube.yaml"])
def test_the_spec_of_a_built_env_is_the_spec_its_config_promises(task):
    from robot_stack.data import spec as vocabulary

    config = load_task_config(REPO / "hardware_configs" / "tasks" / task)
    sim = make_sim_env(config)
    try:
        announced = vocabulary.env_spec(sim.env)
    finally:
        sim.env.close()

    assert announced == (vocabulary.observation_spec(config), vocabulary.action_spec(config))
