"""Recording labelled frames for a reward model (``robot-stack reward record``).

Every step of an episode, the frames of every configured camera are stored with a label
and the robot state. Labels come from:

- ``operator``: the person at the robot. While the teleop device's "success" button is
  held, or after the ``s`` key toggled success on (``f`` toggles it off), frames are
  successes; all others are failures. (HIL-SERL's way: the operator marks the frames in
  which the task is done.)
- ``ground_truth`` (simulation): the simulator's own success test.

``record_frames_with`` takes any env, driver and labeller, so a real robot only has to
build those. In simulation the driver mixes scripted behaviours so that the set holds the
failures a detector must not call successes:

- ``expert``: the noisy scripted teleoperator does the task and holds the success state;
- ``near_miss``: the same, but the task's progress (cube lift, peg depth) is capped short of
  success: the hard negatives (cube grasped but not high enough, peg not deep enough);
- ``wander``: smooth random motion with random gripper commands.

Collect 2-3x more failure frames than success frames (the default mixture gives about
that): a detector that has seen few near-misses calls them successes.
"""

from __future__ import annotations

import logging
import os
import select
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Protocol

import numpy as np
from tqdm import tqdm

from robot_stack.config.schema import TaskConfig
from robot_stack.envs.franka_env import action_from_teleop
from robot_stack.hardware.interfaces import TeleopCommand
from robot_stack.reward.frame_sets import FrameSetWriter, state_quantities

log = logging.getLogger(__name__)

BEHAVIOURS = ("expert", "near_miss", "wander")
DEFAULT_MIXTURE = {"expert": 0.35, "near_miss": 0.4, "wander": 0.25}


class Labeller(Protocol):
    name: str

    def reset(self) -> None: ...

    def label(self, info: Mapping[str, Any], command: Optional[TeleopCommand]) -> int:
        """1: success, 0: failure, for the frame just taken."""


class GroundTruthLabeller:
    name = "ground_truth"

    def reset(self) -> None:
        pass

    def label(self, info: Mapping[str, Any], command: Optional[TeleopCommand]) -> int:
        return int(bool(info.get("true_success", info["success"])))


class OperatorLabeller:
    """Labels from the operator: the teleop device's "success" button (held), and keys on a
    terminal (``s`` toggles success on, ``f`` back to failure), read without blocking from
    ``key_fd`` (default: none)."""

    name = "operator"

    def __init__(self, key_fd: Optional[int] = None):
        self.key_fd = key_fd
        self.toggled = False
        self.key_presses = 0

    def reset(self) -> None:
        self.toggled = False

    def _read_keys(self) -> None:
        if self.key_fd is None:
            return
        while select.select([self.key_fd], [], [], 0.0)[0]:
            data = os.read(self.key_fd, 64)
            if not data:
                self.key_fd = None  # closed
                return
            for key in data.decode(errors="ignore").lower():
                if key in "sf":
                    self.toggled = key == "s"
                    self.key_presses += 1

    def label(self, info: Mapping[str, Any], command: Optional[TeleopCommand]) -> int:
        self._read_keys()
        button = command is not None and "success" in command.buttons
        return int(button or self.toggled)


class Driver(Protocol):
    def start_episode(self, rng: np.random.Generator) -> str: ...

    def act(self, action_dim: int) -> tuple[np.ndarray, Optional[TeleopCommand]]: ...


class TeleopDriver:
    """A person (or the scripted teleoperator) drives every step with the teleop device."""

    def __init__(self, device):
        self.device = device

    def start_episode(self, rng: np.random.Generator) -> str:
        if hasattr(self.device, "reset"):
            self.device.reset()
        return "teleop"

    def act(self, action_dim: int) -> tuple[np.ndarray, Optional[TeleopCommand]]:
        command = self.device.read()
        return action_from_teleop(command, action_dim), command


