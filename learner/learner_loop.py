"""The learner process: receive transitions, train SAC/RLPD at the configured
update-to-data ratio, publish weights, checkpoint, log.

One thread runs the loop below; the transport's link thread receives in the background.
Weights versions are learner update counts, so an actor knows how far training has got.

Checkpoints: the training thread only takes a snapshot (copies of the networks' and optimisers'
tensors, the counters, the link's stream positions and the replay buffers' write positions);
a writer thread appends the replay rows added since the previous checkpoint as segments
(``learner/replay_segments.py``), writes the rest and makes it durable, and only then commits
the link's stream positions, so an actor never drops a batch that a checkpoint does not hold.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from robot_stack.config.schema import AgentConfig, TaskConfig, TrainingConfig
from robot_stack.data.status import LearnerStatus, write_status
from robot_stack.data.curves import window_deterministic_success_rate, window_intervention_rate, window_success_rate
from robot_stack.data.spec import action_spec, binary_gripper, env_action_dim, observation_spec
from robot_stack.transport.learner_link import LearnerLink
from robot_stack.transport.sockets import QuietLog
from robot_stack.transport.messages import Stats
from robot_stack.transport.validation import episode_end_detail
from robot_stack.transport.weights_stream import TrainingProgress

from robot_stack.data.checkpoints import CheckpointIdentity, CheckpointInfo, CheckpointStore, described_spec, write_json_atomic
from robot_stack.data.transitions import concatenate_batches
from robot_stack.data.warm_start import (
    WarmStartError,
    dataset_episodes,
    describe_checkpoint,
    source_checkpoints,
    warm_start_record,
)
from robot_stack.policy.weights_io import WeightsMismatchError
from learner.features import CachedTrunkFeatures, trunk_fingerprint
from learner.metrics import MetricsLog
from learner.replay import MixedReplay, ReplayFileError
from learner.replay_segments import SegmentLog, remove_unreferenced_segments, segment_store, store_of
from learner.sac import SACAgent, resolve_device

log = logging.getLogger(__name__)

REPLAY_MANIFEST = "replay.json"


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


def checkpoint_identity(task_name: str, observation_spec: dict, action_spec: dict, agent: SACAgent) -> CheckpointIdentity:
    """The task and what the stored data and networks are shaped for; with cached trunk
    features, which trunk made them."""
    spec: dict[str, Any] = described_spec(observation_spec, action_spec)
    if agent.encoder.cache_features:
        spec["cached_trunk"] = trunk_fingerprint(agent.encoder)
    return CheckpointIdentity(task_name, spec)


def _snapshot(value: Any) -> Any:
    """A copy of a state dict's tensors (and containers) that training can no longer change."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {key: _snapshot(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_snapshot(item) for item in value)
    return value


def export_policy(agent: SACAgent, progress: Optional[TrainingProgress] = None) -> bytes:
    """The policy's weights as a safetensors blob; ``progress`` rides in its metadata (the weights
    stream's, so actors can pace themselves by how far training is)."""
    from safetensors.torch import save

    return save(agent.policy_weights(), metadata=progress.metadata() if progress is not None else None)


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


def load_demos_into(replay: MixedReplay, directory: Path, spec: dict, action_dim: int,
                    object_frame: Optional[str] = None) -> int:
    """The demo set in ``directory`` into the demo buffer. ``object_frame``: the frame this task
    observes the object in (task.observation.object_frame, when its state has object_position);
    a demo set recorded in the other frame is refused (sets that do not say are from 'reset')."""
    from robot_stack.data.demo_sets import DemoMismatchError, demos_exist, load_demos, read_demo_meta

    if not demos_exist(directory):
        log.warning("no demos in %s: training starts from online data only", directory)
        return 0
    recorded = read_demo_meta(directory).get("object_frame", "reset")
    if object_frame is not None and recorded != object_frame:
        raise DemoMismatchError(f"the demos in {directory} observe the object from '{recorded}' but this task observes it from "
                         f"'{object_frame}' (task.observation.object_frame): record them again (remove that folder)")
    arrays = load_demos(directory, spec, action_dim)
    count = int(arrays["rewards"].shape[0])
    replay.add_demos(arrays)
    log.info("loaded %d demo transitions from %s", count, directory)
    return count


# The other run's episodes get a stream of their own in the demo buffer, its continuity broken
# before each: an episode never continues the task's demos or the episode before it.
DATASET_DEMO_STREAM = "init_from_dataset"


