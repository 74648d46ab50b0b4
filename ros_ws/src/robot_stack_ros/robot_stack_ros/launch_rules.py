"""What the launch files share (imported by launch/*.launch.py, never by a node): which
processes a cell cannot run without, and the values a boolean launch argument may take."""

from __future__ import annotations

from launch.actions import RegisterEventHandler
from launch.event_handlers import OnProcessExit

# IfCondition reads more spellings, but a typo such as use_cameras:=no must fail before any
# process starts: launch checks choices when it declares the argument.
BOOLEAN_CHOICES = ["true", "false"]


class CellEnded(RuntimeError):
    """A process the cell cannot run without exited while launch was not stopping."""


def end_the_cell_when_it_exits(process) -> RegisterEventHandler:
    """Without the learner nothing learns, without the impedance controller the arm is not
    commanded: launch would otherwise keep the rest running and, once all have exited on their
    own, exit 0. An exception from an event handler is launch's way to stop everything and exit
    non-zero; the message is the reason it prints."""

    def on_exit(event, context):
        if context.is_shutdown:  # launch is stopping everything itself (Ctrl-C, an earlier failure)
            return None
        raise CellEnded(f"{event.process_name} exited (code {event.returncode}): the cell cannot run without it; "
                        "stopping every other process")

    return RegisterEventHandler(OnProcessExit(target_action=process, on_exit=on_exit))
