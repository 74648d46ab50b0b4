"""`robot-stack session --init-from RUN_DIR`: the new run's learner starts from the other run's
networks with its counters at 0, says so, and a rerun resumes the new run's own checkpoint; a
source of another spec is refused in one line before anything starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from robot_stack.config import config_to_yaml, load_task_config, with_fields
from robot_stack.data.checkpoints import CheckpointIdentity, CheckpointStore, described_spec
from robot_stack.data.spec import action_spec, observation_spec

REPO_ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENT = {**os.environ, "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}


def robot_stack(*arguments: str, cwd: Path, timeout_s: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "robot_stack", *arguments], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout_s, env=ENVIRONMENT)


def newest_networks(checkpoints: Path) -> tuple[dict, dict]:
    """(networks, meta) of the newest checkpoint: every module's tensors, not the optimisers or the RNG."""
    info = CheckpointStore(checkpoints).complete()[-1]
    state = torch.load(info.path / "agent.pt", map_location="cpu", weights_only=True)
    return {f"{module}.{name}": tensor for module, tensors in state.items() if module not in ("optimizers", "generator")
            for name, tensor in tensors.items()}, info.meta


def test_a_warm_started_session_begins_with_the_sources_networks_and_a_rerun_resumes_its_own(quick_task, tmp_path):
    source = robot_stack("session", str(quick_task), "--run-dir", "source", "--max-env-steps", "120", "--no-progress",
                         cwd=tmp_path)
    assert source.returncode == 0, source.stdout + source.stderr
    source_networks, source_meta = newest_networks(tmp_path / "source" / "checkpoints")
    assert source_meta["counters"]["updates"] > 0
    # Another task of the same spec; no update before the session stops, so its checkpoint holds what it began with.
    config = load_task_config(quick_task)
    config = with_fields(config, "task", name="sim_pick_cube_state_again")
    config = with_fields(config, "training", min_online_transitions=1000)
    config = with_fields(config, "actor", sim_max_lead_env_steps=2000)
    (tmp_path / "again.yaml").write_text(config_to_yaml(config))
    command = ("session", "again.yaml", "--run-dir", "again", "--max-env-steps", "20", "--no-progress", "--init-from", "source")

    warm = robot_stack(*command, cwd=tmp_path)

    assert warm.returncode == 0, warm.stdout + warm.stderr
    updates = source_meta["counters"]["updates"]
    announced = f"warm start: the learner starts from the networks of source/checkpoints/ckpt-{source_meta['index']:06d} "
    assert announced + f"(task 'sim_pick_cube_state', {updates} updates" in warm.stdout
    networks, meta = newest_networks(tmp_path / "again" / "checkpoints")
    assert meta["task"] == "sim_pick_cube_state_again" and meta["counters"]["updates"] == 0
    assert networks.keys() == source_networks.keys()
    assert all(torch.equal(networks[name], source_networks[name]) for name in networks)
    learner_log = (tmp_path / "again" / "logs" / "learner.log").read_text()
    assert (f"warm start from run source: networks, targets and temperature of source/checkpoints/ckpt-{source_meta['index']:06d} "
            f"(task 'sim_pick_cube_state', {updates} updates") in learner_log
    summary = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert summary["warm_started_from"]["updates"] == updates and summary["updates"] == 0

    rerun = robot_stack(*command, cwd=tmp_path)

    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "holds this run's own checkpoints: the learner resumes them; init_from (source) is not applied again" in rerun.stdout
    learner_log = (tmp_path / "again" / "logs" / "learner.log").read_text()
    assert "training.init_from (source) not applied: this run resumes its own checkpoint" in learner_log
    assert learner_log.count("warm start from run") == 1


def source_checkpoint(config, run_dir: Path) -> None:
    """A checkpoint as the learner names it (task and spec), without training anything."""
    identity = CheckpointIdentity(config.task.name, described_spec(observation_spec(config), action_spec(config)))
    CheckpointStore(run_dir / "checkpoints", identity=identity).save(lambda directory: None, {"counters": {"updates": 7}})


def test_a_source_of_another_spec_stops_the_session_in_one_line_before_anything_starts(quick_task, tmp_path):
    config = load_task_config(quick_task)
    source_checkpoint(with_fields(config, "task.observation", state=("tcp_pose", "gripper_width")), tmp_path / "source")

    result = robot_stack("session", str(quick_task), "--run-dir", "new", "--no-progress", "--init-from", "source", cwd=tmp_path)

    assert result.returncode == 2
    # (A session that finds the configured ports taken says so and moves on; that is not the error.)
    assert [line for line in result.stderr.splitlines() if not line.startswith("ports ")] == [
        "robot-stack session: init_from: source/checkpoints/ckpt-000000 (task 'sim_pick_cube_state') was written for "
        "another observation/action spec: observation.state 'float32[7]' in the checkpoint, 'float32[16]' here"
    ]
    assert not (tmp_path / "new").exists()


def test_the_learner_command_refuses_a_source_of_another_spec_in_one_line(quick_task, tmp_path):
    config = load_task_config(quick_task)
    source_checkpoint(with_fields(config, "task.observation", state=("tcp_pose", "gripper_width")), tmp_path / "source")
    config = with_fields(config, "session", run_dir=tmp_path / "new", checkpoint_dir=tmp_path / "new" / "checkpoints",
                         log_dir=tmp_path / "new" / "logs")
    (tmp_path / "new.yaml").write_text(config_to_yaml(config))

    result = robot_stack("learner", "new.yaml", "--init-from", "source", cwd=tmp_path)

    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("robot-stack learner:")]
    assert errors == [
        "robot-stack learner: init_from: source/checkpoints/ckpt-000000 (task 'sim_pick_cube_state') was written for "
        "another observation/action spec: observation.state 'float32[7]' in the checkpoint, 'float32[16]' here"
    ], result.stderr
