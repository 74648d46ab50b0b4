"""What the command groups share: the config loader that prints what is wrong, flag types checked
against the schema, the terminal in single-key mode, and the signal and supervisor handling of
long-running commands."""

from __future__ import annotations

import argparse
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from robot_stack.config import ConfigError


def load_config(path: Path, load: Optional[Callable[[Path], Any]] = None, franka_command: Optional[str] = None):
    """The config in ``path`` (a task file unless ``load`` says otherwise), or None after
    printing every problem in it. ``franka_command``: the command's name where it drives the
    project's Franka only, which then refuses a gymnasium task in one line."""
    if load is None:
        from robot_stack.config import load_task_config as load

    try:
        config = load(path)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return None
    refusal = config.franka_only(f"`robot-stack {franka_command}`") if franka_command is not None else None
    if refusal is not None:
        print(f"{path}: {refusal}", file=sys.stderr)
        return None
    return config


@contextmanager
def single_keys_from_terminal(wanted: bool) -> Iterator[Optional[int]]:
    """stdin's file descriptor, reading each key as it is pressed (no Enter), while ``wanted``
    and stdin is a terminal; None otherwise. The terminal's mode is restored on the way out."""
    if not (wanted and sys.stdin.isatty()):
        yield None
        return
    import termios
    import tty

    key_fd = sys.stdin.fileno()
    saved = termios.tcgetattr(key_fd)
    tty.setcbreak(key_fd)
    try:
        yield key_fd
    finally:
        termios.tcsetattr(key_fd, termios.TCSADRAIN, saved)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def schema_flag(model: type, field: str, parse: Callable[[str], float], to_field_unit: float = 1) -> Callable[[str], float]:
    """An argparse type for a flag that overrides ``model``'s ``field``: the value is refused at
    parse time, naming the flag, unless the schema's field accepts it. Checked any later, the
    error would come from deeper down (for a session, from a child process citing the config
    file it generated)."""
    import math

    from pydantic import ValidationError

    allowed = allowed_range(model.model_fields[field].metadata)

    def convert(text: str) -> float:
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'a whole number' if parse is int else 'a number'}, got {text!r}"
            ) from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number {allowed}, got {text}")
        try:
            model.model_validate({field: value * to_field_unit})
        except ValidationError:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text}") from None
        return value

    return convert


def allowed_range(constraints: Sequence[object]) -> str:
    """'in (0, 1]', 'at least 1', 'greater than 0'... from a schema field's bounds."""
    bounds = {name: getattr(c, name) for c in constraints for name in ("gt", "ge", "lt", "le") if hasattr(c, name)}
    low = ("(", bounds["gt"]) if "gt" in bounds else ("[", bounds["ge"]) if "ge" in bounds else None
    high = (")", bounds["lt"]) if "lt" in bounds else ("]", bounds["le"]) if "le" in bounds else None

    def number(bound: float) -> str:
        return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"

    if low and high:
        return f"in {low[0]}{number(low[1])}, {number(high[1])}{high[0]}"
    if low:
        return f"{'greater than' if low[0] == '(' else 'at least'} {number(low[1])}"
    if high:
        return f"{'less than' if high[0] == ')' else 'at most'} {number(high[1])}"
    return "a valid value"


def stop_on_signals(name: str):
    """A threading.Event set by SIGINT/SIGTERM: the process finishes cleanly (final checkpoint)."""
    import logging
    import threading

    setup_logging(name)
    stop = threading.Event()

    def handler(signum, frame):
        if stop.is_set():
            logging.getLogger(name).warning("already stopping; waiting for the final checkpoint")
        else:
            logging.getLogger(name).info("%s received: stopping cleanly", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def exit_with_supervisor(args: argparse.Namespace, signum: Optional[int] = None) -> None:
    """``signum`` (default SIGTERM) when the supervisor is gone: the signal this command stops
    cleanly on (the foreground steps stop on SIGINT, as on a Ctrl-C, keeping what they finished)."""
    # Before the slow imports and the config: an orphan should find out as early as it can.
    if args.parent_pid is not None:
        from robot_stack.lifetime import exit_with_parent

        exit_with_parent(args.parent_pid, signum=signal.SIGTERM if signum is None else signum)


def supervised(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--parent-pid", type=int, default=None, metavar="PID",
        help="stop cleanly when process PID (the session or ros2 launch that started this one) is no longer "
        "the parent: no process outlives its supervisor",
    )


def setup_logging(name: str) -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s")
