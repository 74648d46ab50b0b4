"""Every `robot-stack` command, found by walking the parser, prints its help and runs once briefly:
for real where that takes seconds, otherwise as far as its config check (a missing file ends in
one line and exit code 1). A new command fails `test_every_command_has_a_brief_run` until it
is given one here."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

from robot_stack.cli import build_parser, main

REPO_ROOT = Path(__file__).resolve().parents[1]
STATE_TASK = REPO_ROOT / "hardware_configs" / "tasks" / "sim_pick_cube_state.yaml"
CAMERA_TASK = REPO_ROOT / "hardware_configs" / "tasks" / "sim_pick_cube_classifier.yaml"


def commands(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The words of every runnable command under ``parser``."""
    groups = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not groups:
        yield words
    for group in groups:
        for name, subparser in group.choices.items():
            yield from commands(subparser, (*words, name))


COMMANDS = sorted(commands(build_parser()))


@dataclass
class Run:
    argv: list[str]
    exit_code: int
    says: str  # in stdout or stderr


def missing_config(tmp_path: Path, *words: str, after: tuple[str, ...] = ()) -> Run:
    missing = tmp_path / "missing.yaml"
    return Run([*words, str(missing), *after], 1, f"{missing}: file not found")


def evaluate_a_fresh_checkpoint(tmp_path: Path) -> Run:
    import torch

    from learner.learner_loop import Learner
    from robot_stack.config import config_to_yaml, load_task_config
    from robot_stack.config import with_fields

    torch.set_num_threads(1)
    config = load_task_config(STATE_TASK)
    config = with_fields(config, "agent", batch_size=32, hidden_dims=(64, 64))
    config = with_fields(config, "training", torch_threads=1, demo_episodes=0)
    config = with_fields(config, "session", run_dir=tmp_path / "run", checkpoint_dir=tmp_path / "checkpoints",
                         log_dir=tmp_path / "logs")
    learner = Learner(config)
    learner.resume_or_start()
    learner.save_checkpoint(None)
    task_file = tmp_path / "task.yaml"
    task_file.write_text(config_to_yaml(config))
    return Run(["evaluate", str(task_file), "--episodes", "1", "--out", str(tmp_path / "eval"), "--no-progress"], 0,
               "with the policy's mean action (sampled actions")


def export_one_demo(tmp_path: Path) -> Run:
    assert main(["record-demos", str(STATE_TASK), "--episodes", "1", "--out", str(tmp_path / "demos"), "--no-progress"]) == 0
    return Run(["rldg", "export-demos", str(STATE_TASK), str(tmp_path / "demos"), "--instruction", "pick up the cube",
                "--out", str(tmp_path / "dataset"), "--image-storage", "image"], 0, "wrote 1 episodes")


