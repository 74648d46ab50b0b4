"""`robot-stack operator`: the operator console from any terminal, for an actor started elsewhere
(the ROS 2 cell's actor node, an actor on another PC reached through an SSH tunnel).

    robot-stack operator send COMMAND [--url URL]   one command (pause, resume, success, ...)
    robot-stack operator keys [--url URL]           the session's keys, read from this terminal

Both go through the actor's live page API, the door the page's buttons use.
"""

from __future__ import annotations

import argparse
import sys
import threading

DEFAULT_URL = "http://127.0.0.1:8765/"


def send_command(args: argparse.Namespace) -> int:
    """Send one operator command to an actor's live page."""
    from robot_stack.terminal_keys import post_command

    answer = post_command(args.url, args.command, source="api")
    print(f"{args.command}: {answer}")
    return 0 if answer == "queued" else 1


def keys_command(args: argparse.Namespace) -> int:
    """Read the console keys (actor.console.keys defaults) from this terminal and send them."""
    from robot_stack.config.schema import ConsoleConfig
    from robot_stack.terminal_keys import TerminalKeys, keys_help, post_command

    keys = ConsoleConfig().keys
    done = threading.Event()

    def send(command: str) -> str:
        answer = post_command(args.url, command)
        if command == "stop" and answer == "queued":
            done.set()
        return answer

    reader = TerminalKeys(keys, send)
    if not reader.start():
        print("robot-stack operator keys: standard input is not a terminal; use 'robot-stack operator send'", file=sys.stderr)
        return 2
    print(f"{args.url}: {keys_help(keys)}; Ctrl-C leaves")
    try:
        done.wait()
    finally:
        reader.stop()
    return 0


def add_operator_commands(groups: argparse._SubParsersAction) -> None:
    from actor.console import COMMANDS  # noqa: F401  (light: numpy only)

    operator = groups.add_parser("operator", help="operator commands to a running actor (pause, labels, stop)",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = operator.add_subparsers(dest="command_group", metavar="COMMAND", required=True)
    send = commands.add_parser("send", help="send one command", description=send_command.__doc__)
    send.add_argument("command", choices=COMMANDS)
    send.add_argument("--url", default=DEFAULT_URL, help=f"the actor's live page (default {DEFAULT_URL})")
    send.set_defaults(run=send_command)
    keys = commands.add_parser("keys", help="send keys typed in this terminal", description=keys_command.__doc__)
    keys.add_argument("--url", default=DEFAULT_URL, help=f"the actor's live page (default {DEFAULT_URL})")
    keys.set_defaults(run=keys_command)
