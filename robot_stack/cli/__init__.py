"""The `robot-stack` command.

Commands come in groups: ``robot-stack <group> <command> ...`` (``robot-stack config check``).
A group is one module here with an ``add_<group>_commands(groups)`` function, listed in
``COMMAND_GROUPS``; a command is one function that takes the parsed arguments and returns the
exit code, set as the parser's ``run`` default. What groups share (the config loader that prints
problems, schema-checked flag types, signal handling) is in ``common``. Commands import heavy
dependencies (MuJoCo, torch) inside their function, so ``robot-stack --help`` and
``config check`` stay fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Optional, Sequence

from robot_stack import __version__
from robot_stack.cli.config_commands import add_config_commands
from robot_stack.cli.encoder_commands import add_encoder_commands
from robot_stack.cli.hw_commands import add_hw_commands
from robot_stack.cli.keys_commands import add_keys_commands
from robot_stack.cli.operator_commands import add_operator_commands
from robot_stack.cli.reward_commands import add_reward_commands
from robot_stack.cli.rldg_commands import add_rldg_commands
from robot_stack.cli.session_commands import add_session_commands
from robot_stack.cli.sim_commands import add_sim_commands

COMMAND_GROUPS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    add_config_commands,
    add_sim_commands,
    add_keys_commands,
    add_session_commands,
    add_operator_commands,
    add_reward_commands,
    add_encoder_commands,
    add_hw_commands,
    add_rldg_commands,
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
    try:
        return args.run(args)
    except KeyboardInterrupt:
        # Commands that keep partial work (record-demos) or stop cleanly (learner, actor, session)
        # say so themselves; any other is only cut short.
        words = list(sys.argv[1:] if argv is None else argv)
        print(f"robot-stack {words[0] if words else ''}: interrupted", file=sys.stderr)
        return 130