def load_dataset_demos_into(replay: MixedReplay, run_dir: Path, spec: dict, action_dim: int) -> int:
    """Every episode another run recorded, into the demo buffer (after the task's own demos)."""
    transitions = episodes = 0
    for arrays, _ in dataset_episodes(run_dir, spec, action_dim):
        replay.demo.break_continuity(DATASET_DEMO_STREAM)
        transitions += replay.add_demos(arrays, stream=DATASET_DEMO_STREAM)
        episodes += 1
    log.info("warm start: loaded %d transitions of %d episodes recorded by %s into the demo buffer",
             transitions, episodes, run_dir)
    if len(replay.demo) < replay.demo.total_added:
        log.warning("the demo buffer holds %d transitions (training.demo_buffer_capacity) of the %d added: the oldest were "
                    "overwritten", len(replay.demo), replay.demo.total_added)
    return transitions


def build_agent_and_replay(config: TaskConfig, observation_spec: dict, action_dim: int, binary_gripper: bool,
                           device: Union[str, torch.device, None] = None) -> tuple[SACAgent, MixedReplay]:
    """A fresh SAC/RLPD agent and its online + demo buffers, seeded with ``training.seed``.
    ``device`` None follows ``agent.device``."""
    agent = SACAgent.create(
        config.agent, observation_spec, action_dim, binary_gripper,
        discount=config.task.discount, device=device, seed=config.training.seed,
    )
    # A frozen trunk runs once per stored frame, and the replay keeps its features.
    features = CachedTrunkFeatures(agent.encoder, config.agent.encoder, config.training.seed) if agent.encoder.cache_features else None
    replay = MixedReplay.from_config(config.training, observation_spec, action_dim, frame_encoder=features)
    return agent, replay


def updates_due(training: TrainingConfig, env_steps: int) -> int:
    """How many updates training owes after ``env_steps`` online transitions: none before
    ``min_online_transitions``, then ``updates_per_env_step`` per env step, counted from the first."""
    if env_steps < training.min_online_transitions:
        return 0
    return math.floor(training.updates_per_env_step * env_steps)


