"""Exactly once across restarts: with the learner (or, separately, the actor) killed and
restarted mid-run, every transition the actor sent is stored once and in order, every
episode it finished is counted once, episodes.csv numbers them without gaps or repeats, and
the actor's clean stop leaves its outbox empty."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from actor.actor_loop import ActorEnvironment, run_actor
from actor_fakes import FakePolicy, StampedEnv
from learner.learner_loop import Learner
from robot_stack.config import config_to_yaml, load_task_config
from robot_stack.data.checkpoints import CheckpointStore
from robot_stack.envs.factory import make_sim_env
from robot_stack.config import with_fields


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def episode_numbers(log_dir: Path) -> list[int]:
    path = log_dir / "episodes.csv"
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return [int(row["episode"]) for row in csv.DictReader(handle)]


def checkpointed_episodes(checkpoint_dir: Path) -> int:
    complete = CheckpointStore(checkpoint_dir).complete()
    return complete[-1].meta["counters"]["episodes"] if complete else -1


STAMPED_ACTOR = Path(__file__).with_name("stamped_actor.py")
EPISODE_LENGTH = 10


def restart_config(pick_cube_state_yaml: Path, tmp_path: Path):
    """Ten-step episodes at 50 Hz, a learner that does not train (not what is tested) and
    checkpoints every second; written to tmp_path/task.yaml for the processes."""
    transitions_port, weights_port = free_ports(2)
    config = load_task_config(pick_cube_state_yaml)
    config = with_fields(config, "task", max_episode_steps=EPISODE_LENGTH)
    config = with_fields(config, "teleop", kind="none")
    config = with_fields(config, "session", transitions_port=transitions_port, weights_port=weights_port,
                         checkpoint_dir=tmp_path / "checkpoints", log_dir=tmp_path / "logs")
    config = with_fields(config, "session.transport", outbox_dir=tmp_path / "outbox", heartbeat_interval_s=0.1,
                         handshake_timeout_s=0.5, peer_timeout_s=1.0)
    config = with_fields(config, "agent", batch_size=16, hidden_dims=(32, 32))
    # No training (it is not what is tested), small buffers, frequent checkpoints.
    config = with_fields(config, "training", min_online_transitions=10**6, checkpoint_every_s=1.0, torch_threads=1,
                         online_buffer_capacity=5000, demo_buffer_capacity=100)
    config = with_fields(config, "actor", rate_locked=True, stop_timeout_s=10.0, stats_every_s=1.0,
                         sim_max_lead_env_steps=2 * 10**6)
    config = with_fields(config, "task", control_rate_hz=50.0)
    (tmp_path / "task.yaml").write_text(config_to_yaml(config))
    return config


@pytest.mark.slow  # two learner starts (15-30 s); the fast variant is in tests/learner/test_learner_process.py
def test_a_learner_killed_and_restarted_under_a_running_actor_stores_and_counts_everything_once(
    pick_cube_state_yaml, tmp_path
) -> None:
    config = restart_config(pick_cube_state_yaml, tmp_path)
    config_file = tmp_path / "task.yaml"
    log_dir, checkpoint_dir = tmp_path / "logs", tmp_path / "checkpoints"

    def start_learner() -> subprocess.Popen:
        (log_dir / "status.json").unlink(missing_ok=True)
        log = open(tmp_path / "learner.log", "ab")
        return subprocess.Popen([sys.executable, "-m", "robot_stack", "learner", str(config_file)],
                                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def learner_env_steps() -> int:
        try:
            return json.loads((log_dir / "status.json").read_text())["env_steps"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            return -1

    stop, result = threading.Event(), {}

    def environment(config, rng) -> ActorEnvironment:
        return ActorEnvironment(StampedEnv(make_sim_env(config).env), intervention=None)

    def actor() -> None:
        try:
            result["summary"] = run_actor(config, "robot1", stop, policy_factory=lambda *spec: FakePolicy(),
                                          env_factory=environment)
        except BaseException as error:  # reported by the test
            result["error"] = error

    learner = start_learner()
    actor_thread = threading.Thread(target=actor, daemon=True)
    try:
        wait_for(lambda: learner_env_steps() >= 0 or learner.poll() is not None, 60, "the learner to start")
        assert learner.poll() is None, (tmp_path / "learner.log").read_text()
        actor_thread.start()
        # Killed with episodes logged that its newest checkpoint does not hold.
        wait_for(lambda: checkpointed_episodes(checkpoint_dir) >= 2
                 and len(episode_numbers(log_dir)) > checkpointed_episodes(checkpoint_dir) + 1,
                 60, "episodes logged after a checkpoint")
        learner.send_signal(signal.SIGKILL)
        learner.wait(10)
        killed_at = max(learner_env_steps(), 0)
        learner = start_learner()
        wait_for(lambda: learner_env_steps() >= killed_at + 50, 60, "the restarted learner to receive more")
        stop.set()
        actor_thread.join(30)
        learner.send_signal(signal.SIGINT)
        assert learner.wait(60) == 0
    finally:
        stop.set()
        if learner.poll() is None:
            learner.kill()
            learner.wait(10)

    assert "error" not in result and not actor_thread.is_alive()
    sent = result["summary"]
    resumed = Learner(config)
    resumed.resume_or_start()
    online = resumed.replay.online
    stored = online.frames["state"][online.obs_frame[: len(online)] % online.frame_capacity][:, 0]
    assert resumed.counters.env_steps == len(online) == sent.env_steps, "transitions lost or duplicated"
    assert np.all(np.diff(stored) > 0), "transitions out of order or duplicated"
    assert resumed.counters.episodes == sent.episodes, f"sent {sent.episodes} episodes, {resumed.counters.episodes} counted"
    assert episode_numbers(log_dir) == list(range(sent.episodes))
    outbox = json.loads((tmp_path / "outbox" / "robot1" / "outbox.json").read_text())
    assert outbox["committed_seq"] == sent.last_seq
    resumed.metrics.close()


def stored_stamps(learner: Learner) -> np.ndarray:
    online = learner.replay.online
    return online.frames["state"][online.obs_frame[: len(online)] % online.frame_capacity][:, 0]


def stream_stamps(first: int, transitions: int) -> np.ndarray:
    """The observation stamps of a StampedEnv's first transitions: each episode takes one
    stamp per step plus one for its final observation."""
    index = np.arange(transitions)
    return (first + index // EPISODE_LENGTH * (EPISODE_LENGTH + 1) + index % EPISODE_LENGTH).astype(np.float32)


def test_an_actor_killed_and_restarted_under_a_running_learner_loses_and_repeats_nothing(
    pick_cube_state_yaml, tmp_path
) -> None:
    config = restart_config(pick_cube_state_yaml, tmp_path)
    learner = Learner(config)
    learner.resume_or_start()
    stop_learner, ready = threading.Event(), threading.Event()
    learner_thread = threading.Thread(target=learner.run, args=(stop_learner,), kwargs={"ready": ready}, daemon=True)
    learner_thread.start()
    assert ready.wait(20)
    second_stamps = 10**6
    status = tmp_path / "actor_status.json"

    def start_actor(first_stamp: int) -> subprocess.Popen:
        log = open(tmp_path / "actor.log", "ab")
        return subprocess.Popen(
            [sys.executable, str(STAMPED_ACTOR), str(tmp_path / "task.yaml"), "--status", str(status),
             "--first-stamp", str(first_stamp)],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    actor = start_actor(0)
    try:
        wait_for(lambda: learner.counters.episodes >= 2 or actor.poll() is not None, 60, "two episodes")
        assert actor.poll() is None, (tmp_path / "actor.log").read_text()
        actor.send_signal(signal.SIGKILL)
        actor.wait(10)
        before_restart = learner.counters.episodes
        actor = start_actor(second_stamps)
        wait_for(lambda: learner.counters.episodes >= before_restart + 2 or actor.poll() is not None, 60,
                 "two episodes from the restarted actor")
        actor.send_signal(signal.SIGINT)
        assert actor.wait(30) == 0, (tmp_path / "actor.log").read_text()
    finally:
        if actor.poll() is None:
            actor.kill()
            actor.wait(10)
        stop_learner.set()
        learner_thread.join(30)
    assert not learner_thread.is_alive()

    restarted = json.loads(status.read_text())
    assert restarted["state"] == "stopped"
    stamps = stored_stamps(learner)
    first = stamps[stamps < second_stamps]
    second = stamps[stamps >= second_stamps]
    # The killed actor's stream up to what its outbox held, then the restarted actor's, whole.
    np.testing.assert_array_equal(first, stream_stamps(0, len(first)))
    np.testing.assert_array_equal(second, stream_stamps(second_stamps, restarted["env_steps"]))
    assert learner.counters.env_steps == len(stamps) == len(first) + restarted["env_steps"]
    finished = len(first) // EPISODE_LENGTH + restarted["episodes"]
    assert learner.counters.episodes == finished, f"{finished} episodes finished, {learner.counters.episodes} counted"
    assert episode_numbers(tmp_path / "logs") == list(range(finished))
    outbox = json.loads((tmp_path / "outbox" / "robot1" / "outbox.json").read_text())
    assert outbox["committed_seq"] == restarted["last_seq"], "the clean stop left batches in the outbox"
