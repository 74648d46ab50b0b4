"""`robot-stack session` as a user runs it, shortened for CI: demos are recorded, the
learner and the actor run as separate processes over loopback, the session stops at its
step budget, evaluates, writes the curve, the summary and a checkpoint; Ctrl-C stops both
processes cleanly and a second run resumes from the checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robot_stack.data.lerobot_v3 import validate_dataset

from robot_stack.config import config_to_yaml, load_task_config
from robot_stack.data.checkpoints import CheckpointStore
from robot_stack.config import with_fields


@pytest.fixture
def short_task(pick_cube_state_yaml, tmp_path) -> Path:
    """The state-based pick-cube task with small networks and batches: seconds, not minutes."""
    config = load_task_config(pick_cube_state_yaml)
    config = with_fields(config, "agent", batch_size=32, hidden_dims=(64, 64))
    config = with_fields(config, "training", min_online_transitions=50, publish_every_updates=10, torch_threads=1,
                         demo_episodes=2, eval_episodes=2, checkpoint_every_s=2.0)
    config = with_fields(config, "actor", sim_max_lead_env_steps=100, stats_every_s=1.0)
    path = tmp_path / "short_pick_cube.yaml"
    path.write_text(config_to_yaml(config))
    return path


def session(task: Path, run_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "robot_stack", "session", str(task), "--run-dir", str(run_dir),
         "--demos", str(run_dir.parent / "demos"), "--no-progress", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_session_records_demos_learns_evaluates_and_writes_results(short_task, tmp_path):
    run_dir = tmp_path / "run"
    process = session(short_task, run_dir, "--max-env-steps", "300")
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stop_reason"].startswith("step budget reached")
    assert summary["env_steps"] >= 300 and summary["updates"] > 0
    assert summary["evaluation"]["episodes"] == 2 and summary["evaluation"]["sampled"]["episodes"] == 2
    assert (run_dir / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "demos" / "demos.json").exists()
    assert CheckpointStore(run_dir / "checkpoints").complete()
    assert "evaluation without interventions: " in output and "(sampled actions, as in training: " in output


def test_ctrl_c_stops_both_processes_with_a_checkpoint_and_the_next_run_resumes(short_task, tmp_path):
    run_dir = tmp_path / "run"
    process = session(short_task, run_dir, "--max-env-steps", "100000")
    status = run_dir / "logs" / "status.json"
    deadline = time.monotonic() + 180
    while True:
        assert process.poll() is None, process.communicate()[0]
        try:
            if json.loads(status.read_text())["updates"] > 20:
                break
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        assert time.monotonic() < deadline, "the session did not start training"
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["interrupted"] and summary["evaluation"] is None
    assert "resume with" in output
    steps_before = CheckpointStore(run_dir / "checkpoints").complete()[-1].meta["counters"]["env_steps"]
    assert steps_before > 0
    # The stop left nothing in the actor's outbox: the checkpoint holds all it sent.
    assert sorted(path.name for path in (run_dir / "outbox" / "actor0").iterdir()) == ["outbox.json", "outbox.lock"]

    resumed = session(short_task, run_dir, "--max-env-steps", str(steps_before + 100), "--eval-episodes", "0")
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert "resumed from" in (run_dir / "logs" / "learner.log").read_text()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env_steps"] >= steps_before + 100
    # Both runs' episodes are in the one session dataset, once each, as the learner counted them.
    dataset = run_dir / "dataset" / "actor0"
    assert validate_dataset(dataset) == []
    info = json.loads((dataset / "meta" / "info.json").read_text())
    learner_episodes = CheckpointStore(run_dir / "checkpoints").complete()[-1].meta["counters"]["episodes"]
    assert info["total_episodes"] == learner_episodes > 0
    assert info["total_frames"] == summary["env_steps"]


@pytest.fixture
def short_pixel_task(pick_cube_yaml, tmp_path) -> Path:
    """The shipped camera pick-cube task (two 128x128 cameras, proprioception, no cube position),
    shortened: two demos, a few pretraining steps, small batches."""
    config = load_task_config(pick_cube_yaml)
    encoder = config.agent.encoder
    assert encoder.pretrain is not None and encoder.projection_channels is not None  # the shipped setup
    config = with_fields(config, "agent.encoder", pretrained_path=tmp_path / "encoders" / "pick_cube.safetensors")
    config = with_fields(config, "agent.encoder.pretrain", steps=3, batch_size=4)
    config = with_fields(config, "agent", batch_size=32)
    config = with_fields(config, "training", min_online_transitions=50, publish_every_updates=10, torch_threads=1,
                         demo_episodes=2, eval_episodes=2, checkpoint_every_s=30.0, target_success_rate=None)
    config = with_fields(config, "actor", sim_max_lead_env_steps=100, stats_every_s=1.0)
    path = tmp_path / "short_pick_cube_pixels.yaml"
    path.write_text(config_to_yaml(config))
    return path


def test_pixel_session_pretrains_its_encoder_caches_features_and_learns_end_to_end(short_pixel_task, tmp_path):
    run_dir = tmp_path / "run"
    process = session(short_pixel_task, run_dir, "--max-env-steps", "300")
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    weights = tmp_path / "encoders" / "pick_cube.safetensors"
    assert weights.is_file() and json.loads(Path(f"{weights}.json").read_text())["steps"] == 3
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["encoder_pretrain_s"] > 0
    assert summary["env_steps"] >= 300 and summary["updates"] > 0 and summary["evaluation"]["episodes"] == 2
    learner_log = (run_dir / "logs" / "learner.log").read_text()
    assert "frozen image trunk: the replay keeps its features" in learner_log
    # The actor's episodes, camera videos included, are a valid LeRobot dataset.
    dataset = run_dir / "dataset" / "actor0"
    assert validate_dataset(dataset) == []
    assert sorted(path.name for path in (dataset / "videos").iterdir()) == ["observation.images.front", "observation.images.wrist"]
    # A second session finds the weights and does not pretrain again.
    again = session(short_pixel_task, tmp_path / "run2", "--max-env-steps", "60", "--eval-episodes", "0")
    output, _ = again.communicate(timeout=600)
    assert again.returncode == 0, output
    assert f"image encoder: {weights}" in output
    assert json.loads((tmp_path / "run2" / "summary.json").read_text())["encoder_pretrain_s"] is None
