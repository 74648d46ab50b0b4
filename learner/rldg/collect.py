"""Roll out specialists (or the scripted human-like demonstrator) in their task variants and
write the episodes as a LeRobotDataset v3 dataset, one instruction per variant; export a demo
set recorded by ``record-demos`` to the same format.

Every dataset has ``observation.state`` (named entries), ``action`` (the action the env
executed: clipped, gripper as -1/0/+1), ``next.reward``, ``next.done``, ``next.success`` and one
``observation.images.<camera>`` per recorded camera; ``rldg_collect.json`` beside ``meta/``
says where the episodes came from (source, checkpoints, attempts, success rates, seeds).
"""

from __future__ import annotations

import datetime
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from robot_stack.config.rldg import RldgExperiment, Variant
from robot_stack.config.schema import TaskConfig, TaskSpec
from robot_stack.data.files import write_json_atomic
from robot_stack.data.lerobot_v3 import DatasetWriter, camera_feature, vector_feature
from robot_stack.data.spec import NEXT_OBSERVATION_PREFIX, OBSERVATION_PREFIX, action_names, state_names
from robot_stack.data.transitions import gripper_closed_after_reset, make_transition, stack_transitions

log = logging.getLogger(__name__)

COLLECT_FILE = "rldg_collect.json"
SOURCES = ("specialists", "human_like")


def dataset_features(config: TaskConfig, cameras: Sequence[str], storage: str, codec: str) -> dict[str, dict[str, Any]]:
    features = {
        "observation.state": vector_feature(state_names(config.task)),
        "action": vector_feature(action_names(config.task)),
        "next.reward": {"dtype": "float32", "shape": [1], "names": None},
        "next.done": {"dtype": "bool", "shape": [1], "names": None},
        "next.success": {"dtype": "bool", "shape": [1], "names": None},
    }
    for name in cameras:
        height, width = config.cameras.cameras[name].output_size_hw
        features[f"observation.images.{name}"] = camera_feature(int(height), int(width), config.task.control_rate_hz, storage, codec)
    return features


def frames_from_batch(batch: dict[str, np.ndarray], cameras: Sequence[str], success: bool) -> dict[str, np.ndarray]:
    """A recorded episode's transition batch (demo file or rollout) -> the dataset's frames."""
    done = np.logical_or(batch["terminated"], batch["truncated"])
    reached = np.zeros(len(done), bool)
    reached[-1] = success
    frames = {
        "observation.state": batch[OBSERVATION_PREFIX + "state"].astype(np.float32),
        "action": batch["actions"].astype(np.float32),
        "next.reward": batch["rewards"].astype(np.float32),
        "next.done": done,
        "next.success": reached,
    }
    for name in cameras:
        key = f"{OBSERVATION_PREFIX}images/{name}"
        if key not in batch:
            raise KeyError(f"the episode has no images of camera '{name}' (has {sorted(k for k in batch if 'images/' in k)})")
        frames[f"observation.images.{name}"] = batch[key]
    return frames


@dataclass
class VariantReport:
    variant: str
    instruction: str
    kept: int
    attempts: int
    successes: int
    frames: int
    seeds: list[int]

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "success_rate": self.successes / self.attempts if self.attempts else None}


def with_cameras(variant: Variant, cameras: Sequence[str]) -> TaskConfig:
    """The variant's config with the recorded cameras rendered (a state-only specialist
    ignores them: its policy reads the state)."""
    from robot_stack.config import with_fields

    images = tuple(dict.fromkeys(tuple(variant.config.task.observation.images) + tuple(cameras)))
    unknown = [name for name in images if name not in variant.config.cameras.cameras]
    if unknown:
        raise ValueError(f"variant '{variant.name}': cameras {unknown} are not in its cameras file (has {sorted(variant.config.cameras.cameras)})")
    return with_fields(variant.config, "task.observation", images=images)


