"""robot-stack sim: the scripted expert and the simulated episode demo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from robot_stack.cli.common import load_config, positive_int, schema_flag


def _load_sim_task(path: Path, command: str):
    """The task config, or None after printing why it cannot run in simulation."""
    config = load_config(path, franka_command=f"sim {command}")
    if config is None:
        return None
    if config.robot.backend != "sim" or config.task.sim is None:
        print(
            f"{path}: task '{config.task.name}' runs on robot backend '{config.robot.backend}'; "
            "sim commands need a task whose robot backend is 'sim' and which has a 'sim' scene",
            file=sys.stderr,
        )
        return None
    return config


def _print_report(report) -> None:
    lengths = [e.steps for e in report.episodes]
    print(
        f"task {report.task}: success rate {report.success_rate:.1%} "
        f"({sum(e.success for e in report.episodes)}/{len(report.episodes)} episodes), "
        f"mean length {sum(lengths) / len(lengths):.1f} steps, "
        f"{report.env_steps} env steps in {report.wall_time_s:.1f} s ({report.steps_per_second:.1f} steps/s)"
    )
    clamped = sum(e.safety_clamped_steps for e in report.episodes)
    if clamped:
        print(f"safety box clamped the target on {clamped} steps")


def sim_expert(args: argparse.Namespace) -> int:
    """Roll out the scripted expert and print its success rate."""
    from robot_stack.sim.expert_runs import run_scripted_episodes, write_report

    config = _load_sim_task(args.task, "expert")
    if config is None:
        return 1
    noise = args.noise if args.noise is not None else 0.0
    report = run_scripted_episodes(config, args.episodes, seed=args.seed, noise_std=noise, progress=not args.no_progress)
    _print_report(report)
    if args.out is not None:
        for path in write_report(report, args.out):
            print(f"wrote {path}")
    return 0


def sim_demo(args: argparse.Namespace) -> int:
    """The simulated episode demo: the scripted teleoperator runs the task; frames are saved."""
    from robot_stack.sim.expert_runs import run_scripted_episodes, write_report

    config = _load_sim_task(args.task, "demo")
    if config is None:
        return 1
    frames_dir = args.out / "frames"
    report = run_scripted_episodes(
        config, args.episodes, seed=args.seed, noise_std=args.noise, frames_dir=frames_dir, progress=not args.no_progress
    )
    _print_report(report)
    for path in write_report(report, args.out):
        print(f"wrote {path}")
    print(f"wrote {report.frames_written} camera frames (PNG per frame, GIF per camera) under {frames_dir}")
    return 0


def add_sim_commands(groups: argparse._SubParsersAction) -> None:
    from robot_stack.config.schema import TeleopConfig

    sim = groups.add_parser(
        "sim",
        help="run tasks on the simulated FR3",
        description="Run a task YAML on the simulated FR3 (MuJoCo, 1 kHz impedance control, 10 Hz policy).",
    )
    commands = sim.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)

    def common(parser: argparse.ArgumentParser, episodes: int) -> None:
        parser.add_argument("--task", type=Path, required=True, metavar="TASK_YAML", help="task file (robot backend 'sim')")
        parser.add_argument("--episodes", type=positive_int, default=episodes, help=f"episodes to run (default {episodes})")
        parser.add_argument("--seed", type=int, default=0, help="seed of the first episode; episode i uses seed+i")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    expert = commands.add_parser(
        "expert",
        help="print the scripted expert's success rate on a task",
        description="Roll out the noise-free scripted expert (or a noisy one with --noise) and print its success rate.",
    )
    common(expert, 50)
    noise = schema_flag(TeleopConfig, "expert_noise_std", float)
    expert.add_argument("--noise", type=noise, default=None, help="Gaussian action noise std (action units; default 0)")
    expert.add_argument("--out", type=Path, default=None, help="also write episodes.csv and success.png here")
    expert.set_defaults(run=sim_expert)

    demo = commands.add_parser(
        "demo",
        help="run simulated episodes with the scripted teleoperator and save camera frames",
        description=(
            "The simulated task session demo: the scripted teleoperator (the task's teleop config, "
            "noise included) runs episodes; every camera frame is saved as PNG, each camera's episode "
            "as a GIF, with episodes.csv and success.png."
        ),
    )
    common(demo, 3)
    demo.add_argument("--noise", type=noise, default=None, help="override the teleop config's expert noise std")
    demo.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output directory (default outputs/demo)")
    demo.set_defaults(run=sim_demo)