class SimMixtureDriver:
    """Simulation: each episode one of ``BEHAVIOURS``, drawn from ``mixture``."""

    def __init__(self, sim, teleop, mixture: Mapping[str, float], progress_metric: str, progress_sign: float, success_level: float):
        unknown = [b for b in mixture if b not in BEHAVIOURS]
        if unknown:
            raise ValueError(f"unknown behaviours {unknown}; known: {BEHAVIOURS}")
        total = sum(mixture.values())
        if total <= 0:
            raise ValueError("the behaviour mixture needs a positive weight")
        self.sim, self.teleop = sim, teleop
        self.names = tuple(mixture)
        self.weights = np.array([mixture[b] for b in self.names], dtype=np.float64) / total
        self.metric, self.sign, self.success_level = progress_metric, progress_sign, success_level
        self.behaviour = "expert"
        self.cap = np.inf
        self._wander = np.zeros(7)
        self._rng = np.random.default_rng(0)

    def start_episode(self, rng: np.random.Generator) -> str:
        self._rng = rng
        self.behaviour = str(self.names[rng.choice(len(self.names), p=self.weights)])
        self.teleop.reset()
        self.cap = rng.uniform(0.2, 0.85) * self.success_level if self.behaviour == "near_miss" else np.inf
        self._wander = np.zeros(7)
        return self.behaviour

    def act(self, action_dim: int) -> tuple[np.ndarray, Optional[TeleopCommand]]:
        if self.behaviour == "wander":
            # Ornstein-Uhlenbeck motion: smooth, wide-ranging, with sporadic gripper flips.
            self._wander = 0.8 * self._wander + self._rng.normal(0.0, 0.35, 7)
            action = np.clip(self._wander, -1.0, 1.0)
            gripper = 1.0 if self._rng.random() < 0.5 else -1.0
            full = np.concatenate([action[:6], [gripper]])
            return _fit_action(full, action_dim), None
        command = self.teleop.read()
        action = action_from_teleop(command, action_dim)
        if self.behaviour == "near_miss":
            progress = float(self.sim.scene.status().metrics.get(self.metric, 0.0))
            if progress >= self.cap:
                # Take out the motion that makes progress (world z up for a lift, down for an
                # insertion); the rest of the expert's action stays.
                rotation = self.sim.backend.read_state().tcp_rotation
                world = rotation @ action[:3]
                if self.sign * world[2] > 0:
                    world[2] = 0.0
                    action[:3] = rotation.T @ world
        return action, command


def _fit_action(full: np.ndarray, action_dim: int) -> np.ndarray:
    """A 7-D (twist + gripper) action cut to the env's layout (3, 4, 6 or 7)."""
    twist = full[:6] if action_dim >= 6 else full[:3]
    return np.concatenate([twist, full[6:7]]) if action_dim in (4, 7) else twist


@dataclass
class RecordReport:
    directory: Path
    episodes: int
    frames: int
    counts: dict[str, int]
    behaviours: dict[str, int]

    def __str__(self) -> str:
        ratio = self.counts.get("failure", 0) / max(self.counts.get("success", 0), 1)
        return (
            f"recorded {self.frames} labelled frames from {self.episodes} episodes into {self.directory}: "
            f"{self.counts} ({ratio:.1f} failures per success); behaviours {self.behaviours}"
        )


