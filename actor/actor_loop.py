"""The actor process: run the policy on the robot, let the teleoperator step in, stream
every transition to the learner and take its newer weights between steps.

One step of the loop:

    wait for the step's deadline (rate-locked) -> take newer weights if any -> apply the
    operator's commands (pause, label, discard, reset, stop: actor/console.py) -> policy
    action -> intervention (teleop action replaces it, or None) -> env.step -> transition
    (these four: ``ActorStepper``) -> at the episode's end, send the whole episode (in
    messages of ``send_every_steps`` transitions) and record it in the run's dataset

An episode reaches the learner whole or not at all: the operator may discard the episode in
progress (re-record), or end it with a label that rewrites its last transition, up to its
last step.

Nothing in the loop waits on the learner: ``ActorLink.send`` puts batches in the outbox
and returns, and weights are decoded in the link thread (``prepare_weights``). A learner
that is absent or restarting costs nothing but outbox space; episodes go on with the
policy the actor has.

Reported to the learner:
- ``episode_end`` in the info of the batch that carries an episode's last transition, with:
  episode (this actor's index), return, length, success (0/1), intervention_steps,
  intervened (0/1), deterministic (0/1), env_steps_total, weights_version. Riding in the
  batch, it is numbered, resent and deduplicated with the transitions, so the learner
  counts each episode exactly once across restarts of either side, and a checkpoint holds
  an episode's end exactly when it holds its transitions;
- ``final`` in the info of the last batch before a stop (a stop cuts the episode short: its
  last transition is marked truncated, so the stream stays consistent for a restarted
  actor); the learner checkpoints on it, so the stopping actor can forget what it sent;
- stats every ``actor.stats_every_s``: jitter_p50_ms, jitter_p99_ms, jitter_max_ms (None
  when free-running), loop_hz, step_p50_ms, step_p99_ms, overruns, rate_locked (0/1),
  inference_p50_ms, inference_p99_ms, env_steps, episodes, intervention_steps,
  nonfinite_actions, weights_version, weights_taken, weights_rejected, outbox_batches.
"""

from __future__ import annotations

import gc
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import safetensors.torch
import torch

from robot_stack.data.files import write_json_atomic
from actor.console import ButtonCommands, OperatorConsole, Request
from actor.intervention import HumanIntervention, Intervention, ScriptedIntervention
from actor.rate import LoopTiming, RateLimiter, percentile_ms
from robot_stack.data.transitions import (
    TransitionBuffer,
    gripper_closed_after_reset,
    hold_if_nonfinite,
    make_transition,
)
from robot_stack.config.schema import AgentConfig, TaskConfig
from robot_stack.data.spec import REWARD_KEY, env_spec, transition_batch_spec
from robot_stack.transport.actor_link import ActorLink, LinkRefused
from robot_stack.transport.weights_stream import TrainingProgress

log = logging.getLogger(__name__)

STATUS_EVERY_S = 1.0


@dataclass
class ActorEnvironment:
    """What the actor steps and who may take over: injected, so a real robot brings its own."""

    env: Any  # the env contract (docs/environments.md): reset, step, close, action_dim, binary_gripper, observation_space
    intervention: Optional[Intervention] = None


EnvFactory = Callable[[TaskConfig, np.random.Generator], ActorEnvironment]
PolicyFactory = Callable[[AgentConfig, dict, int, bool], Any]


def sim_actor_environment(config: TaskConfig, rng: np.random.Generator) -> ActorEnvironment:
    """The simulated env, supervised by the scripted teleoperator (teleop kind 'scripted'),
    by a person with a real SpaceMouse driving the simulated arm ('spacemouse'), or by
    nobody ('none')."""
    from robot_stack.envs.factory import make_sim_env
    from robot_stack.sim.teleop import ScriptedTeleop

    sim = make_sim_env(config)
    intervention = None
    if config.teleop.kind == "scripted":
        teleop = ScriptedTeleop(sim.expert, sim.backend, config.teleop, rng)
        intervention = ScriptedIntervention(
            teleop, config.teleop.intervention, rng, sim.env.action_dim, config.task.max_episode_steps
        )
    elif config.teleop.kind == "spacemouse":
        intervention = _human_intervention(config, sim.env)
    return ActorEnvironment(sim.env, intervention)


