"""Flags that override a schema field are checked against that field's bounds when parsed, and
a bad one names the flag: `robot-stack session` would otherwise hand it to a child process,
whose error would cite the config file the session generated."""

from __future__ import annotations

from pathlib import Path

import pytest

from robot_stack.cli import main


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--target", "1.5", "argument --target: must be in (0, 1], got 1.5"),
        ("--target", "0", "argument --target: must be in (0, 1], got 0"),
        ("--target", "nan", "argument --target: must be a finite number in (0, 1], got nan"),
        ("--target", "most", "argument --target: expected a number, got 'most'"),
        ("--eval-episodes", "-1", "argument --eval-episodes: must be in [0, 10000], got -1"),
        ("--demo-episodes", "20000", "argument --demo-episodes: must be in [0, 10000], got 20000"),
        ("--max-minutes", "0", "argument --max-minutes: must be greater than 0, got 0"),
        ("--max-minutes", "inf", "argument --max-minutes: must be a finite number greater than 0, got inf"),
        ("--max-env-steps", "0", "argument --max-env-steps: must be at least 1, got 0"),
        ("--max-env-steps", "2.5", "argument --max-env-steps: expected a whole number, got '2.5'"),
    ],
)
def test_a_bad_session_flag_is_a_usage_error_naming_the_flag_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, message: str
) -> None:
    run_dir = tmp_path / "run"

    # Not even the task file is read first (this one does not exist).
    with pytest.raises(SystemExit) as exited:
        main(["session", str(tmp_path / "task.yaml"), "--run-dir", str(run_dir), "--no-progress", flag, value])

    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert err.splitlines()[-1] == f"robot-stack session: error: {message}"
    assert not run_dir.exists()


def test_session_flags_within_the_schema_bounds_parse(pick_cube_state_yaml: Path) -> None:
    from robot_stack.cli import build_parser

    args = build_parser().parse_args(
        ["session", str(pick_cube_state_yaml), "--target", "1", "--eval-episodes", "0", "--demo-episodes", "0",
         "--max-minutes", "0.5", "--max-env-steps", "1"]
    )

    assert (args.target, args.eval_episodes, args.demo_episodes, args.max_minutes, args.max_env_steps) == (1.0, 0, 0, 0.5, 1)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sim", "expert", "--task", "t.yaml", "--noise", "-0.1"], "robot-stack sim expert: error: argument --noise: must be in [0, 1], got -0.1"),
        (["sim", "demo", "--task", "t.yaml", "--noise", "nan"], "robot-stack sim demo: error: argument --noise: must be a finite number in [0, 1], got nan"),
        (["encoder", "pretrain", "t.yaml", "--frames", "f", "--steps", "-1"],
         "robot-stack encoder pretrain: error: argument --steps: must be in [0, 1000000], got -1"),
        (["encoder", "pretrain", "t.yaml", "--frames", "f", "--max-minutes", "0"],
         "robot-stack encoder pretrain: error: argument --max-minutes: must be in (0, 1440], got 0"),
        (["rldg", "specialists", "r.yaml", "--max-env-steps", "50"],
         "robot-stack rldg specialists: error: argument --max-env-steps: must be at least 100, got 50"),
    ],
)
def test_flags_of_other_commands_are_checked_against_their_schema_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)

    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == message
