"""Demonstrations: record them with a teleoperator and keep the successful episodes as a
demo set, the format of ``robot_stack.data.demo_sets`` (which the learner loads them with).

In simulation the scripted teleoperator records the demos; for a gymnasium env, the env's
expert (``env.expert``) does. On a real robot (robot backend 'franka') a person drives the arm with the task's SpaceMouse and the task's success
detector decides which episodes are kept; a device that drops out drops the attempt, and
recording goes on once it is back. ``record_demos_with`` takes any env and teleop device.

Each kept demo also goes into a LeRobotDataset v3 copy of the set, ``<demo dir>/lerobot``,
flushed after every demo as ``demos.json`` is rewritten: a recorder killed outright leaves
both with the same finished demos. A new recording replaces the set from ``episode_000``,
and its copy with it.
"""

from __future__ import annotations

import datetime
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import safetensors.numpy
from tqdm import tqdm

from robot_stack.data.files import write_atomic, write_json_atomic
from robot_stack.data.transitions import (
    gripper_closed_after_reset,
    make_transition,
    stack_transitions,
)
from robot_stack.config.schema import TaskConfig
from robot_stack.data.demo_sets import DEMOS_FILE, LEROBOT_COPY, spec_to_json
from robot_stack.data.session_dataset import EpisodeRecorder
from robot_stack.data.spec import env_spec, vector_names
from robot_stack.envs.franka_env import action_from_reading
from robot_stack.hardware.interfaces import TeleopDisconnected

log = logging.getLogger(__name__)

ATTEMPTS_PER_EPISODE = 3
# A teleop device that drops out mid-demo has this long to come back before recording stops.
DEVICE_RETURN_TIMEOUT_S = 60.0


@dataclass
class DemoSet:
    directory: Path
    task: str
    episodes: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    requested: int = 0
    interrupted: bool = False  # Ctrl-C stopped recording; the episodes finished before it are kept

    @property
    def transitions(self) -> int:
        return sum(episode["length"] for episode in self.episodes)


def record_demos(config: TaskConfig, episodes: int, out_dir: Path, seed: int = 0, progress: bool = True) -> DemoSet:
    """Record ``episodes`` successful episodes of a simulated task with the scripted
    teleoperator (its noise from ``config.teleop.expert_noise_std``) into ``out_dir``."""
    from robot_stack.envs.factory import make_sim_env
    from robot_stack.sim.teleop import ScriptedTeleop

    if config.env is not None:
        return _record_gymnasium_demos(config, episodes, out_dir, seed, progress)
    if config.robot.backend != "sim":
        return _record_real_demos(config, episodes, out_dir, seed, progress)
    teleop_config = config.teleop
    if teleop_config.kind != "scripted":
        # In simulation the scripted teleoperator is the demonstrator whatever device the task names.
        teleop_config = teleop_config.model_copy(update={"kind": "scripted"})
    sim = make_sim_env(config)
    teleop = ScriptedTeleop(sim.expert, sim.backend, teleop_config, np.random.default_rng(seed + 1_000_003))
    try:
        with start_dataset_copy(config, sim.env, out_dir) as dataset:
            return record_demos_with(sim.env, teleop, config.task.name, episodes, out_dir, seed=seed, progress=progress,
                                     object_frame=config.task.observation.object_frame,
                                     dataset=dataset)
    finally:
        sim.env.close()


def start_dataset_copy(config: TaskConfig, env, out_dir: Path) -> EpisodeRecorder:
    """The LeRobot copy of a demo set about to be recorded into ``out_dir`` (an older copy is
    removed: the new set replaces the old one's files too)."""
    copy = Path(out_dir) / LEROBOT_COPY
    if copy.exists():
        shutil.rmtree(copy)
    observation_spec, action_spec = env_spec(env)
    return EpisodeRecorder(copy, config.task.name, observation_spec, action_spec, config.task.control_rate_hz,
                           flush_every_episodes=1, **vector_names(config))