def real_actor_environment(config: TaskConfig, rng: np.random.Generator) -> ActorEnvironment:
    """The real robot (robot backend 'franka'), supervised by the operator's SpaceMouse."""
    from robot_stack.envs.factory import make_real_env

    env = make_real_env(config)
    try:
        intervention = _human_intervention(config, env) if config.teleop.kind != "none" else None
    except BaseException:
        env.close()
        raise
    return ActorEnvironment(env, intervention)


def gymnasium_actor_environment(config: TaskConfig, rng: np.random.Generator) -> ActorEnvironment:
    """The gymnasium env the task names, supervised by its expert as the scripted teleoperator
    (teleop kind 'scripted'), by the intervention source its ``env.teleop`` builds, or by nobody."""
    from robot_stack.envs.gymnasium_env import ExpertTeleop, make_expert, make_gymnasium_env, make_intervention_source

    env = make_gymnasium_env(config)
    try:
        intervention = None
        if config.teleop.kind == "scripted":
            teleop = ExpertTeleop(make_expert(config, env), env, config.teleop, rng)
            intervention = ScriptedIntervention(
                teleop, config.teleop.intervention, rng, env.action_dim, config.task.max_episode_steps,
                binary_gripper=env.binary_gripper,
            )
        elif config.env.teleop is not None:
            intervention = make_intervention_source(config, env, rng)
    except BaseException:
        env.close()
        raise
    return ActorEnvironment(env, intervention)


def actor_environment(config: TaskConfig, rng: np.random.Generator) -> ActorEnvironment:
    """The env the task names (a gymnasium env) or its robot backend names, with its supervisor."""
    if config.env is not None:
        return gymnasium_actor_environment(config, rng)
    if config.robot.backend == "sim":
        return sim_actor_environment(config, rng)
    return real_actor_environment(config, rng)


def _human_intervention(config: TaskConfig, env) -> HumanIntervention:
    from robot_stack.hardware.devices import make_teleop

    device = make_teleop(config.teleop, tcp_rotation=lambda: env.backend.read_state().tcp_rotation)
    env.close_with(device.close)
    return HumanIntervention(device, env.action_dim)


def decode_weights(blob: bytes | bytearray) -> dict[str, torch.Tensor]:
    """The link's ``prepare_weights``: runs in the link thread, so the loop only swaps.
    The link reassembles chunks into a bytearray, which safetensors does not take."""
    return safetensors.torch.load(bytes(blob))


def build_policy(agent: AgentConfig, observation_spec: dict, env_action_dim: int, binary_gripper: bool):
    from robot_stack.policy import Policy

    return Policy.build(agent, observation_spec, env_action_dim, binary_gripper)


def lead_over_training(progress: TrainingProgress, steps_not_counted: int, updates_per_env_step: float) -> float:
    """How many env steps the actors have collected beyond those the learner's updates cover, as
    one actor can tell:

        lead = learner env steps + this actor's steps not in them - learner updates / updates_per_env_step

    ``progress`` is what the learner published with its latest weights: the env steps it had
    received from all actors and its updates, both summed over its restarts (its checkpoint keeps
    them), so the rule holds for N actors and after a restart of either side. ``steps_not_counted``:
    what this actor sent after it received those weights (a restarted actor has sent nothing yet).
    Each actor waits while this exceeds ``actor.sim_max_lead_env_steps``, so all of them together
    lead by at most that limit plus what the others sent that the learner had not counted yet."""
    return progress.env_steps + steps_not_counted - progress.updates / updates_per_env_step


@dataclass
class ActorSummary:
    actor_id: str
    env_steps: int = 0
    episodes: int = 0
    successes: int = 0
    intervention_steps: int = 0
    env_steps_discarded: int = 0  # steps of episodes the operator discarded (never sent)
    nonfinite_actions: int = 0
    weights_version: int = -1
    weights_taken: int = 0
    weights_rejected: int = 0
    last_seq: int = -1
    delivered: bool = False  # the learner received everything up to last_seq before the exit
    wall_time_s: float = 0.0
    timing: Optional[LoopTiming] = None
    inference_p50_ms: float = math.nan
    inference_p99_ms: float = math.nan
    recent_episodes: deque = field(default_factory=lambda: deque(maxlen=20))  # (success, length, intervention steps)


