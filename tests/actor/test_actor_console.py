"""The operator's commands reach the running actor and do what they say: pause holds the robot,
labels end the episode with the operator's answer, a discarded episode never reaches the
learner, reset keeps the episode's data, stop stops; each is logged with its episode."""

from __future__ import annotations

import csv
import json
import threading
import time

import numpy as np
import pytest

from actor.console import ButtonCommands, ConsoleError, OperatorConsole
from actor_fakes import FakePolicy
from robot_stack.config import with_fields
from robot_stack.data.transitions import concatenate_batches
from robot_stack.hardware.interfaces import TeleopCommand, TeleopDisconnected
from robot_stack.transport import LearnerLink
from test_actor_process import ACTION_SPEC, STATE_SPEC, ActorThread, make_config, read_status, wait_until  # noqa: F401


def slow_policy() -> FakePolicy:
    # ~200 steps/s: a 100-step episode lasts long enough to land a command inside it.
    return FakePolicy(action_for=lambda observation: (time.sleep(0.005), np.zeros(4, np.float32))[1])


class Collector:
    """The learner's side of the link: every batch the actor sent, in order."""

    def __init__(self, config):
        self.link = LearnerLink(config.session, task_id=config.task.name, observation_spec=STATE_SPEC,
                                action_spec=ACTION_SPEC).start()
        self.received = []

    def pump(self, seconds: float = 0.1) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.received.extend(self.link.receive(timeout_s=0.02))
            if self.received and self.received[-1].info.get("final"):
                self.link.commit(self.link.delivered_state())

    def episode_ends(self) -> list[dict]:
        return [b.info["episode_end"] for b in self.received if "episode_end" in b.info]

    def batch(self) -> dict[str, np.ndarray]:
        return concatenate_batches([dict(b.arrays) for b in self.received if len(b.arrays["rewards"])])


@pytest.fixture
def running(make_config, tmp_path):
    """An actor thread (fake policy, simulated arm, no interventions) with its console, and the
    learner's end of the link."""
    started = []

    def start(dataset_dir=None, **actor):
        config = make_config(stop_timeout_s=3.0, sim_max_lead_env_steps=10**9, **actor)
        config = with_fields(config, "session", log_dir=tmp_path / "logs")
        config = with_fields(config, "actor.console", web=False)
        console = OperatorConsole(tmp_path / "logs" / "operator.csv", config.task.name, "robot1")
        collector = Collector(config)
        actor_thread = ActorThread(config, policy_factory=lambda *spec: slow_policy(), console=console,
                                   status_path=tmp_path / "status.json", dataset_dir=dataset_dir)
        started.append((actor_thread, collector))
        return config, console, collector, actor_thread

    yield start
    for actor_thread, collector in started:
        actor_thread.stop_and_join(10.0)
        collector.link.close()


