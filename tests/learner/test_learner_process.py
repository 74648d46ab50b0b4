"""The learner process: trains on what an actor sends, publishes weights, checkpoints,
resumes, and survives a checkpoint dir with broken contents."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from learner.learner_loop import Learner
from learner.replay_segments import SegmentLog, segment_store
from robot_stack.config import config_to_yaml, load_task_config
from robot_stack.data.checkpoints import CheckpointMismatchError, CheckpointStore
from robot_stack.data.curves import window_success_rate
from robot_stack.data.spec import action_spec, observation_spec
from robot_stack.config import with_fields
from robot_stack.transport import ActorLink

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture
def config(pick_cube_state_yaml, tmp_path):
    transitions, weights = free_ports(2)
    config = load_task_config(pick_cube_state_yaml)
    config = with_fields(config, "session", transitions_port=transitions, weights_port=weights,
                         checkpoint_dir=tmp_path / "checkpoints", log_dir=tmp_path / "logs")
    config = with_fields(config, "session.transport", outbox_dir=tmp_path / "outbox", heartbeat_interval_s=0.1,
                         handshake_timeout_s=0.5, peer_timeout_s=2.0)
    config = with_fields(config, "agent", batch_size=16, hidden_dims=(32, 32))
    return with_fields(config, "training", min_online_transitions=20, publish_every_updates=5, publish_every_s=0.2,
                       checkpoint_every_s=3600, log_every_updates=5, torch_threads=1,
                       min_policy_only_episodes=3)


def episode_arrays(length: int, rng: np.random.Generator, success: bool = True) -> dict[str, np.ndarray]:
    """One synthetic episode in the transition format: observations chain into each other."""
    states = rng.normal(size=(length + 1, 16)).astype(np.float32)
    actions = rng.uniform(-1, 1, size=(length, 4)).astype(np.float32)
    actions[:, -1] = rng.choice([-1.0, 0.0, 1.0], size=length)
    terminated = np.zeros(length, bool)
    terminated[-1] = success
    truncated = np.zeros(length, bool)
    truncated[-1] = not success
    rewards = terminated.astype(np.float32)
    return {
        "observations/state": states[:-1], "next_observations/state": states[1:], "actions": actions,
        "rewards": rewards, "terminated": terminated, "truncated": truncated,
        "interventions": np.zeros(length, bool), "gripper_changed": np.zeros(length, bool),
    }


def run_in_thread(learner: Learner):
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(target=learner.run, args=(stop,), kwargs={"ready": ready}, daemon=True)
    thread.start()
    assert ready.wait(20), "the learner did not start"
    return stop, thread


def stream(config, episodes: int, seed: int = 0, actor_id: str = "a0") -> ActorLink:
    link = ActorLink(config.session, actor_id, config.task.name, observation_spec(config), action_spec(config)).start()
    assert link.wait_connected(10)
    rng = np.random.default_rng(seed)
    for index in range(episodes):
        arrays = episode_arrays(10, rng)
        link.send(arrays, {"episode_end": {"episode": index, "success": 1, "intervened": 0, "intervention_steps": 0,
                                           "length": 10, "return": 1.0, "weights_version": -1}})
    return link


def wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_learner_trains_publishes_and_checkpoints_what_an_actor_sends(config):
    learner = Learner(config)
    learner.resume_or_start()
    stop, thread = run_in_thread(learner)
    link = stream(config, episodes=5)
    try:
        wait_for(lambda: learner.counters.updates >= 50, 60, "50 updates (UTD 1 on 50 transitions)")
        wait_for(lambda: link.latest_weights() is not None, 10, "weights at the actor")
        assert learner.counters.env_steps == 50 and learner.counters.episodes == 5
        assert learner.policy_success_rate() == 1.0 and learner.success_rate() is None  # no deterministic episode yet
    finally:
        stop.set()
        thread.join(30)
        link.close()
    assert not thread.is_alive()
    checkpoints = CheckpointStore(config.session.checkpoint_dir).complete()
    assert checkpoints and checkpoints[-1].meta["counters"]["env_steps"] == 50
    assert (checkpoints[-1].path / "policy.safetensors").stat().st_size > 0
    assert (config.session.log_dir / "train.csv").read_text().startswith("step,")
    assert "status.json" in {p.name for p in config.session.log_dir.iterdir()}


def test_learner_resumes_counters_buffers_and_stream_positions(config):
    first = Learner(config)
    first.resume_or_start()
    stop, thread = run_in_thread(first)
    link = stream(config, episodes=3)
    wait_for(lambda: first.counters.env_steps == 30 and first.counters.episodes == 3, 30, "30 transitions and 3 episode ends")
    stop.set()
    thread.join(30)
    link.close()
    updates = first.counters.updates

    second = Learner(config)
    second.resume_or_start()
    assert second.resumed_from is not None
    assert second.counters.env_steps == 30 and second.counters.updates == updates and second.counters.episodes == 3
    assert len(second.replay.online) == 30
    assert set(second.link_state) == set(first.link_state) and list(second.link_state.values()) == [2]


def test_a_broken_newest_checkpoint_falls_back_to_the_previous_one(config):
    learner = Learner(config)
    learner.resume_or_start()
    learner.save_checkpoint(None)
    learner.counters.env_steps = 999
    newest = learner.save_checkpoint(None)
    (newest.path / "agent.pt").write_bytes(b"not a checkpoint")
    resumed = Learner(config)
    resumed.resume_or_start()
    assert resumed.resumed_from is not None and resumed.resumed_from.index == newest.index - 1
    assert resumed.counters.env_steps == 0


def test_junk_in_the_checkpoint_dir_does_not_stop_a_fresh_start(config):
    directory = config.session.checkpoint_dir
    directory.mkdir(parents=True)
    (directory / "notes.txt").write_text("hello")
    (directory / "ckpt-000003").mkdir()  # cut short before its completion marker
    learner = Learner(config)
    learner.resume_or_start()
    assert learner.resumed_from is None
    assert learner.save_checkpoint(None).index == 4


def test_the_stop_rule_can_read_the_deterministic_episodes_alone(config):
    config = with_fields(config, "actor", deterministic_every_episodes=3)
    config = with_fields(config, "training", stop_on="deterministic_episodes", success_window_episodes=4)
    learner = Learner(config)
    for index in range(12):  # every 3rd deterministic; the exploring ones all succeed, the deterministic ones half
        deterministic = index % 3 == 2
        learner._episode_end("a0", {"success": int(not deterministic or index % 2 == 0), "intervened": 0,
                                    "deterministic": int(deterministic), "length": 10})
    assert [e["deterministic"] for e in learner.counters.recent_deterministic] == [1, 1, 1, 1]
    assert learner.deterministic_success_rate() == learner.success_rate() == 0.5
    status_rates = window_success_rate(learner.counters.recent_episodes, 4, 3)
    assert status_rates == 1.0
    episodes = (config.session.log_dir / "episodes.csv").read_text().splitlines()
    assert episodes[0].split(",").count("deterministic") == 1 and len(episodes) == 13
    learner.metrics.close()


def test_stop_on_deterministic_episodes_needs_the_actor_to_run_them(config):
    with pytest.raises(ValueError, match="deterministic_every_episodes is 0"):
        config.model_validate({**config.model_dump(), "actor": {**config.actor.model_dump(), "deterministic_every_episodes": 0},
                               "training": {**config.training.model_dump(), "stop_on": "deterministic_episodes"}})


def test_every_transition_sent_is_stored_once_in_order_while_the_learner_trains(config):
    """Counts a long stream end to end: each transition carries its sequence number in its
    observation; the learner trains throughout (UTD 1), so batches arrive while it is busy and
    while it is idle. Sent = stored, in order, no duplicates, nothing left uncommitted."""
    config = with_fields(config, "training", updates_per_env_step=1.0, min_online_transitions=20)
    learner = Learner(config)
    learner.resume_or_start()
    stop, thread = run_in_thread(learner)
    link = ActorLink(config.session, "a0", config.task.name, observation_spec(config), action_spec(config)).start()
    rng = np.random.default_rng(7)
    sent = 0
    try:
        assert link.wait_connected(10)
        for index in range(120):
            length = int(rng.integers(1, 13))  # batch sizes vary, as episode chunks do
            arrays = episode_arrays(length, rng, success=bool(index % 2))
            ids = np.arange(sent, sent + length + 1, dtype=np.float32)
            arrays["observations/state"][:, 0], arrays["next_observations/state"][:, 0] = ids[:-1], ids[1:]
            last_seq = link.send(arrays)
            sent += length
            if index % 10 == 0:
                time.sleep(0.05)  # let the learner go idle now and then
        wait_for(lambda: link.status().received_seq >= last_seq, 30, "the learner's acknowledgement of every batch")
        deadline = time.monotonic() + 5.0  # acknowledged: stored within a loop pass or two
        while learner.counters.env_steps < sent and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(30)
        link.close()
    assert not thread.is_alive()
    online = learner.replay.online
    assert learner.counters.env_steps == sent, f"sent {sent} transitions, the learner stored {learner.counters.env_steps}"
    assert len(online) == online.total_added == sent
    stored = online.frames["state"][online.obs_frame[:sent] % online.frame_capacity][:, 0]
    np.testing.assert_array_equal(stored, np.arange(sent, dtype=np.float32))


def test_a_learner_refuses_another_tasks_checkpoint_with_both_tasks_named(config):
    first = Learner(config)
    first.resume_or_start()
    first.save_checkpoint(None)
    other_task = with_fields(config, "task", name="sim_other_task")

    with pytest.raises(CheckpointMismatchError, match="task 'sim_pick_cube_state', this learner's task is 'sim_other_task'"):
        Learner(other_task).resume_or_start()


def test_a_learner_of_another_spec_refuses_and_leaves_the_checkpoint_in_place(config):
    first = Learner(config)
    first.resume_or_start()
    saved = first.save_checkpoint(None)
    fewer_state_keys = with_fields(config, "task.observation", state=("tcp_pose", "gripper_width"))

    with pytest.raises(CheckpointMismatchError, match=r"observation.state 'float32\[16\]' in the checkpoint, 'float32\[7\]' here"):
        Learner(fewer_state_keys).resume_or_start()
    assert [info.path for info in CheckpointStore(config.session.checkpoint_dir).complete()] == [saved.path]


def test_the_learner_command_stops_with_one_line_naming_both_tasks(config, tmp_path):
    Learner(config).save_checkpoint(None)
    config_file = tmp_path / "other.yaml"
    config_file.write_text(config_to_yaml(with_fields(config, "task", name="sim_other_task")))

    result = subprocess.run([sys.executable, "-m", "robot_stack", "learner", str(config_file)], capture_output=True,
                            text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})

    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("robot-stack learner:")]
    assert len(errors) == 1 and "'sim_pick_cube_state'" in errors[0] and "'sim_other_task'" in errors[0], result.stderr


class RecordingLink:
    """The two calls a checkpoint makes on a LearnerLink; commit records which checkpoints were
    complete on disk at that moment."""

    def __init__(self, directory):
        self.directory, self.commits = directory, []

    def delivered_state(self):
        return {"a0": 7}

    def commit(self, state):
        on_disk = [info.meta["link_state"] for info in CheckpointStore(self.directory).complete()]
        self.commits.append((dict(state), on_disk))


def test_a_checkpoint_is_written_off_the_training_thread_and_commits_the_link_once_durable(config, monkeypatch):
    learner = Learner(config)
    learner.resume_or_start()
    rng = np.random.default_rng(0)
    learner.replay.add(episode_arrays(10, rng), stream="a0")
    writing, release = threading.Event(), threading.Event()
    append = SegmentLog.append

    def held_append(self, position):
        writing.set()
        assert release.wait(20)
        return append(self, position)

    monkeypatch.setattr(SegmentLog, "append", held_append)
    link = RecordingLink(config.session.checkpoint_dir)

    pending = learner.save_checkpoint(link, wait=False)
    assert writing.wait(20)
    learner.replay.add(episode_arrays(10, rng), stream="a0")  # training goes on during the write
    assert not pending.done() and link.commits == []
    release.set()
    info = pending.result(20)

    assert link.commits == [({"a0": 7}, [{"a0": 7}])]
    resumed = Learner(config)
    resumed.resume_or_start()
    assert resumed.resumed_from.path == info.path and len(resumed.replay.online) == 10


def test_a_checkpoint_whose_segment_is_cut_short_falls_back_to_the_previous_one(config):
    learner = Learner(config)
    learner.resume_or_start()
    rng = np.random.default_rng(0)
    learner.replay.add(episode_arrays(10, rng), stream="a0")
    previous = learner.save_checkpoint(None)
    learner.replay.add(episode_arrays(10, rng), stream="a0")
    newest = learner.save_checkpoint(None)
    manifest = json.loads((newest.path / "replay.json").read_text())["online"]
    segment = segment_store(config.session.checkpoint_dir, learner.checkpoints.run_id) / "online" / manifest["segments"][-1]["file"]
    segment.write_bytes(segment.read_bytes()[:100])

    resumed = Learner(config)
    resumed.resume_or_start()

    assert resumed.resumed_from.path == previous.path and len(resumed.replay.online) == 10


KILLED_MID_SEGMENT = """
import os, sys
import numpy as np, torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from learner.learner_loop import Learner
from learner.replay_segments import SegmentLog
from robot_stack.config import load_task_config
from test_learner_process import episode_arrays

