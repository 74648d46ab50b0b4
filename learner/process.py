"""The learner process: receive transitions, train SAC/RLPD at the configured
update-to-data ratio, publish weights, checkpoint, log.

One thread runs the loop below; the transport's link thread receives in the background.
Weights versions are learner update counts, so an actor knows how far training has got.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from robot_stack.config.schema import TaskConfig
from robot_stack.data.curves import window_deterministic_success_rate, window_intervention_rate, window_success_rate
from robot_stack.envs.spec import action_spec, env_action_dim, observation_spec
from robot_stack.transport.learner_link import LearnerLink
from robot_stack.transport.messages import Stats

from robot_stack.data.checkpoints import CheckpointInfo, CheckpointStore, write_json_atomic
from robot_stack.data.transitions import concatenate_batches
from learner.features import CachedTrunkFeatures
from learner.metrics import MetricsLog
from learner.replay import MixedReplay
from learner.sac import SACAgent, resolve_device

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"


@dataclass
class Counters:
    """What a checkpoint carries besides networks and buffers."""

    updates: int = 0
    env_steps: int = 0  # online transitions received
    episodes: int = 0
    weights_version: int = -1
    wall_time_s: float = 0.0  # learner running time, summed over restarts
    demo_transitions: int = 0
    recent_episodes: list = field(default_factory=list)  # the success window, kept across restarts
    recent_deterministic: list = field(default_factory=list)  # the deterministic episodes' window


def export_policy(agent: SACAgent) -> bytes:
    from safetensors.torch import save

    return save(agent.policy_weights())


def runs_per_stream(batches) -> list[tuple[str, dict[str, np.ndarray], int]]:
    """Received batches as (stream, arrays, count), consecutive batches of one stream joined, in
    order: the replay then stores (and a frozen trunk encodes) their frames in one call."""
    runs: list[tuple[str, list]] = []
    for batch in batches:
        if runs and runs[-1][0] == batch.stream_id:
            runs[-1][1].append(batch.arrays)
        else:
            runs.append((batch.stream_id, [batch.arrays]))
    joined = []
    for stream, arrays in runs:
        arrays = arrays[0] if len(arrays) == 1 else concatenate_batches(arrays)
        joined.append((stream, arrays, int(arrays["rewards"].shape[0])))
    return joined


def load_demos_into(replay: MixedReplay, directory: Path, spec: dict, action_dim: int) -> int:
    from robot_stack.data.demos import demos_exist, load_demos

    if not demos_exist(directory):
        log.warning("no demos in %s: training starts from online data only", directory)
        return 0
    arrays = load_demos(directory, spec, action_dim)
    count = int(arrays["rewards"].shape[0])
    replay.add_demos(arrays)
    log.info("loaded %d demo transitions from %s", count, directory)
    return count


class Learner:
    def __init__(self, config: TaskConfig, *, learner_id: str = "learner", demo_dir: Optional[Path] = None):
        self.config = config
        self.training = config.training
        self.learner_id = learner_id
        self.demo_dir = demo_dir
        if self.training.torch_threads is not None:
            torch.set_num_threads(self.training.torch_threads)
        self.device = resolve_device(None, config.agent)
        self.observation_spec = observation_spec(config)
        self.action_spec = action_spec(config)
        self.action_dim = env_action_dim(config)
        self.binary_gripper = config.task.gripper_mode == "binary"
        self.rng = np.random.default_rng(self.training.seed)
        torch.manual_seed(self.training.seed)
        self.checkpoints = CheckpointStore(config.session.checkpoint_dir)
        self.log_dir = Path(config.session.log_dir)
        self.metrics = MetricsLog(self.log_dir)
        self.counters = Counters()
        self.link_state: dict[str, int] = {}
        self.agent, self.replay = self._fresh()
        self.resumed_from: Optional[CheckpointInfo] = None

    # ----------------------------------------------------------------- state

    def _fresh(self) -> tuple[SACAgent, MixedReplay]:
        agent = SACAgent.create(
            self.config.agent, self.observation_spec, self.action_dim, self.binary_gripper,
            discount=self.config.task.discount, device=self.device, seed=self.training.seed,
        )
        # A frozen trunk runs once per stored frame, and the replay keeps its features.
        features = CachedTrunkFeatures(agent.encoder, self.config.agent.encoder, self.training.seed) if agent.encoder.cache_features else None
        replay = MixedReplay.from_config(self.training, self.observation_spec, self.action_dim, frame_encoder=features)
        return agent, replay

    def resume_or_start(self) -> None:
        """Resume from the newest loadable checkpoint; otherwise start fresh with the demos."""
        self._describe_replay()
        info, loaded = self.checkpoints.load_latest(self._load)
        if info is not None:
            self.agent, self.replay, self.counters, self.link_state = loaded
            self.resumed_from = info
            log.info("resumed from %s: %d updates, %d env steps, %d episodes", info.path,
                     self.counters.updates, self.counters.env_steps, self.counters.episodes)
            self._forget_episodes_after_checkpoint()
            return
        self._forget_episodes_after_checkpoint()
        if self.demo_dir is not None:
            self.counters.demo_transitions = load_demos_into(self.replay, self.demo_dir, self.observation_spec, self.action_dim)

    def _forget_episodes_after_checkpoint(self) -> None:
        # Rows logged after the checkpoint being resumed describe episodes it does not hold:
        # their batches are resent and they are logged again, under the same numbers.
        def held(row: dict[str, str]) -> bool:
            try:
                return int(row.get("episode") or 0) < self.counters.episodes
            except ValueError:
                return True  # not ours to judge: a row this learner did not write

        dropped = self.metrics.keep_rows("episodes", held)
        if dropped:
            log.info("episodes.csv: dropped %d rows logged after the checkpoint; their episodes are counted again "
                     "when the actors resend them", dropped)

    def _describe_replay(self) -> None:
        encoder = self.config.agent.encoder
        online = self.replay.online
        if online.frame_encoder is not None:
            augmentation = encoder.cached_augmentation + (f" x{encoder.stored_crops}" if encoder.cached_augmentation == "stored_crops" else "")
            log.info("frozen image trunk: the replay keeps its features (%s augmentation), %.0f bytes per transition",
                     augmentation, online.bytes_per_transition())
        elif any(key.startswith("images/") for key in self.observation_spec):
            log.info("the replay keeps images (the trunk runs at every update), %.0f bytes per transition", online.bytes_per_transition())

    def _load(self, info: CheckpointInfo):
        # Everything is built fresh and only handed over once all of it loaded: a checkpoint
        # that fails halfway leaves the learner as it was.
        agent, replay = self._fresh()
        state = torch.load(info.path / "agent.pt", map_location=self.device, weights_only=True)
        agent.load_state_dict(state)
        replay.load(info.path / "replay")
        meta = info.meta
        counters = Counters(**{key: meta["counters"][key] for key in Counters.__dataclass_fields__ if key in meta["counters"]})
        return agent, replay, counters, {str(k): int(v) for k, v in meta["link_state"].items()}

    def save_checkpoint(self, link: Optional[LearnerLink]) -> CheckpointInfo:
        link_state = link.delivered_state() if link is not None else dict(self.link_state)
        self.link_state = link_state

        def write(directory: Path) -> None:
            torch.save(self.agent.state_dict(), directory / "agent.pt")
            self.replay.save(directory / "replay")
            (directory / "policy.safetensors").write_bytes(export_policy(self.agent))

        counters = {**vars(self.counters), "recent_episodes": list(self.counters.recent_episodes),
                    "recent_deterministic": list(self.counters.recent_deterministic)}
        info = self.checkpoints.save(write, {"counters": counters, "link_state": link_state, "task": self.config.task.name})
        if link is not None:
            link.commit(link_state)
        return info

    # ----------------------------------------------------------------- episodes

    def _take_episode_ends(self, received, env_steps_before: int) -> bool:
        """Count the episode ends that ride in the received batches (so each is counted
        exactly once, and a checkpoint holds it exactly when it holds its transitions).
        True if one of the batches is the last an actor sends before it stops."""
        steps, stopping = env_steps_before, False
        for batch in received:
            steps += batch.count
            detail = batch.info.get("episode_end")
            if isinstance(detail, dict):
                self._episode_end(batch.actor_id, detail, steps)
            stopping = stopping or batch.info.get("final") is True
        return stopping

    def _episode_end(self, actor_id: str, detail: dict[str, Any], env_steps: Optional[int] = None) -> None:
        counters = self.counters
        counters.episodes += 1
        episode = {
            "episode": counters.episodes - 1,
            "actor": actor_id,
            "success": int(bool(detail.get("success", 0))),
            # The simulator's answer where a learned detector gave the reward; else the same.
            "true_success": int(bool(detail.get("true_success", detail.get("success", 0)))),
            "intervened": int(bool(detail.get("intervened", 0))),
            "deterministic": int(bool(detail.get("deterministic", 0))),
            "intervention_steps": int(detail.get("intervention_steps", 0)),
            "length": int(detail.get("length", 0)),
            "return": float(detail.get("return", 0.0)),
            "weights_version": int(detail.get("weights_version", -1)),
            "wall_time_s": round(counters.wall_time_s, 2),
        }
        window = self.training.success_window_episodes
        if episode["deterministic"]:
            counters.recent_deterministic = (counters.recent_deterministic + [episode])[-window:]
        else:
            counters.recent_episodes = (counters.recent_episodes + [episode])[-window:]
        self.metrics.log("episodes", counters.env_steps if env_steps is None else env_steps, episode)

    def success_rate(self) -> Optional[float]:
        """The rate the session's stop rule reads (training.stop_on)."""
        if self.training.stop_on == "deterministic_episodes":
            return self.deterministic_success_rate()
        return self.policy_success_rate()

    def policy_success_rate(self) -> Optional[float]:
        return window_success_rate(self.counters.recent_episodes, self.training.success_window_episodes,
                                   self.training.min_policy_only_episodes)

    def deterministic_success_rate(self) -> Optional[float]:
        return window_deterministic_success_rate(self.counters.recent_deterministic, self.training.success_window_episodes)

    # ----------------------------------------------------------------- the loop

    def run(self, stop: threading.Event, *, ready: Optional[threading.Event] = None) -> Counters:
        config, training, counters = self.config, self.training, self.counters
        link = LearnerLink(config.session, self.learner_id, config.task.name, self.observation_spec, self.action_spec)
        link.restore(self.link_state)
        link.start()
        log.info("learner listening on %s ports %d/%d (%s, device %s)", config.session.learner_host,
                 config.session.transitions_port, config.session.weights_port, config.task.name, self.device)
        last_publish_updates = counters.updates
        last_publish_time = time.monotonic()
        last_checkpoint = time.monotonic()
        last_status = 0.0
        rate_window: deque[tuple[float, int, int]] = deque(maxlen=30)
        train_metrics: dict[str, float] = {}
        clock = time.monotonic()

        def publish() -> None:
            nonlocal last_publish_updates, last_publish_time
            version = max(counters.updates, counters.weights_version + 1)
            link.publish_weights(version, export_policy(self.agent))
            counters.weights_version = version
            last_publish_updates, last_publish_time = counters.updates, time.monotonic()

        publish()
        if ready is not None:
            ready.set()
        try:
            while not stop.is_set():
                now = time.monotonic()
                counters.wall_time_s += now - clock
                clock = now
                received = link.receive(timeout_s=0.0)
                steps_before = counters.env_steps
                for stream, arrays, count in runs_per_stream(received):
                    self.replay.add(arrays, stream=stream)
                    counters.env_steps += count
                actor_stopping = self._take_episode_ends(received, steps_before)
                for report in link.reports():
                    if isinstance(report.message, Stats):
                        self.metrics.log("actor", counters.env_steps, {"actor": report.actor_id, **dict(report.message.values)})

                due = math.floor(training.updates_per_env_step * counters.env_steps)
                can_train = counters.env_steps >= training.min_online_transitions and len(self.replay) > 0
                trained = 0
                budget_end = time.monotonic() + 0.05
                while can_train and counters.updates < due and time.monotonic() < budget_end and not stop.is_set():
                    batches = [self.replay.sample(config.agent.batch_size, self.rng) for _ in range(config.agent.critic_actor_ratio)]
                    train_metrics = self.agent.update(batches)
                    counters.updates += 1
                    trained += 1
                    if counters.updates % training.log_every_updates == 0:
                        self.metrics.log("train", counters.updates, {"env_steps": counters.env_steps, **train_metrics})
                caught_up = counters.updates >= due
                since = counters.updates - last_publish_updates
                if since > 0 and (
                    since >= training.publish_every_updates
                    or time.monotonic() - last_publish_time >= training.publish_every_s
                    or caught_up
                ):
                    publish()
                # A stopping actor waits for the checkpoint that holds its last batch, so that it
                # leaves nothing behind in its outbox that this learner already holds.
                if actor_stopping or time.monotonic() - last_checkpoint >= training.checkpoint_every_s:
                    info = self.save_checkpoint(link)
                    log.info("checkpoint %s%s", info.path, " (an actor is stopping)" if actor_stopping else "")
                    last_checkpoint = time.monotonic()
                rate_window.append((time.monotonic(), counters.updates, counters.env_steps))
                if time.monotonic() - last_status >= 1.0:
                    self._write_status(link, rate_window)
                    last_status = time.monotonic()
                if not received and trained == 0:
                    # Idle: wait a little. (Whatever the link received meanwhile is taken at the
                    # top of the loop; a receive here would drop it.)
                    time.sleep(0.002)
        finally:
            info = self.save_checkpoint(link)
            log.info("final checkpoint %s (%d updates, %d env steps)", info.path, counters.updates, counters.env_steps)
            self._write_status(link, rate_window, stopped=True)
            link.close()
            self.metrics.close()
        return counters

    def _write_status(self, link: LearnerLink, rate_window, stopped: bool = False) -> None:
        counters = self.counters
        updates_per_s = steps_per_s = 0.0
        if len(rate_window) >= 2:
            (t0, u0, s0), (t1, u1, s1) = rate_window[0], rate_window[-1]
            if t1 > t0:
                updates_per_s, steps_per_s = (u1 - u0) / (t1 - t0), (s1 - s0) / (t1 - t0)
        status = {
            "task": self.config.task.name,
            "env_steps": counters.env_steps,
            "episodes": counters.episodes,
            "updates": counters.updates,
            "updates_per_s": round(updates_per_s, 2),
            "env_steps_per_s": round(steps_per_s, 2),
            "success_rate": self.success_rate(),
            "policy_success_rate": self.policy_success_rate(),
            "deterministic_success_rate": self.deterministic_success_rate(),
            "intervention_rate": window_intervention_rate(counters.recent_episodes, self.training.success_window_episodes),
            "weights_version": counters.weights_version,
            "online_transitions": len(self.replay.online),
            "demo_transitions": len(self.replay.demo),
            "actors": [peer.actor_id for peer in link.peers()],
            "wall_time_s": round(counters.wall_time_s, 2),
            "stopped": stopped,
            "time": time.time(),
        }
        self.log_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.log_dir / STATUS_FILE, status)


def run_learner(config: TaskConfig, stop: threading.Event, *, demo_dir: Optional[Path] = None,
                ready: Optional[threading.Event] = None) -> Counters:
    learner = Learner(config, demo_dir=demo_dir)
    learner.resume_or_start()
    return learner.run(stop, ready=ready)