def record_frames_with(
    env,
    cameras,
    driver: Driver,
    labeller: Labeller,
    writer: FrameSetWriter,
    episodes: int,
    seed: int = 0,
    stride: int = 1,
    progress: bool = True,
    on_step: Optional[Callable[[int, int], None]] = None,
) -> RecordReport:
    """Run ``episodes`` episodes; store every ``stride``-th step's frames (all of ``cameras``)
    with its label and state."""
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}")
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got {stride}")
    behaviours: dict[str, int] = {}
    rng = np.random.default_rng(seed)
    bar = tqdm(range(episodes), desc="record frames", unit="ep", disable=not progress, dynamic_ncols=True)
    try:
        for episode in bar:
            episode_seed = seed + episode
            _, info = env.reset(seed=episode_seed)
            behaviour = driver.start_episode(rng)
            behaviours[behaviour] = behaviours.get(behaviour, 0) + 1
            labeller.reset()
            images: dict[str, list[np.ndarray]] = {c: [] for c in cameras.names}
            labels, states, steps = [], [], []
            done, step = False, 0
            while not done:
                action, command = driver.act(env.action_dim)
                _, _, terminated, truncated, info = env.step(action)
                step += 1
                done = terminated or truncated
                label = labeller.label(info, command)
                if step % stride and not done:
                    continue
                frames = cameras.read().images
                for c in cameras.names:
                    images[c].append(frames[c])
                labels.append(label)
                states.append(state_quantities(env.backend.read_state()))
                steps.append(step)
                if on_step is not None:
                    on_step(episode, step)
            writer.add_episode({c: np.stack(v) for c, v in images.items()}, np.array(labels), np.stack(states),
                               np.array(steps), episode_seed)
            totals = {c: sum(e["counts"][c] for e in writer.episodes) for c in writer.class_names}
            bar.set_postfix(totals)
    finally:
        bar.close()
    meta = writer.finish({"behaviours": behaviours, "stride": stride, "seed": seed})
    return RecordReport(writer.directory, len(writer.episodes), meta["frames"], meta["counts"], behaviours)


PROGRESS_METRICS = {"pick_cube": ("cube_lift_m", 1.0), "peg_insertion": ("insertion_depth_m", -1.0)}


def record_frames(
    config: TaskConfig,
    episodes: int,
    out_dir: Path,
    labels: str = "ground_truth",
    seed: int = 0,
    stride: int = 1,
    mixture: Optional[Mapping[str, float]] = None,
    key_fd: Optional[int] = None,
    progress: bool = True,
) -> RecordReport:
    """Record a simulated task's labelled frames (all configured cameras)."""
    from robot_stack.envs.factory import make_sim_env
    from robot_stack.sim.cameras import SimCameras
    from robot_stack.sim.teleop import ScriptedTeleop

    if config.robot.backend != "sim":
        raise ValueError(
            f"task '{config.task.name}' runs on robot backend '{config.robot.backend}': recording on a real robot needs "
            "its env and teleop device, which this build does not drive yet; call "
            "robot_stack.reward.record.record_frames_with(env, cameras, TeleopDriver(device), OperatorLabeller(), ...)"
        )
    if labels not in ("ground_truth", "operator"):
        raise ValueError(f"labels must be 'ground_truth' or 'operator', got '{labels}'")
    task = config.task
    # Labels must not depend on a detector that is not trained yet, and the episode goes on
    # past the first success, so the set also holds the success state being held.
    recording = config.model_copy(update={"task": task.model_copy(update={
        "reward": task.reward.model_copy(update={"source": "sim_ground_truth", "terminate_on_success": False}),
        "observation": task.observation.model_copy(update={"images": ()}),
    })})
    sim = make_sim_env(recording)
    names = tuple(config.cameras.cameras)
    cameras = SimCameras(sim.world, config.cameras.cameras, names)
    teleop_config = config.teleop.model_copy(update={"kind": "scripted"})
    teleop = ScriptedTeleop(sim.expert, sim.backend, teleop_config, np.random.default_rng(seed + 7_000_003))
    kind = task.sim.scene.kind
    metric, sign = PROGRESS_METRICS[kind]
    level = task.sim.scene.success_lift_m if kind == "pick_cube" else task.sim.scene.success_depth_m
    driver = SimMixtureDriver(sim, teleop, mixture or DEFAULT_MIXTURE, metric, sign, level)
    labeller: Labeller = GroundTruthLabeller() if labels == "ground_truth" else OperatorLabeller(key_fd)
    hw = {n: tuple(config.cameras.cameras[n].output_size_hw) for n in names}
    writer = FrameSetWriter(Path(out_dir), task.name, hw, label_source=labeller.name)
    try:
        return record_frames_with(sim.env, cameras, driver, labeller, writer, episodes, seed=seed, stride=stride, progress=progress)
    finally:
        cameras.close()
        sim.env.close()
