"""The actor process against a real LearnerLink on loopback (and without one)."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import safetensors.torch
import torch

from actor.actor_loop import run_actor
from robot_stack.data.transitions import concatenate_batches
from actor_fakes import FakePolicy, SimHolder
from robot_stack.config import SessionConfig, load_task_config
from robot_stack.config.schema import ActorConfig
from robot_stack.data.spec import ArraySpec
from robot_stack.transport import LearnerLink, LinkRefused, Stats, TrainingProgress

STATE_SPEC = {"state": ArraySpec("<f4", (16,))}
ACTION_SPEC = {"actions": ArraySpec("<f4", (4,))}


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture
def make_config(pick_cube_state_yaml, tmp_path):
    base = load_task_config(pick_cube_state_yaml)
    transitions_port, weights_port = free_ports(2)

    def make(teleop: str = "none", **actor):
        session = SessionConfig(
            learner_host="127.0.0.1", transitions_port=transitions_port, weights_port=weights_port,
            transport={
                "heartbeat_interval_s": 0.1, "peer_timeout_s": 1.0, "handshake_timeout_s": 0.5,
                "outbox_dir": str(tmp_path / "outbox"),
            },
        )
        return base.model_copy(
            update={
                "session": session,
                "actor": ActorConfig(**{"stats_every_s": 0.2, "stop_timeout_s": 3.0, **actor}),
                "teleop": base.teleop.model_copy(update={"kind": teleop}),
            }
        )

    return make


class ActorThread:
    def __init__(self, config, **kwargs) -> None:
        self.stop = threading.Event()
        self.summary = None
        self.error = None
        self.thread = threading.Thread(target=self._run, args=(config,), kwargs=kwargs, daemon=True)
        self.thread.start()

    def _run(self, config, **kwargs) -> None:
        try:
            self.summary = run_actor(config, "robot1", self.stop, **kwargs)
        except BaseException as error:  # reported by the test
            self.error = error

    def stop_and_join(self, timeout_s: float) -> float:
        started = time.monotonic()
        self.stop.set()
        self.thread.join(timeout_s)
        return time.monotonic() - started


def wait_until(condition: Callable[[], object], timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    return condition()


def read_status(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def test_the_actor_streams_episodes_takes_new_weights_and_stops_in_time(make_config, tmp_path) -> None:
    config = make_config()
    learner = LearnerLink(config.session, task_id=config.task.name, observation_spec=STATE_SPEC, action_spec=ACTION_SPEC).start()
    holder = SimHolder()
    policy = holder.expert_policy()
    status_path = tmp_path / "status.json"
    actor = ActorThread(
        config, policy_factory=lambda *spec: policy, env_factory=holder.actor_environment, status_path=status_path
    )
    received, reports = [], []

    def collect(until: Callable[[], bool], timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not until() and time.monotonic() < deadline and actor.error is None:
            received.extend(learner.receive(timeout_s=0.05))
            reports.extend(learner.reports())
            if received and received[-1].info.get("final"):
                learner.commit(learner.delivered_state())  # as a learner's checkpoint does

    def episode_ends() -> list[dict]:
        return [b.info["episode_end"] for b in received if "episode_end" in b.info]

    stopping = threading.Thread(target=lambda: None)
    try:
        collect(lambda: len(received) > 0)
        weights = {"w": torch.arange(3, dtype=torch.float32)}
        learner.publish_weights(1, safetensors.torch.save(weights))
        collect(lambda: len(episode_ends()) >= 2 and policy.loaded)
        started = time.monotonic()
        stopping = threading.Thread(target=actor.stop_and_join, args=(config.actor.stop_timeout_s + 2.0,))
        stopping.start()
        collect(lambda: not actor.thread.is_alive(), timeout_s=config.actor.stop_timeout_s + 2.0)
        took = time.monotonic() - started
        collect(lambda: False, timeout_s=0.5)
    finally:
        actor.stop.set()
        stopping.join(5.0)
        actor.stop.set()
        learner.close()

    assert actor.error is None and not actor.thread.is_alive()
    assert took < config.actor.stop_timeout_s
    summary = actor.summary
    # In order, nothing missing, everything the actor sent was received before it exited.
    assert [b.seq for b in received] == list(range(summary.last_seq + 1))
    assert summary.delivered
    batch = concatenate_batches([dict(b.arrays) for b in received])
    ended = batch["terminated"] | batch["truncated"]
    steps = len(ended)
    assert steps == summary.env_steps and ended[-1]
    continuing = np.flatnonzero(~ended[:-1])
    np.testing.assert_array_equal(batch["observations/state"][continuing + 1], batch["next_observations/state"][continuing])
    # Episodes: the expert-replaying policy succeeds, and each end is reported with its length.
    ends = episode_ends()
    assert [e["success"] for e in ends[:2]] == [1, 1]
    lengths = np.diff(np.concatenate([[-1], np.flatnonzero(batch["terminated"])]))
    assert [e["length"] for e in ends] == lengths.tolist()
    assert [e["episode"] for e in ends] == list(range(summary.episodes))
    assert {"return", "intervention_steps", "intervened", "env_steps_total", "weights_version"} <= set(ends[0])
    # The episode's end rides in the batch holding its last transition; the last batch says it is the last.
    assert all(b.arrays["terminated"][-1] or b.arrays["truncated"][-1] for b in received if "episode_end" in b.info)
    assert [b.info.get("final", False) for b in received].count(True) == 1 and received[-1].info["final"]
    # Weights taken between steps, as sent.
    assert torch.equal(policy.loaded[0]["w"], weights["w"]) and summary.weights_version == 1
    stats = [r.message.values for r in reports if isinstance(r.message, Stats)]
    assert stats and {"jitter_p50_ms", "jitter_p99_ms", "loop_hz", "inference_p50_ms", "inference_p99_ms", "env_steps", "episodes"} <= set(stats[-1])
    status = read_status(status_path)
    assert status["state"] == "stopped" and status["env_steps"] == summary.env_steps
    assert status["recent_success_rate"] == 1.0 and status["weights_version"] == 1


def test_without_a_learner_the_actor_keeps_stepping_and_stops_on_request(make_config, tmp_path) -> None:
    # No pacing: a free-running simulated actor otherwise waits 400 steps ahead of a learner that
    # never comes, and a fast machine gets there before the second status read below.
    config = make_config(teleop="scripted", stop_timeout_s=0.5, sim_max_lead_env_steps=10**9)
    status_path = tmp_path / "status.json"
    actor = ActorThread(config, policy_factory=lambda *spec: FakePolicy(), status_path=status_path)

    assert wait_until(lambda: read_status(status_path).get("env_steps", 0) >= 5)
    first = read_status(status_path)["env_steps"]
    later = wait_until(lambda: read_status(status_path).get("env_steps", 0) >= first + 20)
    took = actor.stop_and_join(5.0)

    assert actor.error is None and not actor.thread.is_alive()
    assert took < 0.5 + 1.5
    summary = actor.summary
    assert later and summary.env_steps >= 25 and not summary.delivered
    # Every step queued in the outbox, one a message; a stop that found no episode in progress
    # (it came right after a reset) adds an empty last batch.
    assert summary.last_seq == summary.env_steps - 1 + (summary.env_steps % config.task.max_episode_steps == 0)
    assert read_status(status_path)["connected"] is False


def test_a_simulated_actor_waits_when_it_leads_training_by_the_limit(make_config, tmp_path) -> None:
    config = make_config(stop_timeout_s=0.5, sim_max_lead_env_steps=30)
    status_path = tmp_path / "status.json"
    actor = ActorThread(config, policy_factory=lambda *spec: FakePolicy(), status_path=status_path)
    assert wait_until(lambda: read_status(status_path).get("state") == "running")
    time.sleep(4.0)  # unpaced, the actor makes well over 100 steps in this time
    actor.stop_and_join(5.0)
    assert actor.error is None
    # It waits at the first episode boundary past a 30-step lead over the learner's zero updates
    # (the learner gets whole episodes, so it never waits inside one).
    assert actor.summary.env_steps == config.task.max_episode_steps


def test_a_simulated_actor_paces_itself_by_all_the_steps_the_learner_received(make_config, tmp_path) -> None:
    config = make_config(stop_timeout_s=0.5, sim_max_lead_env_steps=150)
    utd = config.training.updates_per_env_step
    learner = LearnerLink(config.session, task_id=config.task.name, observation_spec=STATE_SPEC, action_spec=ACTION_SPEC).start()

    def publish(env_steps: int, updates: int) -> None:
        progress = TrainingProgress(env_steps=env_steps, updates=updates)
        learner.publish_weights(updates, safetensors.torch.save({"w": torch.zeros(3)}, metadata=progress.metadata()))

    status_path = tmp_path / "status.json"
    actor = None
    try:
        # A restarted learner at version (= updates) 4000 / utd: other actors sent 5000 env steps, so
        # training is behind by 1000, more than the limit, however few steps this actor has made.
        behind = int(4000 * utd)
        publish(5000, behind)
        actor = ActorThread(config, policy_factory=lambda *spec: FakePolicy(), status_path=status_path)
        assert wait_until(lambda: read_status(status_path).get("weights_version") == behind)
        time.sleep(2.0)  # unpaced, the actor makes well over 200 steps in this time
        held_back = read_status(status_path)["env_steps"]
        publish(5000, int(5000 * utd))  # training caught up
        went_on = wait_until(lambda: read_status(status_path).get("env_steps", 0) >= held_back + 2 * config.task.max_episode_steps)
    finally:
        if actor is not None:
            actor.stop_and_join(5.0)
        learner.close()

    assert actor.error is None
    # At most the episode it was in when the weights came; then it waited.
    assert held_back <= config.task.max_episode_steps
    assert went_on


def test_a_nan_action_is_held_and_counted(make_config) -> None:
    config = make_config(stop_timeout_s=0.1)
    calls = iter(range(10_000))
    policy = FakePolicy(action_for=lambda obs: [math.nan] * 4 if next(calls) % 2 else [0.0] * 4)

    summary = run_actor(config, "robot1", threading.Event(), policy_factory=lambda *spec: policy, max_env_steps=12)

    assert summary.env_steps == 12 and summary.nonfinite_actions == 6


def test_a_rate_locked_actor_runs_at_the_control_rate(make_config) -> None:
    config = make_config(rate_locked=True, stats_every_s=60.0, stop_timeout_s=0.1)
    config = config.model_copy(update={"task": config.task.model_copy(update={"control_rate_hz": 20.0})})

    summary = run_actor(config, "robot1", threading.Event(), policy_factory=lambda *spec: FakePolicy(), max_env_steps=20)

    # Bounds for a shared 2-core machine: a step takes ~7 ms of the 50 ms period.
    timing = summary.timing
    assert 18.0 <= timing.loop_hz <= 20.5
    assert abs(timing.jitter_p50_ms) < 3.0
    assert math.isfinite(summary.inference_p50_ms)


def test_a_learner_that_refuses_the_actors_spec_stops_it_with_the_reason(make_config, tmp_path) -> None:
    config = make_config()
    wrong = {"state": ArraySpec("<f4", (13,))}
    learner = LearnerLink(config.session, task_id=config.task.name, observation_spec=wrong, action_spec=ACTION_SPEC).start()
    status_path = tmp_path / "status.json"
    try:
        with pytest.raises(LinkRefused, match="state"):
            run_actor(config, "robot1", threading.Event(), policy_factory=lambda *spec: FakePolicy(),
                      max_env_steps=2000, status_path=status_path)
    finally:
        learner.close()
    assert read_status(status_path)["state"] == "failed"


def test_the_real_policy_runs_in_the_actor_and_takes_the_learners_weights(make_config, tmp_path) -> None:
    policy_module = pytest.importorskip("robot_stack.policy")
    config = make_config(stop_timeout_s=1.0)
    published = policy_module.Policy.build(config.agent, STATE_SPEC, 4, True)
    learner = LearnerLink(config.session, task_id=config.task.name, observation_spec=STATE_SPEC, action_spec=ACTION_SPEC).start()
    learner.publish_weights(4, safetensors.torch.save(published.weights()))
    status_path = tmp_path / "status.json"
    try:
        actor = ActorThread(config, status_path=status_path)
        taken = wait_until(lambda: read_status(status_path).get("weights_version") == 4 or actor.error, timeout_s=15.0)
        actor.stop_and_join(5.0)
    finally:
        learner.close()

    assert actor.error is None and taken is True
    assert actor.summary.env_steps > 0 and math.isfinite(actor.summary.inference_p50_ms)


def test_every_nth_episode_is_deterministic_and_nobody_intervenes_in_it(make_config) -> None:
    config = make_config(teleop="scripted", deterministic_every_episodes=2, stop_timeout_s=0.1)
    config = config.model_copy(update={"teleop": config.teleop.model_copy(update={
        "intervention": config.teleop.intervention.model_copy(update={"initial_rate": 1.0, "final_rate": 1.0})})})
    flags: list[bool] = []

    class RecordingPolicy(FakePolicy):
        def act(self, observation, deterministic, rng):
            flags.append(deterministic)
            return super().act(observation, deterministic, rng)

    summary = run_actor(config, "robot1", threading.Event(), policy_factory=lambda *spec: RecordingPolicy(), max_env_steps=400)

    episodes = list(summary.recent_episodes)  # (success, length, intervention steps), in order
    assert len(episodes) >= 3
    start = 0
    for index, (_, length, interventions) in enumerate(episodes):
        deterministic = index % 2 == 1  # the 2nd, 4th... episode
        assert set(flags[start : start + length]) == {deterministic}, f"episode {index}"
        assert (interventions == 0) if deterministic else (interventions > 0), f"episode {index}"
        start += length


def test_an_actor_stopped_cleanly_leaves_its_outbox_empty_and_the_learner_holds_everything_it_sent(
    make_config, tmp_path
) -> None:
    from learner.learner_loop import Learner
    from robot_stack.config import with_fields

    config = make_config(stop_timeout_s=10.0)
    config = with_fields(config, "session", checkpoint_dir=tmp_path / "checkpoints", log_dir=tmp_path / "logs")
    config = with_fields(config, "agent", batch_size=16, hidden_dims=(32, 32))
    # No periodic checkpoint during the test: only the actor's stop can make the learner commit.
    config = with_fields(config, "training", checkpoint_every_s=3600, min_online_transitions=10**6, torch_threads=1)
    learner = Learner(config)
    learner.resume_or_start()
    stop_learner, ready = threading.Event(), threading.Event()
    learner_thread = threading.Thread(target=learner.run, args=(stop_learner,), kwargs={"ready": ready}, daemon=True)
    learner_thread.start()
    assert ready.wait(20)
    actor = ActorThread(config, policy_factory=lambda *spec: FakePolicy())
    try:
        assert wait_until(lambda: learner.counters.episodes >= 1 or actor.error, timeout_s=30.0)
        actor.stop_and_join(config.actor.stop_timeout_s + 5.0)
        outbox = config.session.transport.outbox_dir / "robot1"
        outbox_state = json.loads((outbox / "outbox.json").read_text())
        segments = sorted(path.name for path in outbox.glob("*.seg"))
    finally:
        actor.stop.set()
        stop_learner.set()
        learner_thread.join(30)

    assert actor.error is None and not actor.thread.is_alive()
    summary = actor.summary
    assert outbox_state["committed_seq"] == summary.last_seq and segments == []
    assert learner.counters.env_steps == summary.env_steps and learner.counters.episodes == summary.episodes
