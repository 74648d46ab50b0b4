"""A task on a gymnasium env: no robot, scene, safety box or reset sections; its layout declared
under env and given to the learner from the config alone; the Franka's settings refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from robot_stack.config import ConfigError, config_to_yaml, load_task_config
from robot_stack.data.spec import action_spec, binary_gripper, observation_spec

POINT_MASS_TASK = Path(__file__).resolve().parents[1] / "envs" / "point_mass_task.yaml"


def write_task(tmp_path: Path, **changes) -> Path:
    data = yaml.safe_load(POINT_MASS_TASK.read_text())
    for dotted, value in changes.items():
        node, *path = dotted.split("__")
        parent = data
        for key in [node, *path][:-1]:
            parent = parent.setdefault(key, {})
        parent[[node, *path][-1]] = value
    path = tmp_path / "task.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_learner_reads_a_gymnasium_task_layout_from_the_config_alone(tmp_path):
    path = write_task(tmp_path, env__observation={"state_dim": 5, "images": {"top": [32, 40]}},
                      env__action={"dim": 3, "gripper": "binary"})

    config = load_task_config(path)

    assert {key: spec.shape for key, spec in observation_spec(config).items()} == {"state": (5,), "images/top": (32, 40, 3)}
    assert action_spec(config)["actions"].shape == (3,)
    assert binary_gripper(config) and config.robot is None and config.simulated


def test_a_gymnasium_task_loads_back_from_its_written_out_config(tmp_path):
    config = load_task_config(POINT_MASS_TASK)
    written = tmp_path / "written.yaml"
    written.write_text(config_to_yaml(config))

    assert load_task_config(written).model_dump() == config.model_dump()


def test_a_real_time_gymnasium_env_is_not_simulated(tmp_path):
    assert not load_task_config(write_task(tmp_path, env__real_time=True)).simulated


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"robot": {"backend": "sim"}}, "robot: set for a gymnasium env"),
        ({"task__sim": {"scene": {"kind": "pick_cube"}}}, "task.sim: set for a gymnasium env"),
        ({"task__safety_box": {"xyz_min_m": [0.2, -0.2, 0.02]}}, "task.safety_box: set for a gymnasium env"),
        ({"task__reset": {"random_xy_range_m": 0.02}}, "task.reset: set for a gymnasium env"),
        ({"task__gripper_mode": "fixed_closed"}, "task.gripper_mode: set for a gymnasium env"),
        ({"task__observation": {"state": ["tcp_pose"]}}, "task.observation: set for a gymnasium env"),
        ({"cameras": {"cameras": {"front": {"kind": "sim"}}}}, "cameras: set for a gymnasium env"),
        ({"task__reward": {"source": "vlm", "vlm": {"model_path": "m", "success_prompts": ["a"], "failure_prompts": ["b"]}}},
         "task.reward.source is 'vlm'; a gymnasium env gives its own reward"),
        ({"teleop": {"kind": "spacemouse"}}, "teleop.kind 'spacemouse' drives the project's Franka"),
        ({"env__expert": None}, "teleop.kind 'scripted' needs env.expert"),
        ({"env__teleop": "point_mass_env:make_teleop"}, "teleop.kind 'scripted' and env.teleop both name who intervenes"),
        ({"env__id": "PointMass-v0"}, "name the env by exactly one of 'factory'"),
        ({"env__observation": {"state_dim": 4, "images": {"front": [4, 64]}}}, "camera 'front': height and width must each be in [8, 1024]"),
    ],
)
def test_settings_that_make_no_sense_for_a_gymnasium_env_are_refused(tmp_path, changes, message):
    path = write_task(tmp_path, **changes)

    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(".", r"\.").replace("(", r"\(")):
        load_task_config(path)


def test_a_task_with_neither_robot_nor_env_is_refused(tmp_path):
    path = tmp_path / "task.yaml"
    path.write_text("task: {name: nothing}\n")

    with pytest.raises(ConfigError, match="the task names no robot and no env"):
        load_task_config(path)


@pytest.mark.parametrize(
    "command",
    [
        "sim expert --task TASK", "sim demo --task TASK", "hw check TASK", "reward record TASK --out frames",
        "reward train TASK --frames frames", "reward eval TASK --frames frames --out out", "encoder pretrain TASK --frames frames",
        "rldg export-demos TASK demos --instruction go --out out",
    ],
)
def test_commands_that_drive_the_franka_refuse_a_gymnasium_task_in_one_line(command, capsys):
    from robot_stack.cli import main

    assert main([str(POINT_MASS_TASK) if word == "TASK" else word for word in command.split()]) == 1
    error = capsys.readouterr().err.strip()
    assert "\n" not in error
    assert f"{POINT_MASS_TASK}: task 'point_mass' runs a gymnasium env (factory point_mass_env:make_point_mass)" in error
    assert f"`robot-stack {' '.join(command.split()[:2])}` drives the project's Franka" in error


def test_an_rldg_experiment_on_a_gymnasium_task_is_refused(tmp_path):
    from robot_stack.config.rldg import load_rldg_config

    experiment = tmp_path / "exp.yaml"
    variants = [{"name": name, "instruction": "go", "overrides": {}} for name in ("a", "b")]
    experiment.write_text(yaml.safe_dump({"name": "exp", "base_task": str(POINT_MASS_TASK), "variants": variants}))

    with pytest.raises(ConfigError, match=r"runs a gymnasium env .* RLDG \(its variants are the project's simulated tasks\)"):
        load_rldg_config(experiment)