BRIEF_RUNS: dict[tuple[str, ...], Callable[[Path], Run]] = {
    ("config", "check"): lambda tmp: Run(["config", "check", str(STATE_TASK)], 0, "valid task config"),
    ("sim", "expert"): lambda tmp: Run(["sim", "expert", "--task", str(STATE_TASK), "--episodes", "1", "--no-progress"], 0,
                                       "success rate"),
    ("sim", "demo"): lambda tmp: Run(["sim", "demo", "--task", str(STATE_TASK), "--episodes", "1", "--no-progress",
                                      "--out", str(tmp)], 0, "camera frames"),
    ("keys", "generate"): lambda tmp: Run(["keys", "generate", str(tmp), "--name", "robot1"], 0, "robot1.key_secret"),
    ("record-demos",): lambda tmp: Run(["record-demos", str(STATE_TASK), "--episodes", "1", "--out", str(tmp / "demos"),
                                        "--no-progress"], 0, "wrote 1 demos"),
    ("evaluate",): evaluate_a_fresh_checkpoint,
    ("hw", "check"): lambda tmp: Run(["hw", "check", str(STATE_TASK), "--out", str(tmp), "--seconds", "0.2"], 0,
                                     "device(s) ok"),
    ("reward", "record"): lambda tmp: Run(["reward", "record", str(CAMERA_TASK), "--episodes", "1", "--out", str(tmp / "frames"),
                                           "--no-progress"], 0, "labelled frames"),
    ("rldg", "export-demos"): export_one_demo,
    ("rldg", "validate"): lambda tmp: Run(["rldg", "validate", str(tmp)], 1, "no meta/info.json"),
    ("encoder", "convert"): lambda tmp: Run(["encoder", "convert", str(STATE_TASK), "--from", "serl",
                                             "--out", str(tmp / "trunk.safetensors")], 1, f"encoder convert: {STATE_TASK}"),
    # Training runs for minutes (tests/session, tests/rldg, tests/reward, tests/learner run them):
    # here they go as far as reading their config.
    ("session",): lambda tmp: missing_config(tmp, "session", after=("--no-progress",)),
    ("learner",): lambda tmp: missing_config(tmp, "learner"),
    ("actor",): lambda tmp: missing_config(tmp, "actor"),
    ("reward", "train"): lambda tmp: missing_config(tmp, "reward", "train", after=("--frames", str(tmp))),
    ("reward", "eval"): lambda tmp: missing_config(tmp, "reward", "eval", after=("--frames", str(tmp), "--out", str(tmp))),
    ("encoder", "pretrain"): lambda tmp: missing_config(tmp, "encoder", "pretrain", after=("--frames", str(tmp))),
    ("rldg", "specialists"): lambda tmp: missing_config(tmp, "rldg", "specialists"),
    ("rldg", "collect"): lambda tmp: missing_config(tmp, "rldg", "collect"),
    ("rldg", "finetune"): lambda tmp: missing_config(tmp, "rldg", "finetune", after=("--data", str(tmp))),
    ("rldg", "eval"): lambda tmp: missing_config(tmp, "rldg", "eval"),
    # No actor serves a page at this address: the command says so.
    ("operator", "send"): lambda tmp: Run(["operator", "send", "pause", "--url", "http://127.0.0.1:9/"], 1,
                                          "the actor's live page did not answer"),
    ("operator", "keys"): lambda tmp: Run(["operator", "keys", "--url", "http://127.0.0.1:9/"], 2, "not a terminal"),
}


@pytest.fixture
def signal_handlers_restored() -> Iterator[None]:
    # learner and actor install their own SIGINT/SIGTERM handlers (a clean stop).
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_the_parser_walk_finds_every_command_group() -> None:
    assert {words[0] for words in COMMANDS} == {
        "config", "sim", "keys", "session", "learner", "actor", "record-demos", "evaluate", "reward", "encoder", "hw", "rldg",
        "operator",
    }
    assert ("rldg", "export-demos") in COMMANDS and ("record-demos",) in COMMANDS


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_prints_its_help(command: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])

    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: robot-stack {' '.join(command)}")


def test_every_command_has_a_brief_run() -> None:
    assert sorted(set(COMMANDS) - set(BRIEF_RUNS)) == []
    assert sorted(set(BRIEF_RUNS) - set(COMMANDS)) == []


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_runs_briefly(
    command: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str], signal_handlers_restored: None
) -> None:
    if command not in BRIEF_RUNS:
        pytest.fail(f"no brief run of `robot-stack {' '.join(command)}` in BRIEF_RUNS")
    run = BRIEF_RUNS[command](tmp_path)
    capsys.readouterr()

    exit_code = main(run.argv)

    captured = capsys.readouterr()
    assert exit_code == run.exit_code, captured.err
    assert run.says in captured.out + captured.err
    assert "Traceback" not in captured.err


def test_python_dash_m_robot_stack_is_the_command(tmp_path: Path) -> None:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}

    done = subprocess.run([sys.executable, "-m", "robot_stack", "keys", "generate", str(tmp_path)], env=environment,
                          capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert (tmp_path / "learner.key").exists() and (tmp_path / "learner.key_secret").exists()
    assert done.stdout.count("wrote ") == 2