def update_once(agent: SACAgent, replay: MixedReplay, agent_config: AgentConfig, rng: np.random.Generator) -> dict[str, float]:
    """One learner update: ``critic_actor_ratio`` fresh batches (the critic trains on each, the
    actor and temperature on the last); returns the update's metrics."""
    batches = [replay.sample(agent_config.batch_size, rng) for _ in range(agent_config.critic_actor_ratio)]
    return agent.update(batches)


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
        self.binary_gripper = binary_gripper(config)
        self.rng = np.random.default_rng(self.training.seed)
        torch.manual_seed(self.training.seed)
        self.log_dir = Path(config.session.log_dir)
        self.metrics = MetricsLog(self.log_dir)
        self.counters = Counters()
        self.link_state: dict[str, int] = {}
        self.agent, self.replay = self._fresh()
        identity = checkpoint_identity(config.task.name, self.observation_spec, self.action_spec, self.agent)
        self.checkpoints = CheckpointStore(config.session.checkpoint_dir, identity=identity)
        self.segment_logs = self._segment_logs(self.replay, self.checkpoints.run_id)
        self.resumed_from: Optional[CheckpointInfo] = None
        # Where this run's networks came from (training.init_from), carried by its checkpoints.
        self.warm_started_from: Optional[dict[str, Any]] = None
        # One writer: checkpoints are written in order, each after the previous is durable.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-writer")
        self.last_checkpoint_timing: dict[str, float] = {}

        self._quiet = QuietLog(log)

    # ----------------------------------------------------------------- state

    def _fresh(self) -> tuple[SACAgent, MixedReplay]:
        return build_agent_and_replay(self.config, self.observation_spec, self.action_dim, self.binary_gripper, self.device)

    def _segment_logs(self, replay: MixedReplay, run_id: str) -> dict[str, SegmentLog]:
        store = segment_store(self.checkpoints.directory, run_id)
        return {buffer.name: SegmentLog(buffer, store / buffer.name) for buffer in (replay.online, replay.demo)}

    def resume_or_start(self) -> None:
        """Resume from the newest loadable checkpoint; otherwise start fresh with the demos, warm-started
        from another run if ``training.init_from`` says so. A run's own checkpoints always win: a
        warm-started run that restarts resumes them and does not warm-start again."""
        self._describe_replay()
        init_from = self.training.init_from
        info, loaded = self.checkpoints.load_latest(self._load)
        if info is not None:
            self.agent, self.replay, self.counters, self.link_state, run_id, self.segment_logs = loaded
            self.checkpoints.run_id = run_id
            self.resumed_from = info
            self.warm_started_from = info.meta.get("warm_started_from")
            log.info("resumed from %s: %d updates, %d env steps, %d episodes", info.path,
                     self.counters.updates, self.counters.env_steps, self.counters.episodes)
            if init_from is not None:
                log.info("training.init_from (%s) not applied: this run resumes its own checkpoint", init_from.run_dir)
            self._forget_episodes_after_checkpoint()
            return
        self._forget_episodes_after_checkpoint()
        if init_from is not None and init_from.networks:
            self._warm_start_networks(init_from.run_dir)
        if self.demo_dir is not None:
            observation = getattr(self.config.task, "observation", None)
            frame = observation.object_frame if observation is not None and "object_position" in observation.state else None
            self.counters.demo_transitions = load_demos_into(self.replay, self.demo_dir, self.observation_spec,
                                                             self.action_dim, object_frame=frame)
        if init_from is not None and init_from.datasets_as_demos:
            self.counters.demo_transitions += load_dataset_demos_into(self.replay, init_from.run_dir, self.observation_spec,
                                                                      self.action_dim)

    def _warm_start_networks(self, run_dir: Path) -> CheckpointInfo:
        """Another run's newest readable checkpoint's networks, targets and temperature into this
        fresh agent. Its optimisers are not taken: Adam's moments estimate the other run's gradients
        on the other run's data, and its state would also bring the other run's learning rates
        over this task's agent section; fresh ones warm up from this run's own batches."""
        candidates = source_checkpoints(run_dir, self.observation_spec, self.action_spec, self.checkpoints.directory)
        for info in candidates:
            try:
                # A local file the project's learner wrote; weights_only refuses anything but tensors.
                state = torch.load(info.path / "agent.pt", map_location=self.device, weights_only=True)
            except Exception as error:  # as when resuming: a broken checkpoint is reported, an older one tried
                log.error("warm start: %s could not be read (%s: %s); trying an older one", info.path, type(error).__name__, error)
                continue
            self._load_source_networks(state, info)
            self.warm_started_from = warm_start_record(run_dir, info)
            log.info("warm start from run %s: networks, targets and temperature of %s; optimisers fresh, counters at 0",
                     run_dir, describe_checkpoint(info))
            return info
        raise WarmStartError(f"init_from: no checkpoint under {candidates[0].path.parent} could be read (see the log)")

    def _load_source_networks(self, state: dict, info: CheckpointInfo) -> None:
        frozen_before = self._frozen_trunk_fingerprint()
        try:
            self.agent.load_networks(state)
        except (KeyError, WeightsMismatchError) as error:
            raise WarmStartError(f"init_from: the networks of {info.path} do not fit this task's agent section "
                                 f"(an agent setting differs): {error}") from error
        frozen_after = self._frozen_trunk_fingerprint()
        if frozen_after != frozen_before:
            # The learner stops here, so the agent it has just overwritten is never used.
            raise WarmStartError(
                f"init_from: {info.path} was trained on frozen image trunk {frozen_after}, this task's "
                f"(agent.encoder.pretrained_path {self.config.agent.encoder.pretrained_path}) is {frozen_before}: "
                "what follows a frozen trunk only makes sense on that trunk's features; warm-start from a run "
                "with the same trunk file"
            )

    def _frozen_trunk_fingerprint(self) -> Optional[str]:
        encoder = self.agent.encoder
        if encoder.trunk_trainable or not encoder.cameras:
            return None
        return trunk_fingerprint(encoder)

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
        # A local file this learner's own run wrote; weights_only refuses anything but tensors.
        state = torch.load(info.path / "agent.pt", map_location=self.device, weights_only=True)
        agent.load_state_dict(state)
        meta = info.meta
        run_id = meta.get("run_id") if isinstance(meta.get("run_id"), str) else self.checkpoints.run_id
        manifest_path = info.path / REPLAY_MANIFEST
        if manifest_path.exists():
            manifests = json.loads(manifest_path.read_text())
            logs = {}
            for buffer in (replay.online, replay.demo):
                where = f"{manifest_path} [{buffer.name}]"
                if not isinstance(manifests, dict) or not isinstance(manifests.get(buffer.name), dict):
                    raise ReplayFileError(f"{where}: no manifest for this buffer")
                store = store_of(info.path, manifests[buffer.name], where)
                logs[buffer.name] = SegmentLog(buffer, store / buffer.name)
                logs[buffer.name].load(manifests[buffer.name], where)
        else:  # a checkpoint from before incremental segments: both buffers in full
            replay.load(info.path / "replay")
            logs = self._segment_logs(replay, run_id)
        counters = Counters(**{key: meta["counters"][key] for key in Counters.__dataclass_fields__ if key in meta["counters"]})
        link_state = {str(k): int(v) for k, v in meta["link_state"].items()}
        return agent, replay, counters, link_state, run_id, logs

    def save_checkpoint(self, link: Optional[LearnerLink], wait: bool = True) -> "CheckpointInfo | Future[CheckpointInfo]":
        """Snapshot now (in the calling, training thread) and write in the writer thread; with
        ``wait`` return the durable checkpoint, else a future of it. ``link`` is committed to
        the snapshot's stream positions once the checkpoint is durable, not before."""
        started = time.perf_counter()
        link_state = link.delivered_state() if link is not None else dict(self.link_state)
        self.link_state = link_state
        state = _snapshot(self.agent.state_dict())
        policy = self.agent.policy_weights()  # copies; serialised by the writer
        positions = {name: log.position() for name, log in self.segment_logs.items()}
        counters = {**vars(self.counters), "recent_episodes": list(self.counters.recent_episodes),
                    "recent_deterministic": list(self.counters.recent_deterministic)}
        meta = {"counters": counters, "link_state": link_state}
        if self.warm_started_from is not None:
            meta["warm_started_from"] = self.warm_started_from
        stall_s = time.perf_counter() - started
        future = self._writer.submit(self._write_checkpoint, state, policy, positions, meta, link, stall_s)
        return future.result() if wait else future

    def _write_checkpoint(self, state, policy: dict, positions, meta, link: Optional[LearnerLink], stall_s: float) -> CheckpointInfo:
        from safetensors.torch import save

        started = time.perf_counter()
        manifests: dict[str, dict] = {}

        def write(directory: Path) -> None:
            torch.save(state, directory / "agent.pt")
            (directory / "policy.safetensors").write_bytes(save(policy))
            for name, segment_log in self.segment_logs.items():
                manifests[name] = segment_log.append(positions[name])
            write_json_atomic(directory / REPLAY_MANIFEST, manifests)

        info = self.checkpoints.save(write, meta)
        if link is not None:
            link.commit(meta["link_state"])
        self._remove_unreferenced_segments()
        self.last_checkpoint_timing = {"stall_s": stall_s, "write_s": time.perf_counter() - started}
        return info

    def _remove_unreferenced_segments(self) -> None:
        manifests = []
        for info in self.checkpoints.owned():
            try:
                manifests.append(json.loads((info.path / REPLAY_MANIFEST).read_text()))
            except FileNotFoundError:
                continue  # written before segments: references none
            except (OSError, ValueError) as error:
                log.warning("%s: unreadable replay manifest (%s): no segment removed this time", info.path, error)
                return
        remove_unreferenced_segments(segment_store(self.checkpoints.directory, self.checkpoints.run_id), manifests)

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
                try:
                    checked = episode_end_detail(detail)
                except ValueError as error:
                    # The transitions are stored; only the episode's summary is not counted.
                    self._quiet.warning(f"episode_end:{batch.actor_id}", "dropped the episode end in batch %d from actor '%s': %s",
                                        batch.seq, batch.actor_id, error)
                else:
                    self._episode_end(batch.actor_id, checked, steps)
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
            "operator_label": int(detail.get("label") == "operator"),
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
        # check_batches: a batch that would fail in the replay or the update is rejected on receipt.
        link = LearnerLink(config.session, self.learner_id, config.task.name, self.observation_spec, self.action_spec,
                           check_batches=True)
        link.restore(self.link_state)
        link.start()
        log.info("learner listening on %s ports %d/%d (%s, device %s)", config.session.learner_host,
                 config.session.transitions_port, config.session.weights_port, config.task.name, self.device)
        last_publish_updates = counters.updates
        last_publish_time = time.monotonic()
        last_checkpoint = time.monotonic()
        pending: Optional[Future] = None
        checkpoint_wanted = False  # an actor stopping waits for a checkpoint
        last_status = 0.0
        rate_window: deque[tuple[float, int, int]] = deque(maxlen=30)
        train_metrics: dict[str, float] = {}
        clock = time.monotonic()

        def publish() -> None:
            nonlocal last_publish_updates, last_publish_time
            version = max(counters.updates, counters.weights_version + 1)
            # All actors' env steps as received (counters.env_steps) and the updates made, both
            # over restarts: an actor paces itself by them (actor_loop.lead_over_training).
            link.publish_weights(version, export_policy(self.agent, TrainingProgress(counters.env_steps, counters.updates)))
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
                    self._report(report)

                due = updates_due(training, counters.env_steps)
                can_train = len(self.replay) > 0
                trained = 0
                budget_end = time.monotonic() + 0.05
                while can_train and counters.updates < due and time.monotonic() < budget_end and not stop.is_set():
                    train_metrics = update_once(self.agent, self.replay, config.agent, self.rng)
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
                checkpoint_wanted = checkpoint_wanted or actor_stopping
                if (checkpoint_wanted or time.monotonic() - last_checkpoint >= training.checkpoint_every_s) and (
                    pending is None or pending.done()
                ):
                    self._report_checkpoint(pending)
                    if checkpoint_wanted:
                        log.info("checkpoint for a stopping actor")
                    pending = self.save_checkpoint(link, wait=False)
                    checkpoint_wanted = False
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
            try:
                self._report_checkpoint(pending)
                info = self.save_checkpoint(link)
                log.info("final checkpoint %s (%d updates, %d env steps)", info.path, counters.updates, counters.env_steps)
                self._write_status(link, rate_window, stopped=True)
            finally:
                link.close()
                self.metrics.close()
        return counters

    def _report_checkpoint(self, pending: Optional[Future]) -> None:
        if pending is None:
            return
        try:
            info = pending.result()
        except Exception as error:  # the next checkpoint tries again; the link stays uncommitted
            log.error("checkpoint failed (%s: %s); actors keep what it would have held", type(error).__name__, error)
            return
        timing = self.last_checkpoint_timing
        log.info("checkpoint %s (training paused %.1f ms, written in %.2f s)", info.path,
                 1e3 * timing.get("stall_s", 0.0), timing.get("write_s", 0.0))

    def _report(self, report) -> None:
        """A report the link passed (it holds them to its report rules). Episode ends are not
        reports: they ride in batches (`_take_episode_ends`)."""
        message = report.message
        if isinstance(message, Stats):
            self.metrics.log("actor", self.counters.env_steps, {"actor": report.actor_id, **dict(message.values)})

    def _write_status(self, link: LearnerLink, rate_window, stopped: bool = False) -> None:
        counters = self.counters
        updates_per_s = steps_per_s = 0.0
        if len(rate_window) >= 2:
            (t0, u0, s0), (t1, u1, s1) = rate_window[0], rate_window[-1]
            if t1 > t0:
                updates_per_s, steps_per_s = (u1 - u0) / (t1 - t0), (s1 - s0) / (t1 - t0)
        status: LearnerStatus = {
            "task": self.config.task.name,
            "env_steps": counters.env_steps,
            "episodes": counters.episodes,
            "updates": counters.updates,
            "updates_per_s": round(updates_per_s, 2),
            "env_steps_per_s": round(steps_per_s, 2),
            "success_rate": self.success_rate(),
            "policy_success_rate": self.policy_success_rate(),
            "deterministic_success_rate": self.deterministic_success_rate(),
            "deterministic_window": [sum(int(e["success"]) for e in counters.recent_deterministic), len(counters.recent_deterministic)],
            "intervention_rate": window_intervention_rate(counters.recent_episodes, self.training.success_window_episodes),
            "weights_version": counters.weights_version,
            "online_transitions": len(self.replay.online),
            "demo_transitions": len(self.replay.demo),
            "actors": [peer.actor_id for peer in link.peers()],
            "wall_time_s": round(counters.wall_time_s, 2),
            "stopped": stopped,
            "time": time.time(),
        }
        write_status(self.log_dir, status)


def run_learner(config: TaskConfig, stop: threading.Event, *, demo_dir: Optional[Path] = None,
                ready: Optional[threading.Event] = None) -> Counters:
    learner = Learner(config, demo_dir=demo_dir)
    learner.resume_or_start()
    return learner.run(stop, ready=ready)
