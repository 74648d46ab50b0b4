"""Evaluate a policy without interventions over seeded episodes (seeds seed, seed+1, ...):
the policy's mean action, the figure a session and a benchmark report first, and beside it
sampled actions over the same starts, as the actor explores in training (the gap between the
two says how much of the training success came from the sampling). Written as a CSV of
episodes and a JSON summary."""

from __future__ import annotations

import csv
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from tqdm import tqdm

from robot_stack.data.files import write_json_atomic
from robot_stack.data.transitions import hold_if_nonfinite
from robot_stack.config.schema import TaskConfig

log = logging.getLogger(__name__)


@dataclass
class EpisodeOutcome:
    index: int
    seed: int
    success: bool
    length: int
    episode_return: float


@dataclass
class EvalReport:
    task: str
    seed: int
    episodes: list[EpisodeOutcome] = field(default_factory=list)
    deterministic: bool = True
    nonfinite_actions: int = 0
    wall_time_s: float = 0.0

    @property
    def success_rate(self) -> float:
        return sum(e.success for e in self.episodes) / len(self.episodes) if self.episodes else 0.0

    @property
    def mean_length(self) -> float:
        return float(np.mean([e.length for e in self.episodes])) if self.episodes else math.nan

    @property
    def mean_return(self) -> float:
        return float(np.mean([e.episode_return for e in self.episodes])) if self.episodes else math.nan

    def summary(self) -> dict:
        return {
            "task": self.task,
            "seed": self.seed,
            "deterministic": self.deterministic,
            "episodes": len(self.episodes),
            "success_rate": self.success_rate,
            "mean_length": self.mean_length if self.episodes else None,
            "mean_return": self.mean_return if self.episodes else None,
            "nonfinite_actions": self.nonfinite_actions,
            "wall_time_s": self.wall_time_s,
            "per_episode": [asdict(e) for e in self.episodes],
        }


def evaluate_policy(
    config: TaskConfig,
    policy,
    episodes: int,
    seed: int = 0,
    progress: bool = True,
    env_factory: Optional[Callable[[TaskConfig], object]] = None,
    deterministic: bool = True,
) -> EvalReport:
    """Roll out ``policy.act(observation, deterministic, rng)`` for ``episodes`` episodes
    (``policy.reset()``, where it has one, at the start of each); sampled actions draw from
    ``rng``, seeded with ``seed``.

    ``env_factory(config)`` builds the env (default: the one the task's robot backend names); a NaN action is
    counted and replaced by the hold action, as the actor does.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}")
    if env_factory is None:
        from robot_stack.envs.factory import make_env as env_factory

    env = env_factory(config)
    rng = np.random.default_rng(seed)
    report = EvalReport(task=config.task.name, seed=seed, deterministic=deterministic)
    start = time.perf_counter()
    bar = tqdm(range(episodes), desc=f"eval {config.task.name}", unit="ep", disable=not progress, dynamic_ncols=True)
    try:
        for index in bar:
            observation, info = env.reset(seed=seed + index)
            if hasattr(policy, "reset"):
                policy.reset()  # a policy with memory (action chunks) starts each episode afresh
            length, episode_return, done = 0, 0.0, False
            while not done:
                action, held = hold_if_nonfinite(policy.act(observation, deterministic=deterministic, rng=rng))
                if held:
                    report.nonfinite_actions += 1
                    log.warning("policy gave a non-finite action in evaluation episode %d; holding", index)
                observation, reward, terminated, truncated, info = env.step(action)
                length += 1
                episode_return += float(reward)
                done = terminated or truncated
            # Success as the simulator sees it where a learned detector gave the reward.
            success = bool(info.get("true_success", info["success"]))
            report.episodes.append(EpisodeOutcome(index, seed + index, success, length, episode_return))
            bar.set_postfix(success=f"{report.success_rate:.0%}")
    finally:
        bar.close()
        env.close()
    report.wall_time_s = time.perf_counter() - start
    return report


def write_eval(report: EvalReport, directory: Path, sampled: Optional[EvalReport] = None) -> list[Path]:
    """``eval_episodes.csv`` (one row per episode, ``actions`` saying which) and ``eval.json``:
    ``report``'s summary at the top level, ``sampled``'s (or null) under "sampled"."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    csv_path = directory / "eval_episodes.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["actions", "episode", "seed", "success", "length", "return"])
        for part in (report, sampled):
            for e in part.episodes if part is not None else []:
                actions = "deterministic" if part.deterministic else "sampled"
                writer.writerow([actions, e.index, e.seed, int(e.success), e.length, f"{e.episode_return:.6g}"])
    json_path = directory / "eval.json"
    write_json_atomic(json_path, {**report.summary(), "sampled": None if sampled is None else sampled.summary()})
    return [csv_path, json_path]


def evaluate_checkpoint(config: TaskConfig, checkpoints: Path, episodes: int, out: Path, seed: int = 1_000_000,
                        progress: bool = True, sampled_episodes: Optional[int] = None) -> tuple[EvalReport, Optional[EvalReport]]:
    """Evaluate the policy of the newest complete checkpoint under ``checkpoints``: ``episodes``
    with its mean action, then ``sampled_episodes`` (default: as many; 0: none) with sampled
    actions from the same starts. Writes both to ``out``; returns (deterministic, sampled)."""
    import safetensors.torch

    from robot_stack.data.checkpoints import CheckpointMismatchError, CheckpointStore
    from robot_stack.data.spec import binary_gripper, env_action_dim, observation_spec
    from robot_stack.policy import Policy

    complete = CheckpointStore(checkpoints).complete() if Path(checkpoints).is_dir() else []
    if not complete:
        raise FileNotFoundError(f"no complete checkpoint under {checkpoints}: nothing to evaluate")
    newest = complete[-1]
    task = newest.meta.get("task")
    if task is not None and task != config.task.name:
        # Same layout, other task: its policy would load and run, and its success rate would be
        # reported as this task's.
        raise CheckpointMismatchError(f"{newest.path} holds a policy of task '{task}', not of '{config.task.name}'")
    policy = Policy.build(config.agent, observation_spec(config), env_action_dim(config), binary_gripper(config))
    policy.load_weights(safetensors.torch.load_file(str(newest.path / "policy.safetensors")))
    log.info("evaluating %s", newest.path)
    report = evaluate_policy(config, policy, episodes, seed=seed, progress=progress, deterministic=True)
    sampled_episodes = episodes if sampled_episodes is None else sampled_episodes
    sampled = (evaluate_policy(config, policy, sampled_episodes, seed=seed, progress=progress, deterministic=False)
               if sampled_episodes > 0 else None)
    write_eval(report, out, sampled)
    return report, sampled
