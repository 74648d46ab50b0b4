"""robot-stack hw: bring-up checks of the real devices."""

from __future__ import annotations

import argparse
from pathlib import Path

from robot_stack.cli.common import load_config


def hw_check_command(args: argparse.Namespace) -> int:
    """Connect to every device the task config names (arm, cameras, SpaceMouse) and report
    what is reachable, measured rates, and one frame per camera as PNG. Exit 1 if any fails."""
    config = load_config(args.config, franka_command="hw check")
    if config is None:
        return 1
    from robot_stack.hardware.check import run_check

    report = run_check(config, args.out, seconds=args.seconds)
    print(report.table())
    print(f"results: {args.out / 'hw_check.json'}")
    return 0 if report.ok else 1


def add_hw_commands(groups: argparse._SubParsersAction) -> None:
    hw = groups.add_parser("hw", help="bring-up checks of the real devices", description="Hardware bring-up.")
    commands = hw.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)
    check = commands.add_parser("check", help=hw_check_command.__doc__, description=hw_check_command.__doc__)
    check.add_argument("config", type=Path, metavar="CONFIG", help="task YAML")
    check.add_argument("--out", type=Path, default=Path("runs/hw_check"), help="where the PNGs and hw_check.json go")
    check.add_argument("--seconds", type=float, default=2.0, help="how long each device is measured")
    check.set_defaults(run=hw_check_command)
