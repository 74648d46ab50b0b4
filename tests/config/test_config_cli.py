"""`robot-stack config check`: validate config files, print them resolved, exit 1 on a bad one."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from robot_stack.cli import main
from robot_stack.config import TaskConfig, load_task_config

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_CONFIGS = sorted((REPO_ROOT / "hardware_configs").glob("**/*.yaml"))


def write_yaml(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


@pytest.fixture
def good_robot(tmp_path: Path) -> Path:
    return write_yaml(tmp_path / "robots" / "good.yaml", "name: good_arm\nbackend: sim\n")


@pytest.fixture
def bad_robot(tmp_path: Path) -> Path:
    return write_yaml(tmp_path / "robots" / "bad.yaml", "name: bad_arm\nbackend: simulated\n")


def test_hardware_configs_ship_every_kind_of_file() -> None:
    folders = {path.parent.name for path in SHIPPED_CONFIGS}

    assert folders == {"robots", "cameras", "teleop", "sessions", "tasks", "variants", "rldg"}  # variants: task files under tasks/variants


@pytest.mark.parametrize("config_file", SHIPPED_CONFIGS, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_every_shipped_config_passes_config_check(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exit_code = main(["config", "check", str(config_file)])

    assert (exit_code, capsys.readouterr().err) == (0, "")


def test_check_prints_the_resolved_config_with_defaults_filled_in(
    good_robot: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["config", "check", str(good_robot)])

    output = capsys.readouterr().out
    assert output.startswith(f"# {good_robot}: valid robot config, defaults filled in\n")
    printed = yaml.safe_load(output)
    assert printed["name"] == "good_arm"
    assert printed["watchdog_timeout_s"] == 0.5
    assert printed["impedance"]["translational_error_clip_m"] == [0.01, 0.01, 0.01]


def test_the_printed_task_is_itself_a_task_file_that_loads_to_the_same_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task_file = REPO_ROOT / "hardware_configs" / "tasks" / "sim_peg_insertion.yaml"

    main(["config", "check", str(task_file)])

    reprinted = tmp_path / "resolved.yaml"
    reprinted.write_text(capsys.readouterr().out, encoding="utf-8")
    assert TaskConfig.model_validate(load_task_config(reprinted).model_dump()) == TaskConfig.model_validate(
        load_task_config(task_file).model_dump()
    )


def test_several_valid_files_print_as_separate_yaml_documents(
    good_robot: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    session = write_yaml(good_robot.parent.parent / "sessions" / "s.yaml", "weights_port: 7000\n")

    exit_code = main(["config", "check", str(good_robot), str(session)])

    documents = list(yaml.safe_load_all(capsys.readouterr().out))
    assert exit_code == 0
    assert [document.get("name", document.get("weights_port")) for document in documents] == ["good_arm", 7000]


def test_check_exits_1_and_prints_the_problem_to_stderr(bad_robot: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exit_code = main(["config", "check", str(bad_robot)])

    captured = capsys.readouterr()
    assert exit_code == 1
    assert captured.out == ""
    assert captured.err == (
        f"{bad_robot}: invalid config (1 problem):\n"
        f"  {bad_robot}:2: backend = 'simulated': Input should be 'sim' or 'franka'\n"
    )


def test_check_reports_every_bad_file_and_still_prints_the_good_ones(
    tmp_path: Path, bad_robot: Path, good_robot: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = write_yaml(tmp_path / "teleop" / "broken.yaml", "kind: [scripted\n")

    exit_code = main(["config", "check", str(bad_robot), str(good_robot), str(broken)])

    captured = capsys.readouterr()
    assert exit_code == 1
    assert f"{bad_robot}:2: backend = 'simulated'" in captured.err
    assert f"{broken}:2:1: malformed YAML" in captured.err
    assert "name: good_arm" in captured.out


def test_quiet_prints_nothing_for_valid_files(good_robot: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exit_code = main(["config", "check", "--quiet", str(good_robot)])

    assert (exit_code, capsys.readouterr().out) == (0, "")


def test_a_file_with_a_task_key_is_checked_as_a_task_wherever_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task_file = write_yaml(
        tmp_path / "elsewhere" / "t.yaml",
        """
        robot: {backend: sim}
        task:
          name: t
          sim: {scene: {kind: pick_cube}}
        """,
    )

    exit_code = main(["config", "check", str(task_file)])

    assert exit_code == 0
    assert f"# {task_file}: valid task config" in capsys.readouterr().out


def test_the_folder_decides_the_kind_of_other_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    session_file = write_yaml(tmp_path / "sessions" / "s.yaml", "name: not_a_session_field\n")

    exit_code = main(["config", "check", str(session_file)])

    assert exit_code == 1
    assert f"{session_file}:1: name: unknown key 'name'; allowed keys: learner_host," in capsys.readouterr().err


def test_a_file_of_unknown_kind_asks_for_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = write_yaml(tmp_path / "misc" / "robot.yaml", "backend: sim\n")

    exit_code = main(["config", "check", str(file)])

    assert exit_code == 1
    assert capsys.readouterr().err == (
        f"{file}: cannot tell what kind of config this is: it has no top-level 'task' key and its folder is not "
        "one of robots/, cameras/, teleop/, sessions/, rldg/, tasks/; pass --kind {robot,cameras,teleop,session,task,rldg}\n"
    )


def test_kind_flag_checks_a_file_of_unknown_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = write_yaml(tmp_path / "misc" / "robot.yaml", "backend: sim\n")

    exit_code = main(["config", "check", "--kind", "robot", str(file)])

    assert exit_code == 0
    assert f"# {file}: valid robot config" in capsys.readouterr().out


def test_kind_flag_wins_over_the_folder(good_robot: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exit_code = main(["config", "check", "--kind", "teleop", str(good_robot)])

    assert exit_code == 1
    assert f"{good_robot}:1: name: unknown key 'name'; allowed keys: kind," in capsys.readouterr().err


def test_a_missing_file_is_reported_not_raised(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exit_code = main(["config", "check", str(tmp_path / "robots" / "none.yaml")])

    assert exit_code == 1
    assert f"{tmp_path / 'robots' / 'none.yaml'}: file not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--help"], "config"),
        (["config", "--help"], "check"),
        (["config", "check", "--help"], "--kind"),
    ],
)
def test_help_describes_each_level(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)

    assert exited.value.code == 0
    assert expected in capsys.readouterr().out


def test_a_missing_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["config"])

    assert exited.value.code == 2
    assert "the following arguments are required: COMMAND" in capsys.readouterr().err


def test_python_dash_m_robot_stack_runs_the_command() -> None:
    task_file = REPO_ROOT / "hardware_configs" / "tasks" / "sim_pick_cube.yaml"
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}

    completed = subprocess.run(
        [sys.executable, "-m", "robot_stack", "config", "check", "--quiet", str(task_file)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
    )

    assert (completed.returncode, completed.stdout, completed.stderr) == (0, "", "")
