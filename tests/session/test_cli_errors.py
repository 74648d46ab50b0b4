"""Commands that fail for a reason the user can fix say so in one line and exit non-zero,
with no traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robot_stack.cli import main
from robot_stack.config import SessionConfig, config_to_yaml, load_task_config
from robot_stack.data.demo_sets import DEMOS_FILE

REPO_ROOT = Path(__file__).resolve().parents[2]


def robot_stack_process(*arguments: str, cwd: Path) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen(
        [sys.executable, "-m", "robot_stack", *arguments], cwd=cwd, env=environment,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_keys_generate_into_a_folder_it_cannot_make_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")

    exit_code = main(["keys", "generate", str(blocker / "keys")])

    assert exit_code == 1
    assert capsys.readouterr().err == (
        f"robot-stack keys generate: cannot write key files into {blocker / 'keys'}: Not a directory\n"
    )


def test_keys_generate_over_existing_keys_still_asks_for_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["keys", "generate", str(tmp_path)])
    capsys.readouterr()

    exit_code = main(["keys", "generate", str(tmp_path)])

    assert exit_code == 1
    assert capsys.readouterr().err.endswith("already exist; pass --overwrite to replace them\n")


def test_evaluate_without_checkpoints_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pick_cube_state_yaml: Path
) -> None:
    empty = tmp_path / "checkpoints"
    empty.mkdir()

    exit_code = main(["evaluate", str(pick_cube_state_yaml), "--checkpoints", str(empty), "--out", str(tmp_path / "eval"),
                      "--no-progress"])

    assert exit_code == 1
    assert capsys.readouterr().err == f"evaluate: no complete checkpoint under {empty}: nothing to evaluate\n"


def test_evaluate_refuses_a_checkpoint_of_another_task_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pick_cube_state_yaml: Path
) -> None:
    checkpoint = tmp_path / "checkpoints" / "ckpt-000000"
    checkpoint.mkdir(parents=True)
    (checkpoint / "complete.json").write_text(json.dumps({"task": "sim_peg_insertion_state", "index": 0}))

    exit_code = main(["evaluate", str(pick_cube_state_yaml), "--checkpoints", str(checkpoint.parent), "--out",
                      str(tmp_path / "eval"), "--no-progress"])

    assert exit_code == 1
    assert capsys.readouterr().err == (f"evaluate: {checkpoint} holds a policy of task 'sim_peg_insertion_state', "
                                       "not of 'sim_pick_cube_state'\n")
    assert not (tmp_path / "eval").exists()


def test_record_demos_that_never_succeed_end_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], pick_cube_state_yaml: Path
) -> None:
    base = load_task_config(pick_cube_state_yaml)
    hopeless = base.model_copy(update={"task": base.task.model_copy(update={"max_episode_steps": 2})})
    task_file = tmp_path / "task.yaml"
    task_file.write_text(config_to_yaml(hopeless))

    exit_code = main(["record-demos", str(task_file), "--episodes", "1", "--out", str(tmp_path / "demos"), "--no-progress"])

    err = capsys.readouterr().err
    assert exit_code == 1
    assert len(err.splitlines()) == 1 and err.startswith("record-demos: only 0 of 3 demo episodes of 'sim_pick_cube_state' succeeded")


def test_an_actor_refused_by_the_learner_says_why_in_one_line(tmp_path: Path, pick_cube_state_yaml: Path) -> None:
    from robot_stack.transport import LearnerLink

    base = load_task_config(pick_cube_state_yaml)
    learner = None
    for _ in range(20):  # bind, retrying on a port another process took meanwhile
        ports = _two_free_ports()
        session = SessionConfig(
            learner_host="127.0.0.1", transitions_port=ports[0], weights_port=ports[1],
            transport={"handshake_timeout_s": 0.5, "outbox_dir": str(tmp_path / "outbox")},
        )
        try:
            learner = LearnerLink(session, task_id="another_task").start()
            break
        except RuntimeError:
            continue
    assert learner is not None
    task_file = tmp_path / "task.yaml"
    task_file.write_text(config_to_yaml(base.model_copy(update={"session": session})))
    try:
        actor = robot_stack_process("actor", str(task_file), "--actor-id", "robot7", cwd=tmp_path)
        _, err = actor.communicate(timeout=60)
    finally:
        learner.close()

    assert actor.returncode == 1
    assert "Traceback" not in err
    assert err.splitlines()[-1].startswith(
        "actor 'robot7': learner refused this actor: actor 'robot7' does not match this learner: "
        "task 'sim_pick_cube_state' but this learner trains task 'another_task'"
    )


def _two_free_ports() -> tuple[int, int]:
    import socket

    with socket.socket() as first, socket.socket() as second:
        first.bind(("127.0.0.1", 0))
        second.bind(("127.0.0.1", 0))
        return first.getsockname()[1], second.getsockname()[1]


def test_ctrl_c_during_record_demos_keeps_the_finished_demos_and_says_how_many(
    tmp_path: Path, pick_cube_state_yaml: Path
) -> None:
    out = tmp_path / "demos"
    recording = robot_stack_process(
        "record-demos", str(pick_cube_state_yaml), "--episodes", "1000", "--out", str(out), "--no-progress", cwd=tmp_path
    )
    deadline = time.monotonic() + 60
    while not (out / "episode_001.safetensors").exists() and recording.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)

    recording.send_signal(signal.SIGINT)
    _, err = recording.communicate(timeout=30)

    kept = json.loads((out / DEMOS_FILE).read_text())["episodes"]
    assert recording.returncode == 130
    assert "Traceback" not in err
    assert len(kept) >= 2 and all((out / episode["file"]).is_file() for episode in kept)
    assert err.splitlines()[-1] == (
        f"record-demos: interrupted after {len(kept)} of 1000 demos; kept the {len(kept)} finished demos in {out}"
    )


@pytest.mark.parametrize("command, missing", [("learner", "learner.key_secret"), ("actor", "robot1.key_secret")])
def test_a_missing_key_file_is_one_line_naming_it(tmp_path: Path, pick_cube_state_yaml: Path, command: str, missing: str) -> None:
    ports = _two_free_ports()
    session = SessionConfig(
        learner_host="127.0.0.1", transitions_port=ports[0], weights_port=ports[1],
        server_public_key_file="keys/learner.key", server_secret_key_file="keys/learner.key_secret",
        client_secret_key_file="keys/robot1.key_secret", authorized_client_keys_dir="keys/actors",
        checkpoint_dir=tmp_path / "checkpoints", log_dir=tmp_path / "logs",
        transport={"outbox_dir": str(tmp_path / "outbox")},
    )
    task_file = tmp_path / "task.yaml"
    task_file.write_text(config_to_yaml(load_task_config(pick_cube_state_yaml).model_copy(update={"session": session})))

    demos = ["--demos", str(tmp_path / "demos")] if command == "learner" else []
    process = robot_stack_process(command, str(task_file), *demos, cwd=tmp_path)
    _, err = process.communicate(timeout=60)

    assert process.returncode == 1
    assert "Traceback" not in err
    assert err.splitlines()[-1].endswith(f"keys/{missing}: key file not found (make one with `robot-stack keys generate DIR --name NAME`)")