def load_specialist(variant: Variant):
    """The policy of the variant's newest complete specialist checkpoint (built for the variant's
    own observation, not for cameras recorded beside it)."""
    import safetensors.torch

    from robot_stack.data.checkpoints import CheckpointStore
    from robot_stack.data.spec import env_action_dim, observation_spec
    from robot_stack.policy import Policy

    complete = CheckpointStore(variant.specialist).complete() if variant.specialist.is_dir() else []
    if not complete:
        raise FileNotFoundError(
            f"variant '{variant.name}' has no specialist checkpoint under {variant.specialist}: "
            "train it with `robot-stack rldg specialists`, or name one with the variant's 'specialist' field"
        )
    config = variant.config
    policy = Policy.build(config.agent, observation_spec(config), env_action_dim(config), config.task.gripper_mode == "binary")
    policy.load_weights(safetensors.torch.load_file(str(complete[-1].path / "policy.safetensors")))
    return policy


def _specialist_actor(variant: Variant) -> Callable[[Any], np.ndarray]:
    policy = load_specialist(variant)
    rng = np.random.default_rng(0)
    return lambda observation: policy.act(observation, deterministic=True, rng=rng)


def rollout_episode(env, act: Callable[[Any], np.ndarray], seed: int, on_reset: Optional[Callable[[], None]] = None) -> tuple[dict[str, np.ndarray], bool]:
    """One episode: the transition batch (actions as executed) and whether it succeeded."""
    from robot_stack.data.transitions import hold_if_nonfinite

    observation, info = env.reset(seed=seed)
    if on_reset is not None:
        on_reset()
    closed = gripper_closed_after_reset(env, info)
    transitions, done = [], False
    while not done:
        action, held = hold_if_nonfinite(act(observation))
        if held:
            log.warning("non-finite action in the episode with seed %d; holding", seed)
        next_observation, reward, terminated, truncated, info = env.step(action)
        transitions.append(make_transition(
            observation, action, reward, next_observation, terminated, truncated,
            intervention=False, gripper_changed=bool(info["gripper_closed"]) != closed, binary_gripper=env.binary_gripper,
        ))
        closed = bool(info["gripper_closed"])
        observation, done = next_observation, terminated or truncated
    return stack_transitions(transitions), bool(info.get("true_success", info["success"]))