def _record_gymnasium_demos(config: TaskConfig, episodes: int, out_dir: Path, seed: int, progress: bool) -> DemoSet:
    """The gymnasium env's expert demonstrates (its noise from ``config.teleop.expert_noise_std``),
    or, without one, the person behind ``env.teleop`` drives every step."""
    from robot_stack.envs.gymnasium_env import (ExpertTeleop, InterventionDemonstrator, make_expert, make_gymnasium_env,
                                                make_intervention_source)

    if config.env.expert is None and config.env.teleop is None:
        raise ValueError(f"task '{config.task.name}' names neither env.expert nor env.teleop: nobody to record demos of a gymnasium env")
    env = make_gymnasium_env(config)
    try:
        rng = np.random.default_rng(seed + 1_000_003)
        if config.env.expert is not None:
            teleop = ExpertTeleop(make_expert(config, env), env, config.teleop, rng)
        else:
            teleop = InterventionDemonstrator(make_intervention_source(config, env, rng), env)
        with start_dataset_copy(config, env, out_dir) as dataset:
            return record_demos_with(env, teleop, config.task.name, episodes, out_dir, seed=seed, progress=progress,
                                     dataset=dataset)
    finally:
        env.close()


def _record_real_demos(config: TaskConfig, episodes: int, out_dir: Path, seed: int, progress: bool) -> DemoSet:
    """A person drives the real arm with the task's SpaceMouse; the task's success detector
    decides which episodes are kept."""
    from robot_stack.envs.factory import make_real_env
    from robot_stack.hardware.devices import make_teleop

    if config.teleop.kind == "none":
        raise ValueError(f"task '{config.task.name}' names no teleop device: demos on a real robot need a SpaceMouse")
    env = make_real_env(config)
    try:
        device = make_teleop(config.teleop, tcp_rotation=lambda: env.backend.read_state().tcp_rotation)
        env.close_with(device.close)
        with start_dataset_copy(config, env, out_dir) as dataset:
            return record_demos_with(env, device, config.task.name, episodes, out_dir, seed=seed, progress=progress,
                                     object_frame=config.task.observation.object_frame,
                                     dataset=dataset)
    finally:
        env.close()


def record_demos_with(
    env,
    device,
    task_name: str,
    episodes: int,
    out_dir: Path,
    seed: int = 0,
    progress: bool = True,
    max_attempts: Optional[int] = None,
    dataset: Optional[EpisodeRecorder] = None,
    object_frame: Optional[str] = None,
) -> DemoSet:
    """Record with any env and teleop device (``read()``: a TeleopCommand or the env action;
    ``reset()`` if it has one); each kept demo also goes to ``dataset`` (``start_dataset_copy``),
    which the caller closes. Episodes that do not end in success are dropped; after ``max_attempts``
    (default 3 per wanted episode) without enough successes it raises. Ctrl-C stops recording:
    the episode under way is dropped, the finished ones are kept as a (smaller) demo set and
    the returned set says ``interrupted``."""
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}")
    max_attempts = max_attempts if max_attempts is not None else ATTEMPTS_PER_EPISODE * episodes
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # An older set is incomplete from the moment its files start being replaced.
    (out_dir / DEMOS_FILE).unlink(missing_ok=True)
    observation_spec, action_spec = env_spec(env)
    demos = DemoSet(out_dir, task_name, requested=episodes)
    bar = tqdm(total=episodes, desc=f"demos {task_name}", unit="ep", disable=not progress, dynamic_ncols=True)
    try:
        while len(demos.episodes) < episodes:
            if demos.attempts >= max_attempts:
                raise RuntimeError(
                    f"only {len(demos.episodes)} of {demos.attempts} demo episodes of '{task_name}' succeeded; "
                    f"{episodes} successes were asked for within {max_attempts} attempts (is the teleoperator's "
                    "noise too high, or the task unreachable?)"
                )
            episode_seed = seed + demos.attempts
            demos.attempts += 1
            try:
                batch, success = _record_episode(env, device, episode_seed)
            except TeleopDisconnected as error:
                log.error("demo attempt with seed %d dropped: %s", episode_seed, error)
                _wait_for_device(device, DEVICE_RETURN_TIMEOUT_S)
                continue
            if not success:
                log.info("demo attempt with seed %d did not succeed; dropped", episode_seed)
                continue
            name = f"episode_{len(demos.episodes):03d}.safetensors"
            write_atomic(out_dir / name, lambda path: safetensors.numpy.save_file(batch, str(path)))
            demos.episodes.append(
                {"file": name, "seed": episode_seed, "length": int(batch["rewards"].shape[0]), "return": float(batch["rewards"].sum())}
            )
            if dataset is not None:
                dataset.add_episode(batch, _demo_outcome(len(demos.episodes) - 1, demos.episodes[-1]))
            if len(demos.episodes) < episodes:
                # The set so far, marked unfinished: a recorder killed outright (its session
                # gone) still leaves the demos it finished as a valid, smaller set.
                _write_meta(demos, out_dir, task_name, observation_spec, action_spec, seed, object_frame, unfinished=True)
            bar.update(1)
            bar.set_postfix(attempts=demos.attempts)
    except KeyboardInterrupt:
        # An operator stopping a long recording keeps what was already demonstrated.
        demos.interrupted = True
    finally:
        bar.close()
    if not demos.episodes:
        return demos  # nothing finished: no demo set, rather than an empty one
    _write_meta(demos, out_dir, task_name, observation_spec, action_spec, seed, object_frame)
    return demos


