"""The `robot-stack` command.

Commands come in groups: ``robot-stack <group> <command> ...`` (``robot-stack config check``).
A group is one ``add_<group>_commands(groups)`` function, listed in ``COMMAND_GROUPS``; a
command is one function that takes the parsed arguments and returns the exit code, set as
the parser's ``run`` default. Commands import heavy dependencies (MuJoCo, torch) inside
their function, so ``robot-stack --help`` and ``config check`` stay fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

from robot_stack import __version__
from robot_stack.config import (
    CONFIG_KINDS,
    KIND_BY_DIRECTORY,
    ConfigError,
    config_to_yaml,
    infer_config_kind,
    load_section_config,
)

# --------------------------------------------------------------------------- config


def config_check(args: argparse.Namespace) -> int:
    """Validate each file; print its resolved config, or every problem in it."""
    all_valid = True
    configs_printed = 0
    for file in args.files:
        try:
            kind = args.kind or infer_config_kind(file)
            if kind is None:
                print(_unknown_kind_message(file), file=sys.stderr)
                all_valid = False
                continue
            config = load_section_config(file, kind)
        except ConfigError as error:
            print(error, file=sys.stderr)
            all_valid = False
            continue
        if args.quiet:
            continue
        if configs_printed:
            print("---")
        print(f"# {file}: valid {kind} config, defaults filled in")
        print(config_to_yaml(config), end="")
        configs_printed += 1
    return 0 if all_valid else 1


def _unknown_kind_message(file: Path) -> str:
    folders = ", ".join(f"{folder}/" for folder in KIND_BY_DIRECTORY)
    return (
        f"{file}: cannot tell what kind of config this is: it has no top-level 'task' key and "
        f"its folder is not one of {folders}; pass --kind {{{','.join(CONFIG_KINDS)}}}"
    )


def add_config_commands(groups: argparse._SubParsersAction) -> None:
    config = groups.add_parser(
        "config",
        help="check hardware and task YAML files",
        description="Work with the YAML files under hardware_configs/.",
    )
    commands = config.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)

    check = commands.add_parser(
        "check",
        help="validate config files and print them fully resolved",
        description=(
            "Validate each FILE against the schema and print it fully resolved (includes and "
            "overrides applied, defaults filled in) as YAML. Problems go to stderr, naming file, "
            "line, field, the bad value and what is allowed. Exit code 1 if any file is invalid."
        ),
    )
    check.add_argument("files", nargs="+", type=Path, metavar="FILE", help="YAML files to check")
    check.add_argument(
        "--kind",
        choices=CONFIG_KINDS,
        help=(
            "what the files hold; by default a file with a top-level 'task' key is a task file, "
            "otherwise its folder decides (robots/, cameras/, teleop/, sessions/, tasks/)"
        ),
    )
    check.add_argument("--quiet", action="store_true", help="print nothing for valid files, only problems")
    check.set_defaults(run=config_check)


# --------------------------------------------------------------------------- sim


def _load_sim_task(path: Path):
    """The task config, or None after printing why it cannot run in simulation."""
    from robot_stack.config import load_task_config

    try:
        config = load_task_config(path)
    except ConfigError as error:
        print(error, file=sys.stderr)
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

    config = _load_sim_task(args.task)
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

    config = _load_sim_task(args.task)
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
    sim = groups.add_parser(
        "sim",
        help="run tasks on the simulated FR3",
        description="Run a task YAML on the simulated FR3 (MuJoCo, 1 kHz impedance control, 10 Hz policy).",
    )
    commands = sim.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)

    def common(parser: argparse.ArgumentParser, episodes: int) -> None:
        parser.add_argument("--task", type=Path, required=True, metavar="TASK_YAML", help="task file (robot backend 'sim')")
        parser.add_argument("--episodes", type=_positive_int, default=episodes, help=f"episodes to run (default {episodes})")
        parser.add_argument("--seed", type=int, default=0, help="seed of the first episode; episode i uses seed+i")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    expert = commands.add_parser(
        "expert",
        help="print the scripted expert's success rate on a task",
        description="Roll out the noise-free scripted expert (or a noisy one with --noise) and print its success rate.",
    )
    common(expert, 50)
    expert.add_argument("--noise", type=float, default=None, help="Gaussian action noise std (action units; default 0)")
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
    demo.add_argument("--noise", type=float, default=None, help="override the teleop config's expert noise std")
    demo.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output directory (default outputs/demo)")
    demo.set_defaults(run=sim_demo)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


# --------------------------------------------------------------------------- keys


def keys_generate(args: argparse.Namespace) -> int:
    """Write a CurveZMQ key pair for the learner or an actor."""
    from robot_stack.transport.security import generate_keys

    try:
        public, secret = generate_keys(args.directory, args.name, overwrite=args.overwrite)
    except (FileExistsError, ValueError) as error:
        print(f"robot-stack keys generate: {error}", file=sys.stderr)
        return 1
    print(f"wrote {public} (public key: copy it to the other machine)")
    print(f"wrote {secret} (secret key, mode 0600: keep it on this machine)")
    return 0


def add_keys_commands(groups: argparse._SubParsersAction) -> None:
    keys = groups.add_parser(
        "keys",
        help="CurveZMQ keys for authenticated, encrypted actor-learner links",
        description="Make the key files the session config names (server_*_key_file, client_secret_key_file, "
        "authorized_client_keys_dir).",
    )
    commands = keys.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)
    generate = commands.add_parser(
        "generate",
        help="write NAME.key (public) and NAME.key_secret (secret) into DIR",
        description="Write a CurveZMQ key pair: DIR/NAME.key (public) and DIR/NAME.key_secret (public + secret, "
        "mode 0600). Make one for the learner and one per actor; put each actor's .key file in the learner's "
        "authorized_client_keys_dir and the learner's .key file on every actor.",
    )
    generate.add_argument("directory", type=Path, metavar="DIR")
    generate.add_argument("--name", default="learner", help="file name stem (default 'learner'; use e.g. robot1 for an actor)")
    generate.add_argument("--overwrite", action="store_true", help="replace existing key files")
    generate.set_defaults(run=keys_generate)


# --------------------------------------------------------------------------- the parser

COMMAND_GROUPS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    add_config_commands,
    add_sim_commands,
    add_keys_commands,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robot-stack",
        description="HIL-SERL robot learning for Franka arms: configs, simulation and task sessions.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    groups = parser.add_subparsers(title="command groups", dest="group", metavar="GROUP", required=True)
    for add_commands in COMMAND_GROUPS:
        add_commands(groups)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command in argv (default: sys.argv[1:]); return its exit code.

    Usage errors and --help exit through argparse (SystemExit), as with any command line tool.
    """
    args = build_parser().parse_args(argv)
    return args.run(args)