@dataclass
class StepOutcome:
    """What one actor step did. ``action`` is the one sent to the env: the policy's, or the
    teleoperator's when ``intervened``, held (zeros) if it was not finite."""

    observation: dict
    action: np.ndarray
    reward: float
    next_observation: dict
    terminated: bool
    truncated: bool
    info: dict
    intervened: bool
    gripper_changed: bool
    binary_gripper: bool
    inference_s: float  # the policy's time to act

    @property
    def episode_over(self) -> bool:
        return self.terminated or self.truncated

    def transition(self, cut_short: bool = False) -> dict[str, np.ndarray]:
        """The transition for the learner. ``cut_short``: a stop ends the episode at this step;
        it is marked truncated (which bootstraps), so the stream stays consistent when the
        actor comes back on it."""
        return make_transition(
            self.observation, self.action, self.reward, self.next_observation, self.terminated,
            self.truncated or cut_short,
            intervention=self.intervened, gripper_changed=self.gripper_changed, binary_gripper=self.binary_gripper,
        )


class ActorStepper:
    """The actor's step, without the transport, pacing or reports around it:

        policy action (a non-finite one held and counted) -> the teleoperator may replace it
        (not in a deterministic episode) -> env.step -> what the transition needs, including
        whether the gripper changed state

    and the bookkeeping of the episode in progress (return, length, intervention steps). The
    actor process runs it between its rate limiter and its link; an in-process loop can run
    it directly.
    """

    def __init__(self, env, intervention: Optional[Intervention], policy, rng: np.random.Generator):
        self.env = env
        self.intervention = intervention
        self.policy = policy
        self.rng = rng  # the policy's exploration noise
        self.env_steps = 0  # over all episodes; the teleoperator's schedule follows it
        self.nonfinite_actions = 0
        self.observation: Optional[dict] = None
        self.closed = False  # the gripper, as the last step left it
        self.episode_return, self.episode_length, self.episode_interventions = 0.0, 0, 0

    def reset(self, seed: Optional[int] = None) -> dict:
        """Start an episode; returns the reset's info. Seed once: later episodes continue the
        env's own random stream."""
        observation, info = self.env.reset(seed=seed) if seed is not None else self.env.reset()
        if self.intervention is not None:
            self.intervention.reset()
        self.observation, self.closed = observation, gripper_closed_after_reset(self.env, info)
        self.episode_return, self.episode_length, self.episode_interventions = 0.0, 0, 0
        return info

    def step(self, deterministic: bool = False) -> StepOutcome:
        observation = self.observation
        started = time.perf_counter()
        action = self.policy.act(observation, deterministic=deterministic, rng=self.rng)
        inference_s = time.perf_counter() - started
        action, held = hold_if_nonfinite(action)
        if held:
            self._count_nonfinite("policy")
        intervene = self.intervention is not None and not deterministic
        override = self.intervention.decide(observation, action, self.env_steps) if intervene else None
        if override is not None:
            action, held = hold_if_nonfinite(override)
            if held:
                self._count_nonfinite("teleop")
        next_observation, reward, terminated, truncated, info = self.env.step(action)

        self.env_steps += 1
        self.episode_length += 1
        self.episode_return += float(reward)
        self.episode_interventions += override is not None
        now_closed = bool(info.get("gripper_closed", self.closed))
        outcome = StepOutcome(
            observation, action, reward, next_observation, terminated, truncated, info,
            intervened=override is not None, gripper_changed=now_closed != self.closed,
            binary_gripper=self.env.binary_gripper, inference_s=inference_s,
        )
        self.closed, self.observation = now_closed, next_observation
        return outcome

    def _count_nonfinite(self, source: str) -> None:
        self.nonfinite_actions += 1
        count = self.nonfinite_actions
        if count <= 10 or count % 1000 == 0:
            log.warning("%s gave a non-finite action (%d so far); holding the robot for this step", source, count)