learner = Learner(load_task_config({config!r}))
learner.resume_or_start()
rng = np.random.default_rng(0)
learner.replay.add(episode_arrays(10, rng), stream="a0")
learner.save_checkpoint(None)
learner.replay.add(episode_arrays(10, rng), stream="a0")

def killed_mid_write(self, *ranges):
    self.directory.mkdir(parents=True, exist_ok=True)
    (self.directory / "seg-00000000deadbeef.bin.tmp").write_bytes(b"half a segment")
    os._exit(9)

SegmentLog._write_segment = killed_mid_write
learner.save_checkpoint(None)
"""


def test_a_learner_killed_mid_checkpoint_resumes_the_previous_one_and_clears_its_leftovers(config, tmp_path):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(config_to_yaml(config))
    script = KILLED_MID_SEGMENT.format(tests=str(REPO_ROOT / "tests" / "learner"), config=str(config_file))
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert killed.returncode == 9, killed.stderr
    directory = config.session.checkpoint_dir
    assert [p.name for p in directory.glob("ckpt-*.tmp")] == ["ckpt-000001.tmp"]

    resumed = Learner(config)
    resumed.resume_or_start()
    assert resumed.resumed_from.index == 0 and len(resumed.replay.online) == 10
    resumed.save_checkpoint(None)

    assert list(directory.glob("ckpt-*.tmp")) == [] and list(directory.glob("segments-*/*/*.tmp")) == []


def test_a_learner_whose_frozen_trunk_differs_refuses_a_checkpoint_of_cached_features(pick_cube_yaml, tmp_path):
    from robot_stack.policy.encoders import ResNet10, orthogonal_projection, save_trunk_weights

    trunks = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        trunks.append(tmp_path / f"trunk_{seed}.safetensors")
        save_trunk_weights(ResNet10(), trunks[-1], orthogonal_projection(ResNet10.out_channels, 64))
    config = load_task_config(pick_cube_yaml)
    config = with_fields(config, "session", checkpoint_dir=tmp_path / "checkpoints", log_dir=tmp_path / "logs")
    config = with_fields(config, "training", online_buffer_capacity=100, demo_buffer_capacity=100, torch_threads=1)
    Learner(with_fields(config, "agent.encoder", pretrained_path=trunks[0])).save_checkpoint(None)

    with pytest.raises(CheckpointMismatchError, match="cached_trunk 'sha256:[0-9a-f]+' in the checkpoint, 'sha256:[0-9a-f]+' here"):
        Learner(with_fields(config, "agent.encoder", pretrained_path=trunks[1])).resume_or_start()
    same = Learner(with_fields(config, "agent.encoder", pretrained_path=trunks[0]))
    same.resume_or_start()
    assert same.resumed_from is not None


def test_a_checkpoint_from_before_segments_resumes_and_is_never_pruned(config):
    learner = Learner(config)
    learner.replay.add(episode_arrays(10, np.random.default_rng(0)), stream="a0")

    def full_write(directory):  # the layout learners wrote before incremental segments
        torch.save(learner.agent.state_dict(), directory / "agent.pt")
        learner.replay.save(directory / "replay")

    legacy = CheckpointStore(config.session.checkpoint_dir).save(
        full_write, {"counters": {"env_steps": 10}, "link_state": {"a0": 0}, "task": config.task.name})
    meta = json.loads((legacy.path / "complete.json").read_text())
    del meta["run_id"]
    (legacy.path / "complete.json").write_text(json.dumps(meta))

    resumed = Learner(config)
    resumed.resume_or_start()
    for _ in range(3):
        resumed.save_checkpoint(None)

    assert resumed.resumed_from.path == legacy.path and len(resumed.replay.online) == 10
    assert legacy.path.is_dir() and len(CheckpointStore(config.session.checkpoint_dir).complete()) == 3


# --------------------------------------------------------------------------- bad input from an actor


def test_a_batch_with_a_nan_is_rejected_and_the_learner_trains_on_what_follows(config, caplog):
    learner = Learner(config)
    learner.resume_or_start()
    stop, thread = run_in_thread(learner)
    link = ActorLink(config.session, "a0", config.task.name, observation_spec(config), action_spec(config)).start()
    rng = np.random.default_rng(3)
    try:
        assert link.wait_connected(10)
        poisoned = episode_arrays(10, rng)
        poisoned["observations/state"][4, 1] = np.nan
        poisoned["rewards"][2] = np.inf
        link.send(poisoned)
        for _ in range(3):
            last_seq = link.send(episode_arrays(10, rng))
        wait_for(lambda: learner.counters.env_steps == 30, 20, "the 30 transitions after the poisoned batch")
        wait_for(lambda: learner.counters.updates >= 30, 30, "training on them")
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join(30)
        link.close()
    assert len(learner.replay.online) == 30
    assert learner.link_state == {link.status().stream_id: last_seq}
    assert any("rejected batch 0" in r.getMessage() and "'observations/state' holds a NaN" in r.getMessage()
               for r in caplog.records)


def test_an_episode_end_with_a_bad_field_is_dropped_and_the_learner_keeps_counting(config, caplog):
    learner = Learner(config)
    learner.resume_or_start()
    stop, thread = run_in_thread(learner)
    link = ActorLink(config.session, "a0", config.task.name, observation_spec(config), action_spec(config)).start()
    rng = np.random.default_rng(0)
    try:
        assert link.wait_connected(10)
        link.send(episode_arrays(10, rng), {"episode_end": {"success": 1, "length": "ten", "return": 1.0}})
        link.send(episode_arrays(10, rng), {"episode_end": {"success": 1, "length": 10, "return": 1.0}})
        wait_for(lambda: learner.counters.episodes == 1 and learner.counters.env_steps == 20, 10, "the well-formed episode end")
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join(30)
        link.close()
    assert learner.counters.episodes == 1 and len(learner.replay.online) == 20
    assert any("dropped the episode end in batch 0 from actor 'a0'" in r.getMessage() and "'length'" in r.getMessage()
               for r in caplog.records)


def test_stats_with_thousands_of_new_names_leave_the_actors_csv_narrow(config):
    learner = Learner(config)
    learner.resume_or_start()
    stop, thread = run_in_thread(learner)
    link = ActorLink(config.session, "a0", config.task.name, observation_spec(config), action_spec(config)).start()
    other = None
    try:
        assert link.wait_connected(10)
        for start in range(0, 4000, 1000):
            link.send_stats({f"name_{index}": 1.0 for index in range(start, start + 1000)})
        for index in range(200):
            link.send_stats({f"one_more_{index}": 1.0, "loop_hz": 10.0})
        other = stream(config, episodes=3, actor_id="a1")
        wait_for(lambda: learner.counters.updates >= 30, 30, "training on the other actor's transitions")
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join(30)
        link.close()
        if other is not None:
            other.close()
    header = (config.session.log_dir / "actor.csv").read_text().splitlines()[0].split(",")
    assert "loop_hz" in header and len(header) <= 2 + 128


def test_episode_ends_riding_in_batches_are_counted_once_and_a_resume_renumbers_what_its_checkpoint_lacks(config):
    """The fast variant of tests/actor/test_actor_learner_restarts.py: a learner that dies after
    logging episodes its checkpoint does not hold, resumed, logs them again under the same numbers."""
    from learner.learner_loop import runs_per_stream
    from robot_stack.transport.learner_link import ReceivedBatch

    rng = np.random.default_rng(3)

    def batch(seq: int, end: bool) -> ReceivedBatch:
        info = {"episode_end": {"episode": seq // 2, "success": 1, "length": 2}} if end else {}
        return ReceivedBatch("a0", "s0", seq, episode_arrays(1, rng), info, 0.0, 0.0)

    def take(learner: Learner, batches: list) -> None:
        steps = learner.counters.env_steps
        for stream, arrays, count in runs_per_stream(batches):
            learner.replay.add(arrays, stream=stream)
            learner.counters.env_steps += count
        learner._take_episode_ends(batches, steps)

    first = Learner(config)
    first.resume_or_start()
    take(first, [batch(seq, end=seq % 2 == 1) for seq in range(4)])  # episodes 0 and 1
    first.link_state = {"s0": 3}
    first.save_checkpoint(None)
    take(first, [batch(seq, end=seq % 2 == 1) for seq in range(4, 6)])  # episode 2, then a crash
    first.metrics.close()

    resumed = Learner(config)
    resumed.resume_or_start()
    assert resumed.counters.episodes == 2 and resumed.link_state == {"s0": 3}
    take(resumed, [batch(seq, end=seq % 2 == 1) for seq in range(4, 8)])  # resent from seq 4, and more
    resumed.metrics.close()

    episodes = (config.session.log_dir / "episodes.csv").read_text().splitlines()
    header = episodes[0].split(",")
    assert [int(row.split(",")[header.index("episode")]) for row in episodes[1:]] == [0, 1, 2, 3]
    assert resumed.counters.episodes == 4 and resumed.counters.env_steps == 8