def command_when(console: OperatorConsole, collector: Collector, command: str, at_step: int = 10,
                 wanted: str = "", timeout_s: float = 20.0) -> dict:
    """Send ``command`` once the episode in progress has ``at_step`` steps; again if it landed
    on an episode boundary. Returns the logged event whose outcome contains ``wanted``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        collector.pump(0.01)
        if console.snapshot()["live"].get("episode_step", 0) < at_step:
            continue
        seen = len(console.snapshot()["events"])
        assert console.request(command, "api")["queued"]
        while len(console.snapshot()["events"]) == seen and time.monotonic() < deadline:
            collector.pump(0.01)
        event = console.snapshot()["events"][-1]
        if wanted in event["outcome"]:
            return event
    raise AssertionError(f"{command} never applied with outcome containing {wanted!r}: {console.snapshot()['events']}")


def test_pause_holds_the_actor_and_resume_goes_on(running, tmp_path) -> None:
    config, console, collector, actor = running()
    event = command_when(console, collector, "pause", wanted="paused")
    assert wait_until(lambda: read_status(tmp_path / "status.json").get("paused") is True)
    steps = console.snapshot()["live"]["env_steps"]
    collector.pump(0.6)
    assert console.snapshot()["live"]["env_steps"] == steps  # nothing stepped while paused
    assert console.snapshot()["live"]["state"] == "paused"
    console.request("toggle_pause", "keyboard")
    assert wait_until(lambda: console.snapshot()["live"]["env_steps"] > steps + 5)
    actor.stop_and_join(10.0)
    assert actor.error is None
    events = console.snapshot()["events"]
    assert [e["command"] for e in events] == ["pause", "toggle_pause"]
    assert events[1]["outcome"] == "resumed" and events[1]["source"] == "keyboard"
    assert event["episode"] == events[1]["episode"]  # paused and resumed inside the same episode


def test_success_and_failure_labels_end_the_episode_with_the_operators_answer(running, tmp_path) -> None:
    config, console, collector, actor = running()
    success = command_when(console, collector, "success", wanted="ended: success")
    failure = command_when(console, collector, "failure", wanted="ended: failure")
    actor.stop_and_join(10.0)
    collector.pump(0.5)
    assert actor.error is None

    ends = {e["episode"]: e for e in collector.episode_ends()}
    labelled = ends[success["episode"]]
    assert labelled["success"] == 1 and labelled["label"] == "operator" and labelled["length"] == success["episode_step"]
    assert ends[failure["episode"]]["success"] == 0 and ends[failure["episode"]]["label"] == "operator"
    # The zero-action policy never lifts the cube: every other episode is the detector's failure.
    assert all(e["label"] == "detector" and e["success"] == 0 for n, e in ends.items() if n not in (success["episode"], failure["episode"]))
    # The labelled episode's last transition carries the operator's reward and ends the episode there.
    batch = collector.batch()
    ended = np.flatnonzero(batch["terminated"] | batch["truncated"])
    last_of = dict(zip(sorted(ends), ended))
    assert batch["rewards"][last_of[success["episode"]]] == 1.0 and batch["terminated"][last_of[success["episode"]]]
    assert batch["rewards"][last_of[failure["episode"]]] == 0.0 and batch["terminated"][last_of[failure["episode"]]]
    assert batch["rewards"].sum() == 1.0
    # Logged with the episode each touched.
    with open(tmp_path / "logs" / "operator.csv") as file:
        rows = list(csv.DictReader(file))
    assert [(r["command"], int(r["episode"])) for r in rows] == [("success", success["episode"]), ("failure", failure["episode"])]


def test_a_discarded_episode_never_reaches_the_learner_or_the_dataset(running, tmp_path) -> None:
    from robot_stack.data.lerobot_v3 import validate_dataset
    from robot_stack.data.session_dataset import read_episode_transitions

    config, console, collector, actor = running(dataset_dir=tmp_path / "dataset")
    discarded = command_when(console, collector, "rerecord", at_step=30, wanted="discarded")
    assert wait_until(lambda: len(collector.episode_ends()) > discarded["episode"] or collector.pump(0.05))
    actor.stop_and_join(10.0)
    collector.pump(0.5)
    assert actor.error is None

    summary = actor.summary
    batch = collector.batch()
    # Everything stepped was sent except the discarded steps, and the episodes are numbered on.
    assert summary.env_steps_discarded == discarded["episode_step"] >= 30
    assert len(batch["rewards"]) == summary.env_steps - summary.env_steps_discarded
    ends = collector.episode_ends()
    assert [e["episode"] for e in ends] == list(range(summary.episodes))
    # The re-recorded episode is whole: its length matches its own transitions (none of the discarded).
    boundaries = np.flatnonzero(batch["terminated"] | batch["truncated"])
    lengths = np.diff(np.concatenate([[-1], boundaries]))
    assert [e["length"] for e in ends] == lengths.tolist()
    continuing = np.flatnonzero(~(batch["terminated"] | batch["truncated"])[:-1])
    np.testing.assert_array_equal(batch["observations/state"][continuing + 1], batch["next_observations/state"][continuing])
    # The dataset holds exactly what the learner got, episode for episode.
    assert validate_dataset(tmp_path / "dataset") == []
    recorded = list(read_episode_transitions(tmp_path / "dataset"))
    assert [outcome["episode"] for _, outcome in recorded] == [e["episode"] for e in ends]
    np.testing.assert_array_equal(np.concatenate([t["actions"] for t, _ in recorded]), batch["actions"])


def test_reset_ends_the_episode_as_cut_short_and_keeps_its_data(running) -> None:
    config, console, collector, actor = running()
    reset = command_when(console, collector, "reset", at_step=20, wanted="reset requested")
    actor.stop_and_join(10.0)
    collector.pump(0.5)
    batch = collector.batch()
    ends = collector.episode_ends()
    assert ends[reset["episode"]]["length"] == reset["episode_step"] and ends[reset["episode"]]["success"] == 0
    last = int(np.flatnonzero(batch["terminated"] | batch["truncated"])[reset["episode"]])
    assert batch["truncated"][last] and not batch["terminated"][last]


def test_stop_from_a_pause_ends_the_actor_with_a_final_batch_and_nothing_left_unsent(running) -> None:
    config, console, collector, actor = running()
    command_when(console, collector, "pause", wanted="paused")
    console.request("stop", "web")
    deadline = time.monotonic() + 15.0
    while actor.thread.is_alive() and time.monotonic() < deadline:
        collector.pump(0.05)
    collector.pump(0.3)
    assert actor.error is None and not actor.thread.is_alive()
    # The paused episode was cut short and sent; the last batch says it is the last.
    assert collector.received[-1].info.get("final") is True
    assert [b.seq for b in collector.received] == list(range(actor.summary.last_seq + 1))
    assert actor.summary.delivered
    assert console.request("pause", "web")["queued"] is False  # a stopped actor takes no more


def test_stop_at_an_episode_boundary_sends_an_empty_final_batch_the_learner_checkpoints(make_config, tmp_path) -> None:
    from learner.learner_loop import Learner

    config = make_config(stop_timeout_s=10.0)
    config = with_fields(config, "session", checkpoint_dir=tmp_path / "checkpoints", log_dir=tmp_path / "logs")
    config = with_fields(config, "actor.console", web=False)
    config = with_fields(config, "agent", batch_size=16, hidden_dims=(32, 32))
    config = with_fields(config, "training", checkpoint_every_s=3600, min_online_transitions=10**6, torch_threads=1)
    learner = Learner(config)
    learner.resume_or_start()
    stop_learner, ready = threading.Event(), threading.Event()
    learner_thread = threading.Thread(target=learner.run, args=(stop_learner,), kwargs={"ready": ready}, daemon=True)
    learner_thread.start()
    assert ready.wait(20)
    console = OperatorConsole(None)
    actor = ActorThread(config, policy_factory=lambda *spec: FakePolicy(), console=console)
    try:
        assert wait_until(lambda: learner.counters.episodes >= 1 or actor.error, timeout_s=30.0)
        # Paused right after a reset, stopped there: nothing of an episode is in progress.
        console.request("reset", "ros")
        console.request("pause", "ros")
        assert wait_until(lambda: console.snapshot()["live"].get("state") == "paused")
        console.request("stop", "ros")
        actor.thread.join(config.actor.stop_timeout_s + 5.0)
        outbox = config.session.transport.outbox_dir / "robot1"
        outbox_state = json.loads((outbox / "outbox.json").read_text())
    finally:
        actor.stop.set()
        stop_learner.set()
        learner_thread.join(30)
    assert actor.error is None and not actor.thread.is_alive()
    assert outbox_state["committed_seq"] == actor.summary.last_seq
    assert learner.counters.env_steps == actor.summary.env_steps and learner.counters.episodes == actor.summary.episodes


class Buttons:
    def __init__(self, readings):
        self.readings = list(readings)

    def read(self) -> TeleopCommand:
        reading = self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]
        if reading is None:
            raise TeleopDisconnected("unplugged")
        return TeleopCommand(np.zeros(6), None, False, buttons=reading)


def test_a_held_button_is_one_command_and_gripper_buttons_are_not_commands() -> None:
    config = type("Teleop", (), {"button_map": {0: "gripper_close", 3: "pause", 4: "success"}})()
    console = OperatorConsole(None)
    readings = [(), ("pause",), ("pause",), ("pause",), (), None, ("pause", "gripper_close"), ("success",), ()]
    buttons = ButtonCommands(Buttons(readings), config, console)
    for _ in readings:
        buttons.poll()
    assert [(r.command, r.source) for r in console.take()] == [
        ("toggle_pause", "spacemouse"), ("toggle_pause", "spacemouse"), ("success", "spacemouse"),
    ]
    # A device with only gripper buttons mapped is not polled for commands at all.
    only_gripper = ButtonCommands(Buttons([("gripper_close",)]), type("T", (), {"button_map": {0: "gripper_close"}})(), console)
    assert only_gripper.device is None


def test_the_console_refuses_unknown_commands_and_sources_by_name() -> None:
    console = OperatorConsole(None)
    with pytest.raises(ConsoleError, match="unknown operator command 'jump'"):
        console.request("jump", "web")
    with pytest.raises(ConsoleError, match="unknown command source 'telepathy'"):
        console.request("pause", "telepathy")
    assert console.take() == []