def _demo_outcome(number: int, episode: dict[str, Any]) -> dict[str, Any]:
    """A kept demo as an actor reports an episode: a success (the env's success detector kept
    it), every step the teleoperator's, no policy weights behind it."""
    return {"episode": number, "success": 1, "label": "detector", "deterministic": 0, "intervention_steps": episode["length"],
            "weights_version": -1, "return": episode["return"], "length": episode["length"], "seed": episode["seed"]}


def _write_meta(demos: DemoSet, out_dir: Path, task_name: str, observation_spec, action_spec, seed: int,
                object_frame: Optional[str] = None, unfinished: bool = False) -> None:
    # The object's frame does not show in the spec (same shape either way), yet demos of one
    # frame teach a policy of the other the wrong offsets: the learner checks it.
    extra = {} if object_frame is None else {"object_frame": object_frame}
    write_json_atomic(
        out_dir / DEMOS_FILE,
        {
            **extra,
            "task": task_name,
            "observation_spec": spec_to_json(observation_spec),
            "action_spec": spec_to_json(action_spec),
            "episodes": demos.episodes,
            "transitions": demos.transitions,
            "attempts": demos.attempts,
            "requested": demos.requested,
            "interrupted": demos.interrupted or unfinished,
            "success_rate": len(demos.episodes) / demos.attempts,
            "seed": seed,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
    )


def _wait_for_device(device, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            device.read()
            return
        except TeleopDisconnected as error:
            if time.monotonic() > deadline:
                raise TeleopDisconnected(f"the teleop device did not come back within {timeout_s:.0f} s: {error}") from error
            time.sleep(0.5)


def _record_episode(env, device, seed: int) -> tuple[dict[str, np.ndarray], bool]:
    observation, info = env.reset(seed=seed)
    if hasattr(device, "reset"):
        device.reset()
    closed = gripper_closed_after_reset(env, info)
    transitions = []
    done = False
    while not done:
        action = action_from_reading(device.read(), env.action_dim)
        next_observation, reward, terminated, truncated, info = env.step(action)
        # An env without a binary gripper need not report it: its gripper never changes state.
        now_closed = bool(info.get("gripper_closed", closed))
        transitions.append(
            make_transition(
                observation, action, reward, next_observation, terminated, truncated,
                intervention=True, gripper_changed=now_closed != closed,
                binary_gripper=env.binary_gripper,
            )
        )
        closed = now_closed
        observation = next_observation
        done = terminated or truncated
    return stack_transitions(transitions), bool(info["success"])