def run_actor(
    config: TaskConfig,
    actor_id: str,
    stop: threading.Event,
    *,
    policy_factory: Optional[PolicyFactory] = None,
    env_factory: Optional[EnvFactory] = None,
    max_env_steps: Optional[int] = None,
    seed: int = 0,
    status_path: Optional[Path] = None,
    outbox_dir: Optional[Path] = None,
    console: Optional[OperatorConsole] = None,
    dataset_dir: Optional[Path] = None,
) -> ActorSummary:
    """Run the actor until ``stop`` is set (e.g. by a SIGINT handler, or the operator's stop
    command) or ``max_env_steps``.

    ``console``: where operator commands arrive (a ROS node passes its own, to attach its
    services); by default the actor makes one, logging to ``operator.csv`` in the session's log
    dir, and serves the live page when ``actor.console.web`` is on. ``dataset_dir``: record
    every episode kept (sent to the learner) there as a LeRobotDataset v3 (appending to what
    is there); None: no recording (``dataset_path`` gives the run's folder).

    On the way out it finishes the current step, sends what is pending, waits up to
    ``actor.stop_timeout_s`` for the learner to have received it and saved it in a checkpoint
    (the outbox keeps anything the learner's checkpoints do not hold), and closes the link
    and the env. Raises LinkRefused if the learner refuses
    this actor (wrong task, spec or key).
    """
    rng = np.random.default_rng(seed)
    if console is None:
        log_dir = config.session.log_dir
        console = OperatorConsole(Path(log_dir) / "operator.csv" if log_dir else None, config.task.name, actor_id)
    environment = (env_factory or actor_environment)(config, np.random.default_rng([seed, 1]))
    env = environment.env
    observation_spec, action_spec = env_spec(env)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.actor.torch_threads)
    link = live_view = recorder = None
    try:
        policy = (policy_factory or build_policy)(config.agent, observation_spec, env.action_dim, env.binary_gripper)
        if dataset_dir is not None:
            recorder = _episode_recorder(config, Path(dataset_dir), observation_spec, action_spec)
        link = ActorLink(
            config.session, actor_id, config.task.name, observation_spec, action_spec,
            outbox_dir=outbox_dir, prepare_weights=decode_weights,
        ).start()
        live_view = start_live_view(config, console)
        loop = _ActorLoop(config, actor_id, env, environment.intervention, policy, link, rng, status_path, console,
                          console_url=live_view.url if live_view is not None else None, recorder=recorder)
        return loop.run(stop, max_env_steps, seed)
    finally:
        if live_view is not None:
            live_view.stop()
        if recorder is not None:
            try:
                recorder.close()
            except RuntimeError as error:  # the episodes are with the learner; only the dataset copy failed
                log.error("the session dataset %s stopped at its last complete flush: %s", recorder.root, error)
        if link is not None:
            link.close()
        env.close()
        torch.set_num_threads(previous_threads)


def dataset_path(config: TaskConfig, actor_id: str) -> Optional[Path]:
    """Where this actor records its episodes (``actor.record_dataset``): run_dir/dataset/<actor id>."""
    if not config.actor.record_dataset or config.session.run_dir is None:
        return None
    from robot_stack.run_dir import RunPaths

    return RunPaths.under(Path(config.session.run_dir)).actor_dataset(actor_id)


def _episode_recorder(config: TaskConfig, root: Path, observation_spec, action_spec):
    from robot_stack.data.session_dataset import EpisodeRecorder
    from robot_stack.data.spec import vector_names

    return EpisodeRecorder(root, config.task.name, observation_spec, action_spec,
                           fps=config.task.control_rate_hz, **vector_names(config))


def start_live_view(config: TaskConfig, console: OperatorConsole):
    """The console's live page (actor/live_view.py), or None when it is off or cannot be served
    (the actor runs on without it: the page is for people, the robot does not need it)."""
    settings = config.actor.console
    if not settings.web:
        return None
    try:
        from actor.live_view import LiveViewError, LiveViewServer
    except ImportError as error:
        log.warning("live page off: %s", error)
        return None
    # Another session's page (or anything else) may have the configured port: then a free one.
    for port in dict.fromkeys((settings.web_port, 0)):
        server = LiveViewServer(console, settings.web_host, port)
        try:
            server.start()
            break
        except LiveViewError as error:
            log.warning("%s%s", error, "; serving it on a free port instead" if port else "")
    else:
        log.error("live page off")
        return None
    log.info("live page: %s", server.url)
    return server


