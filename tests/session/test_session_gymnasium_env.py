"""A whole session on a gymnasium env that is not built on the project's simulator
(tests/envs/point_mass_env.py): demos from its expert, the learner and the actor as separate
processes with the expert as scripted teleoperator, evaluation; then `record-demos` and
`evaluate` on their own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from robot_stack.config import config_to_yaml, load_task_config, with_fields
from robot_stack.data.checkpoints import CheckpointStore

ENVS = Path(__file__).resolve().parents[1] / "envs"


@pytest.fixture
def point_mass_task(tmp_path) -> Path:
    config = load_task_config(ENVS / "point_mass_task.yaml")
    config = with_fields(config, "agent", batch_size=32, hidden_dims=(32, 32))
    config = with_fields(config, "training", min_online_transitions=50, publish_every_updates=10, torch_threads=1,
                         demo_episodes=3, eval_episodes=3, checkpoint_every_s=2.0)
    config = with_fields(config, "actor", sim_max_lead_env_steps=100, stop_timeout_s=2.0)
    path = tmp_path / "point_mass.yaml"
    path.write_text(config_to_yaml(config))
    return path


def robot_stack(*arguments: str, timeout_s: float) -> subprocess.CompletedProcess:
    # The env's module is found the way a user's package is: on the Python path.
    python_path = os.pathsep.join(filter(None, [str(ENVS), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "robot_stack", *arguments], capture_output=True, text=True, timeout=timeout_s,
        env={**os.environ, "PYTHONPATH": python_path, "PYTHONUNBUFFERED": "1"},
    )


def test_a_session_on_a_gymnasium_env_records_demos_learns_evaluates_and_the_parts_run_alone(point_mass_task, tmp_path):
    run_dir = tmp_path / "run"
    done = robot_stack("session", str(point_mass_task), "--run-dir", str(run_dir), "--demos", str(tmp_path / "demos"),
                       "--max-env-steps", "300", "--no-progress", timeout_s=240)

    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stop_reason"].startswith("step budget reached")
    assert summary["env_steps"] >= 300 and summary["updates"] > 0
    assert summary["evaluation"]["episodes"] == 3
    assert summary["intervention_rate"] > 0  # the env's expert stepped in as the scripted teleoperator
    demos = json.loads((tmp_path / "demos" / "demos.json").read_text())
    assert len(demos["episodes"]) == 3 and demos["observation_spec"]["state"]["shape"] == [4]
    assert CheckpointStore(run_dir / "checkpoints").complete()

    recorded = robot_stack("record-demos", str(point_mass_task), "--episodes", "2", "--out", str(tmp_path / "more_demos"),
                           "--no-progress", timeout_s=120)
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    assert len(json.loads((tmp_path / "more_demos" / "demos.json").read_text())["episodes"]) == 2

    evaluated = robot_stack("evaluate", str(point_mass_task), "--checkpoints", str(run_dir / "checkpoints"),
                            "--episodes", "2", "--out", str(tmp_path / "eval"), "--no-progress", timeout_s=120)
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    assert json.loads((tmp_path / "eval" / "eval.json").read_text())["episodes"] == 2


def test_a_gymnasium_env_without_an_expert_takes_demos_and_interventions_from_its_person(point_mass_task, tmp_path):
    # env.teleop: the intervention source of a person on their own robot (tests/envs: PointMassPerson).
    config = load_task_config(point_mass_task)
    config = with_fields(config, "env", expert=None, teleop="point_mass_env:make_person")
    task = tmp_path / "point_mass_person.yaml"
    task.write_text(config_to_yaml(with_fields(config, "teleop", kind="none")))
    person_log = tmp_path / "person.log"
    os.environ["POINT_MASS_PERSON_LOG"] = str(person_log)
    try:
        done = robot_stack("session", str(task), "--run-dir", str(tmp_path / "run"), "--demos", str(tmp_path / "demos"),
                           "--max-env-steps", "200", "--no-progress", timeout_s=240)
    finally:
        del os.environ["POINT_MASS_PERSON_LOG"]

    assert done.returncode == 0, done.stdout + done.stderr
    assert "recording 3 demos with env.teleop point_mass_env:make_person" in done.stdout
    demos = json.loads((tmp_path / "demos" / "demos.json").read_text())
    assert len(demos["episodes"]) == 3 and demos["success_rate"] == 1.0  # the person drove every step to the goal
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["env_steps"] >= 200 and summary["intervention_rate"] > 0
    # Closed with its env: once after the demos, once by the actor (which counted its takeovers).
    closes = person_log.read_text().splitlines()
    assert len(closes) == 2 and all(int(line.split()[2]) > 0 for line in closes), closes