def collect(
    experiment: RldgExperiment,
    source: str,
    out: Path,
    variants: Optional[list[str]] = None,
    episodes_per_variant: Optional[int] = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Write the dataset; returns (and writes beside it) the collection report."""
    from tqdm import tqdm

    from robot_stack.envs.factory import make_sim_env

    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    spec = experiment.spec.collect
    chosen = experiment.select(variants) if variants else experiment.seen
    held_out = [v.name for v in chosen if v.held_out]
    if held_out and source == "specialists":
        raise ValueError(f"held-out variants have no specialist to roll out: {', '.join(held_out)}")
    wanted = episodes_per_variant or spec.episodes_per_variant
    cameras = tuple(spec.cameras) if spec.cameras is not None else tuple(chosen[0].config.task.observation.images)
    first = with_cameras(chosen[0], cameras)
    writer = DatasetWriter(Path(out), first.task.control_rate_hz, dataset_features(first, cameras, spec.image_storage, spec.video_codec),
                           robot_type=spec.robot_type, video_codec=spec.video_codec, overwrite=overwrite)
    reports: list[VariantReport] = []
    for number, variant in enumerate(chosen):
        config = with_cameras(variant, cameras)
        if config.robot.backend != "sim" and source == "human_like":
            raise ValueError(f"variant '{variant.name}': the scripted human-like demonstrator runs in simulation only")
        if state_names(config.task) != state_names(first.task) or action_names(config.task) != action_names(first.task):
            raise ValueError(f"variant '{variant.name}' observes or acts differently from '{chosen[0].name}': one dataset needs one layout")
        sim = make_sim_env(config)
        env = sim.env
        on_reset = None
        if source == "specialists":
            act = _specialist_actor(variant)
        else:
            from robot_stack.envs.franka_env import action_from_teleop
            from robot_stack.sim.human_like import HumanLikeTeleop

            demonstrator = HumanLikeTeleop(sim.expert, sim.backend, experiment.spec.human_like_demos,
                                           config.task.control_rate_hz, np.random.default_rng(spec.seed + 7919 * (number + 1)))
            on_reset = demonstrator.reset
            act = lambda observation: action_from_teleop(demonstrator.read(), env.action_dim)  # noqa: E731
        report = VariantReport(variant.name, variant.instruction, 0, 0, 0, 0, [])
        limit = wanted * spec.max_attempts_factor
        bar = tqdm(total=wanted, desc=f"{source} {variant.name}", unit="ep", disable=not progress, dynamic_ncols=True)
        try:
            while report.kept < wanted:
                if report.attempts >= limit:
                    raise RuntimeError(
                        f"variant '{variant.name}': {report.kept} of {wanted} episodes kept after {report.attempts} attempts "
                        f"({report.successes} successes); the {source} do not succeed often enough for keep: {spec.keep}"
                    )
                seed = spec.seed + 100_000 * number + report.attempts
                report.attempts += 1
                batch, success = rollout_episode(env, act, seed, on_reset)
                report.successes += int(success)
                if spec.keep == "success" and not success:
                    continue
                writer.add_episode(frames_from_batch(batch, cameras, success), variant.instruction)
                report.kept += 1
                report.frames += len(batch["actions"])
                report.seeds.append(seed)
                bar.update(1)
                bar.set_postfix(success=f"{report.successes / report.attempts:.0%}")
        finally:
            bar.close()
            env.close()
        reports.append(report)
    info = writer.finish()
    summary = {
        "experiment": experiment.spec.name,
        "experiment_file": str(experiment.file),
        "source": source,
        "keep": spec.keep,
        "cameras": list(cameras),
        "variants": [r.as_dict() for r in reports],
        "specialists": {v.name: str(v.specialist) for v in chosen} if source == "specialists" else None,
        "human_like_demos": json.loads(experiment.spec.human_like_demos.model_dump_json()) if source == "human_like" else None,
        "total_episodes": info["total_episodes"],
        "total_frames": info["total_frames"],
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json_atomic(Path(out) / COLLECT_FILE, summary)
    return summary


def export_demos(config: TaskConfig, demo_dir: Path, instruction: str, out: Path, image_storage: str = "video",
                 video_codec: str = "libsvtav1", overwrite: bool = False, robot_type: str = "franka_fr3") -> dict[str, Any]:
    """A demo set from ``record-demos`` as a LeRobotDataset v3 dataset (every camera it holds)."""
    import safetensors.numpy

    from robot_stack.data.demo_sets import read_demo_meta

    demo_dir = Path(demo_dir)
    meta = read_demo_meta(demo_dir)
    cameras = [key.split("/", 1)[1] for key in meta.get("observation_spec", {}) if key.startswith("images/")]
    state_size = meta["observation_spec"]["state"]["shape"][0]
    if state_size != len(state_names(config.task)):
        raise ValueError(f"{demo_dir}: states of {state_size} values, but task '{config.task.name}' observes {len(state_names(config.task))}: "
                         "export with the config the demos were recorded with")
    writer = DatasetWriter(Path(out), config.task.control_rate_hz, dataset_features(config, cameras, image_storage, video_codec),
                           robot_type=robot_type, video_codec=video_codec, overwrite=overwrite)
    for episode in meta["episodes"]:
        batch = safetensors.numpy.load_file(str(demo_dir / episode["file"]))
        if NEXT_OBSERVATION_PREFIX + "state" not in batch:
            raise ValueError(f"{demo_dir / episode['file']}: not a transition batch")
        writer.add_episode(frames_from_batch(batch, cameras, success=bool(batch["terminated"][-1])), instruction)
    info = writer.finish()
    summary = {"source": "demos", "demo_dir": str(demo_dir), "task": meta.get("task"), "instruction": instruction,
               "cameras": cameras, "total_episodes": info["total_episodes"], "total_frames": info["total_frames"]}
    write_json_atomic(Path(out) / COLLECT_FILE, summary)
    return summary
