"""Run the scripted teleoperator through a task's env: the expert success-rate check
and the simulated episode demo."""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from robot_stack.config.schema import TaskConfig
from robot_stack.data.episode_frames import EpisodeFrameWriter
from robot_stack.envs.factory import make_sim_env
from robot_stack.envs.franka_env import action_from_teleop
from robot_stack.sim.teleop import ScriptedTeleop


@dataclass
class EpisodeResult:
    index: int
    seed: int
    success: bool
    steps: int
    safety_clamped_steps: int
    metrics: dict[str, float]


@dataclass
class ExpertReport:
    task: str
    episodes: list[EpisodeResult] = field(default_factory=list)
    wall_time_s: float = 0.0
    env_steps: int = 0
    frames_written: int = 0

    @property
    def success_rate(self) -> float:
        return sum(e.success for e in self.episodes) / max(1, len(self.episodes))

    @property
    def steps_per_second(self) -> float:
        return self.env_steps / self.wall_time_s if self.wall_time_s > 0 else 0.0


def run_scripted_episodes(
    config: TaskConfig,
    episodes: int,
    seed: int = 0,
    noise_std: float | None = None,
    frames_dir: Path | None = None,
    progress: bool = True,
) -> ExpertReport:
    """Roll out the scripted teleoperator for ``episodes`` episodes (seeds seed, seed+1...).

    ``noise_std`` overrides the teleop config's expert noise; ``frames_dir`` saves every
    observed camera frame (cameras from the task's observation keys; all configured
    cameras if the task is state-only).
    """
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}")
    teleop_config = config.teleop
    if teleop_config.kind != "scripted":
        teleop_config = teleop_config.model_copy(update={"kind": "scripted"})
    if noise_std is not None:
        teleop_config = teleop_config.model_copy(update={"expert_noise_std": noise_std})
    render_mode = "rgb_array" if frames_dir is not None else None
    sim = make_sim_env(config, render_mode=render_mode)
    env = sim.env
    teleop = ScriptedTeleop(sim.expert, sim.backend, teleop_config, np.random.default_rng(seed + 1_000_003))
    report = ExpertReport(task=config.task.name)
    start = time.perf_counter()
    bar = tqdm(range(episodes), desc=f"{config.task.name}", unit="ep", disable=not progress, dynamic_ncols=True)
    try:
        for index in bar:
            episode_seed = seed + index
            _, info = env.reset(seed=episode_seed)
            teleop.reset()
            writer = None
            if frames_dir is not None:
                writer = EpisodeFrameWriter(Path(frames_dir) / f"episode_{index:03d}", fps=config.task.control_rate_hz)
                writer.add(env.camera_images())
            steps = clamped = 0
            done = False
            while not done:
                action = action_from_teleop(teleop.read(), env.action_dim)
                _, _, terminated, truncated, info = env.step(action)
                steps += 1
                clamped += bool(info["safety_clamped"])
                if writer is not None:
                    writer.add(env.camera_images())
                done = terminated or truncated
            if writer is not None:
                writer.finish()
                report.frames_written += writer.frame_count
            metrics = {k: float(v) for k, v in info.items() if k not in ("success", "safety_clamped", "action_clipped", "gripper_closed")}
            report.episodes.append(EpisodeResult(index, episode_seed, bool(info["success"]), steps, clamped, metrics))
            report.env_steps += steps
            bar.set_postfix(success=f"{report.success_rate:.0%}")
    finally:
        env.close()
    report.wall_time_s = time.perf_counter() - start
    return report


def write_report(report: ExpertReport, directory: Path) -> list[Path]:
    """episodes.csv and a PNG with the success rate and episode lengths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    csv_path = directory / "episodes.csv"
    metric_names = sorted({k for e in report.episodes for k in e.metrics})
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["episode", "seed", "success", "steps", "safety_clamped_steps", *metric_names])
        for e in report.episodes:
            writer.writerow([e.index, e.seed, int(e.success), e.steps, e.safety_clamped_steps, *(f"{e.metrics.get(k, float('nan')):.5f}" for k in metric_names)])
    written = [csv_path]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    successes = np.cumsum([e.success for e in report.episodes]) / np.arange(1, len(report.episodes) + 1)
    left.plot(np.arange(1, len(report.episodes) + 1), successes * 100, marker="o", ms=3)
    left.set_ylim(0, 105)
    left.set_xlabel("episode")
    left.set_ylabel("running success rate (%)")
    left.set_title(f"{report.task}: {report.success_rate:.0%} of {len(report.episodes)}")
    colors = ["tab:green" if e.success else "tab:red" for e in report.episodes]
    right.bar([e.index for e in report.episodes], [e.steps for e in report.episodes], color=colors)
    right.set_xlabel("episode")
    right.set_ylabel("steps (green: success)")
    right.set_title("episode length")
    fig.tight_layout()
    png = directory / "success.png"
    fig.savefig(png, dpi=100)
    plt.close(fig)
    written.append(png)
    return written