class _ActorLoop:
    def __init__(self, config, actor_id, env, intervention, policy, link: ActorLink, rng, status_path,
                 console: OperatorConsole, console_url: Optional[str] = None, recorder=None):
        self.config = config
        self.recorder = recorder  # EpisodeRecorder of the session dataset, or None
        self.policy = policy
        self.link = link
        self.console = console
        self.console_url = console_url
        self.buttons = ButtonCommands(getattr(intervention, "device", None), config.teleop, console)
        self.status_path = Path(status_path) if status_path is not None else None
        if self.status_path is not None:
            self.status_path.parent.mkdir(parents=True, exist_ok=True)
        rate_locked = config.actor.rate_locked
        if rate_locked is None:
            rate_locked = not config.simulated
        self.rate = RateLimiter(config.task.control_rate_hz if rate_locked else None)
        # A free-running simulated actor would outrun a slower learner and collect its data
        # with ever staler policies; it keeps within sim_max_lead_env_steps of training instead.
        self.paced = not rate_locked and config.simulated
        self.paced_wait_s = 0.0
        # What the learner said with its latest weights and when they arrived (time.monotonic());
        # before any weights, or from a learner that does not say: its weights version counts its
        # updates and this actor's own steps stand for everything it received.
        self.training_progress = TrainingProgress(env_steps=0, updates=0)
        self.progress_received_at = -math.inf
        self.steps_sent = 0  # transitions this actor has sent since it started
        # (when, steps_sent after it), one per episode sent; those before the latest progress
        # arrived are dropped as it is read, so only a learner that never says keeps it filling.
        self.sends: deque[tuple[float, int]] = deque(maxlen=4096)
        self.steps_sent_counted = 0  # steps_sent at the last send before progress_received_at
        self.episode = TransitionBuffer()  # the episode in progress: sent when it ends
        self.inference_s: deque[float] = deque(maxlen=10_000)
        self.steps = ActorStepper(env, intervention, policy, rng)
        self.spec = env_spec(env)
        self.summary = ActorSummary(actor_id)
        self.summary.recent_episodes = deque(maxlen=config.training.success_window_episodes)
        self.paused = False
        self.deterministic = False
        self.last_info: dict = {}  # the info of the episode's latest step
        self.stopped_by: Optional[str] = None  # the source of an operator's stop command

    def run(self, stop: threading.Event, max_env_steps: Optional[int], seed: int) -> ActorSummary:
        try:
            return self._run(stop, max_env_steps, seed)
        except Exception as error:
            self.console.set_state("failed", error=f"{type(error).__name__}: {error}")
            self._write_status("failed", f"{type(error).__name__}: {error}")
            raise
        finally:
            gc.unfreeze()

    def _run(self, stop: threading.Event, max_env_steps: Optional[int], seed: int) -> ActorSummary:
        s, actor = self.summary, self.config.actor
        start = time.monotonic()
        self.next_stats = start + actor.stats_every_s
        self.next_status = start
        steps = self.steps
        self._reset(seed)
        # Python's full garbage collection scans every object the process holds (torch,
        # MuJoCo, the config): in a loaded actor it paused a control step for up to 150 ms.
        # What exists now is frozen out of it, and the rest is collected at each reset, where
        # no control period runs.
        gc.collect()
        gc.freeze()
        self.deterministic = self._deterministic_episode()
        self._write_status("running")
        self.console.set_state("running")
        while True:
            self.rate.wait()
            self._take_weights()
            if self.paced:
                self._keep_pace(stop)
            self._operate(stop)
            if stop.is_set():
                # No step after a stop (the arm stays where the stop found it): the episode in
                # progress ends at its last step, cut short; at an episode boundary (a stop from
                # a pause, or right after a reset) an empty last batch asks for the checkpoint.
                if self.steps.episode_length > 0:
                    self.episode.amend_last(truncated=np.bool_(True))
                    self._finish_episode(bool(self.last_info.get("success", False)), final=True)
                else:
                    self._send_empty_final()
                break

            step = steps.step(self.deterministic)
            self.inference_s.append(step.inference_s)
            s.env_steps, s.nonfinite_actions = steps.env_steps, steps.nonfinite_actions
            stopping = stop.is_set() or (max_env_steps is not None and s.env_steps >= max_env_steps)
            self.episode.add(step.transition(cut_short=stopping and not step.episode_over))
            self.last_info = step.info
            self._show(step)
            if step.episode_over or stopping:
                self._finish_episode(bool(step.info.get("success", False)), final=stopping)
            if stopping:
                break
            if step.episode_over:
                self._reset(None)
            self._report()
        self.console.set_state("stopping")
        self._send_stats()
        self._drain(actor.stop_timeout_s)
        s.wall_time_s = time.monotonic() - start
        self._write_status("stopped")
        self.console.set_state("stopped")
        return s

    def _report(self) -> None:
        now = time.monotonic()
        if now >= self.next_stats:
            self._send_stats()
            self.next_stats = now + self.config.actor.stats_every_s
        if self.status_path is not None and now >= self.next_status:
            self._write_status("paused" if self.paused else "running")
            self.next_status = now + STATUS_EVERY_S

    # ------------------------------------------------------------------ operator commands

    def _operate(self, stop: threading.Event) -> None:
        """Apply the operator's commands; while paused, wait here (the arm holds its target),
        taking weights, reports and commands, until resumed or stopped."""
        while True:
            self.buttons.poll()
            for request in self.console.take():
                self._apply(request, stop)
            if not self.paused or stop.is_set():
                break
            time.sleep(0.05)
            self._take_weights()
            self._report()
        if self.paused and stop.is_set():
            self.paused = False
            self.rate.restart()

    def _apply(self, request: Request, stop: threading.Event) -> None:
        command, steps = request.command, self.steps
        episode, episode_step = self.summary.episodes, steps.episode_length
        if command == "toggle_pause":
            command = "resume" if self.paused else "pause"
        if command == "pause":
            outcome = "already paused" if self.paused else "paused: the arm holds its target"
            self.paused = True
            self.console.set_state("paused")
            self._write_status("paused")
        elif command == "resume":
            outcome = "resumed" if self.paused else "not paused"
            if self.paused:
                self.paused = False
                self.rate.restart()  # the pause is neither a control period nor an overrun
                self.console.set_state("running")
                self._write_status("running")
        elif command == "stop":
            outcome = "stopping"
            self.stopped_by = request.source
            stop.set()
        elif command in ("success", "failure"):
            if episode_step == 0:
                outcome = "refused: no step taken in this episode yet"
            else:
                success = command == "success"
                # The episode ends at its last step with the operator's label: the reward
                # detector's answer for that step is replaced, and nothing follows it.
                self.episode.amend_last(**{REWARD_KEY: np.float32(1.0 if success else 0.0)},
                                        terminated=np.bool_(True), truncated=np.bool_(False))
                self._finish_episode(success, label="operator")
                outcome = f"episode {episode} ended: {command} (operator label, {episode_step} steps)"
                self._reset(None)
        elif command == "reset":
            if episode_step == 0:
                outcome = "reset (no step taken in this episode yet)"
            else:
                # Cut short, not failed: the data is good, and its last state bootstraps.
                self.episode.amend_last(truncated=np.bool_(True))
                self._finish_episode(bool(self.last_info.get("success", False)))
                outcome = f"episode {episode} ended: reset requested ({episode_step} steps kept)"
            self._reset(None)
        elif command == "rerecord":
            dropped = len(self.episode)
            self.episode.take()
            self.summary.env_steps_discarded += dropped
            outcome = f"episode {episode} discarded ({dropped} steps never sent) and recorded again"
            self._reset(None)
        else:  # the console refuses unknown commands; this is a command added there but not here
            outcome = "refused: this actor does not know the command"
        self.console.record(request, episode, episode_step, self.summary.env_steps, outcome)
        self.link.send_event(f"operator_{request.command}", {"episode": episode, "episode_step": episode_step})

    def _show(self, step: StepOutcome) -> None:
        """The step as the live page shows it."""
        images = step.next_observation.get("images") if isinstance(step.next_observation, dict) else None
        self.console.observe_step(
            images=images or None,
            episode=self.summary.episodes,
            episode_step=self.steps.episode_length,
            env_steps=self.summary.env_steps,
            intervening=step.intervened,
            episode_interventions=self.steps.episode_interventions,
            reward=float(step.reward),
            episode_return=self.steps.episode_return,
            success_probability=step.info.get("success_probability"),
            weights_version=self.summary.weights_version,
            deterministic=self.deterministic,
        )

    # ------------------------------------------------------------------ pieces of a step

    def _reset(self, seed: Optional[int]) -> None:
        self.console.set_state("resetting" if not self.paused else "paused")
        self.steps.reset(seed)
        self.last_info = {}
        if not self.paused:
            self.console.set_state("running")
        gc.collect()  # between episodes, not in the middle of one
        self.rate.restart()  # a reset is neither a control period nor an overrun

    def _take_weights(self) -> None:
        update = self.link.latest_weights()
        if update is None:
            return
        # Training got this far whether or not this policy can load the weights.
        if update.progress is not None:
            self.training_progress, self.progress_received_at = update.progress, update.received_time
        else:
            self.training_progress, self.progress_received_at = TrainingProgress(env_steps=0, updates=update.version), -math.inf
        try:
            self.policy.load_weights(update.prepared)
        except Exception as error:  # a version our policy cannot take: keep acting with the old one
            self.summary.weights_rejected += 1
            log.error("weights version %d not loaded, keeping version %d: %s", update.version, self.summary.weights_version, error)
            return
        self.summary.weights_version = update.version
        self.summary.weights_taken += 1

    def _keep_pace(self, stop: threading.Event) -> None:
        """Wait while the actors lead training by more than ``sim_max_lead_env_steps``
        (``lead_over_training``). Only between episodes: the learner gets an episode when it ends,
        so a wait inside one could wait for training on the very steps it holds back."""
        if self.steps.episode_length > 0:
            return
        utd = self.config.training.updates_per_env_step
        lead_limit = self.config.actor.sim_max_lead_env_steps
        started = time.monotonic()
        while (not stop.is_set() and not self.console.has_pending()
               and lead_over_training(self.training_progress, self._steps_not_counted(), utd) > lead_limit):
            time.sleep(0.002)
            self._take_weights()
            self._report()  # a wait may be long (a restarted learner catching up): status and stats go on
        self.paced_wait_s += time.monotonic() - started

    def _steps_not_counted(self) -> int:
        """This actor's steps sent after the learner's latest progress arrived: the learner had not
        counted them when it published it. (Steps sent earlier and still on their way are taken as
        counted; an episode at most.)"""
        while self.sends and self.sends[0][0] <= self.progress_received_at:
            self.steps_sent_counted = self.sends.popleft()[1]
        if self.progress_received_at == -math.inf:
            return self.steps_sent
        return self.steps_sent - self.steps_sent_counted

    def _deterministic_episode(self) -> bool:
        """Whether the coming episode is one of the every-Nth deterministic ones (the policy's
        mean action, nobody intervening: what an evaluation runs)."""
        every = self.config.actor.deterministic_every_episodes
        return every > 0 and (self.summary.episodes + 1) % every == 0

    def _finish_episode(self, success: bool, label: str = "detector", final: bool = False) -> None:
        """Count the episode in progress, send it whole (its end riding in its last batch) and
        start the next one's bookkeeping. ``final``: the actor stops after it."""
        steps = self.steps
        detail = self._end_episode(
            success, steps.episode_return, steps.episode_length, steps.episode_interventions,
            true_success=self.last_info.get("true_success"), deterministic=self.deterministic, label=label,
        )
        self.console.observe_episode(detail)
        self._send_episode(detail, final=final)
        self.summary.intervention_steps += steps.episode_interventions
        self.deterministic = self._deterministic_episode()

    def _send_episode(self, episode_end: Optional[dict], final: bool = False) -> None:
        """The episode's transitions in messages of ``actor.send_every_steps``; the last carries
        the episode's end (and ``final`` before a stop). The same episode goes to the dataset."""
        batch = self.episode.take()
        if self.recorder is not None and batch and episode_end is not None:
            try:
                self.recorder.add_episode(batch, episode_end)
            except (ValueError, RuntimeError) as error:  # the learner still gets it; only the copy is missing
                log.error("episode %s not recorded in %s: %s", episode_end.get("episode"), self.recorder.root, error)
        total = len(batch[next(iter(batch))]) if batch else 0
        size = self.config.actor.send_every_steps
        for first in range(0, total, size):
            last = first + size >= total
            info: dict[str, Any] = {"episode": self.summary.episodes - (episode_end is not None),
                                    "weights_version": self.summary.weights_version}
            if last and episode_end is not None:
                info["episode"], info["episode_end"] = episode_end["episode"], episode_end
            if last and final:
                info["final"] = True
            self.summary.last_seq = self.link.send({k: v[first:first + size] for k, v in batch.items()}, info)
        if total:
            self.steps_sent += total
            self.sends.append((time.monotonic(), self.steps_sent))

    def _send_empty_final(self) -> None:
        spec = transition_batch_spec(*self.spec)
        empty = {key: np.zeros((0, *array.shape), array.dtype) for key, array in spec.items()}
        self.summary.last_seq = self.link.send(empty, {"episode": self.summary.episodes,
                                                       "weights_version": self.summary.weights_version, "final": True})

    def _end_episode(self, success: bool, episode_return: float, length: int, interventions: int,
                     true_success: Optional[float] = None, deterministic: bool = False,
                     label: str = "detector") -> dict:
        """Count a finished episode; returns what the learner is told about it. ``label``: who
        said whether it succeeded, the reward detector (or the simulator) or the operator."""
        s = self.summary
        # With a learned reward in simulation, the simulator's own answer rides along
        # (true_success) so curves and evaluations can be read against the truth.
        extra = {} if true_success is None else {"true_success": int(bool(true_success))}
        detail = {
            **extra,
            "episode": s.episodes,
            "return": episode_return,
            "length": length,
            "success": int(success),
            "intervention_steps": interventions,
            "intervened": int(interventions > 0),
            "deterministic": int(deterministic),
            "env_steps_total": s.env_steps,
            "weights_version": s.weights_version,
            "label": label,
        }
        s.episodes += 1
        s.successes += int(success)
        s.recent_episodes.append((success, length, interventions))
        return detail

    def _send_stats(self) -> None:
        s = self.summary
        timing = self.rate.report(reset=True)
        if timing.steps or s.timing is None:  # an empty window (a stop right after a report) keeps the last figures
            s.timing = timing
            s.inference_p50_ms = percentile_ms(self.inference_s, 50)
            s.inference_p99_ms = percentile_ms(self.inference_s, 99)
        self.inference_s.clear()
        status = self.link.status()
        values = {
            "jitter_p50_ms": s.timing.jitter_p50_ms,
            "jitter_p99_ms": s.timing.jitter_p99_ms,
            "jitter_max_ms": s.timing.jitter_max_ms,
            "loop_hz": s.timing.loop_hz,
            "step_p50_ms": s.timing.period_p50_ms,
            "step_p99_ms": s.timing.period_p99_ms,
            "overruns": s.timing.overruns,
            "rate_locked": int(self.rate.locked),
            "inference_p50_ms": s.inference_p50_ms,
            "inference_p99_ms": s.inference_p99_ms,
            "env_steps": s.env_steps,
            "episodes": s.episodes,
            "intervention_steps": s.intervention_steps,
            "nonfinite_actions": s.nonfinite_actions,
            "weights_version": s.weights_version,
            "weights_taken": s.weights_taken,
            "weights_rejected": s.weights_rejected,
            "outbox_batches": status.outbox.get("unreleased_batches", 0),
            "paced_wait_s": round(self.paced_wait_s, 3),
        }
        # None, not NaN, for a figure with nothing measured yet: the learner logs it as missing.
        self.link.send_stats({k: None if isinstance(v, float) and math.isnan(v) else v for k, v in values.items()})

    def _drain(self, timeout_s: float) -> None:
        """Wait (bounded) for the learner to have received the last batch sent, and to have
        saved it in a checkpoint (the final batch asks for one): a clean stop leaves nothing
        in the outbox that the learner holds, so nothing is replayed into a later learner."""
        s = self.summary
        deadline = time.monotonic() + timeout_s
        try:
            if not self.link.wait_received(s.last_seq, timeout_s):
                log.warning(
                    "stopping with batches %d..%d not yet received by the learner; they stay in the outbox",
                    self.link.status().received_seq + 1, s.last_seq,
                )
            elif not self.link.wait_committed(s.last_seq, max(0.0, deadline - time.monotonic())):
                log.warning(
                    "stopping before the learner checkpointed batches %d..%d; they stay in the outbox, and the "
                    "learner drops them as duplicates if its checkpoint holds them when this actor returns",
                    self.link.status().committed_seq + 1, s.last_seq,
                )
        except LinkRefused:
            pass  # already reported; the batches stay in the outbox
        s.delivered = self.link.status().received_seq >= s.last_seq
        if self.link.status().connected:
            # The link thread sends stats and events on its next turn; give it that turn
            # before close() stops it (ActorLink has no flush of reports).
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def _write_status(self, state: str, error: Optional[str] = None) -> None:
        if self.status_path is None:
            return
        s = self.summary
        recent = list(s.recent_episodes)
        recent_steps = sum(length for _, length, _ in recent)
        timing = self.rate.report()
        status = self.link.status()
        write_json_atomic(
            self.status_path,
            {
                "actor_id": s.actor_id,
                "state": state,
                "time": time.time(),
                "env_steps": s.env_steps,
                "episodes": s.episodes,
                "successes": s.successes,
                "recent_episodes": len(recent),
                "recent_success_rate": sum(ok for ok, _, _ in recent) / len(recent) if recent else None,
                "recent_intervention_rate": sum(n for _, _, n in recent) / recent_steps if recent_steps else None,
                "recent_intervened_episodes": sum(n > 0 for _, _, n in recent) / len(recent) if recent else None,
                "weights_version": s.weights_version,
                "loop_hz": timing.loop_hz if timing.steps else (s.timing.loop_hz if s.timing else None),
                "nonfinite_actions": s.nonfinite_actions,
                "connected": status.connected,
                "last_seq": s.last_seq,
                "received_seq": status.received_seq,
                "paused": self.paused,
                "env_steps_discarded": s.env_steps_discarded,
                "console_url": self.console_url,
                "stopped_by": self.stopped_by,
                "error": error,
            },
        )
