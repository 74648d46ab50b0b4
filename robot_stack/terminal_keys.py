"""Keys typed in the terminal that runs a session, as operator commands to its actor.

The session's terminal is the operator's nearest keyboard. Each key of ``actor.console.keys``
is sent to the actor's live page API (``POST /api/command``, the same door the page's buttons
use), so the actor's one console handles it. The terminal is read in cbreak mode (one key at a
time, no echo, Ctrl-C still interrupts) and restored when reading stops or the process exits.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import sys
import threading
import urllib.error
import urllib.request
from typing import Callable, Mapping, Optional, TextIO


def post_command(page_url: str, command: str, timeout_s: float = 2.0, source: str = "keyboard") -> str:
    """Send one command to a live page (as typed on a keyboard, or ``source`` "api" for a
    script's); returns what it answered (or why it could not)."""
    request = urllib.request.Request(
        page_url.rstrip("/") + "/api/command", data=json.dumps({"command": command, "source": source}).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            answer = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        try:
            answer = json.loads(error.read() or b"{}")
        except ValueError:
            answer = {}
        return f"refused ({error.code}): {answer.get('message') or answer.get('detail') or error.reason}"
    except (OSError, ValueError) as error:
        return f"not sent: the actor's live page did not answer ({error})"
    return str(answer.get("message", "sent"))


def keys_help(keys: Mapping[str, str]) -> str:
    """'p/space pause-resume, s success, ...' for the line that tells the operator the keys."""
    by_command: dict[str, list[str]] = {}
    for key, command in keys.items():
        by_command.setdefault(command, []).append("space" if key == " " else key)
    return ", ".join(f"{'/'.join(names)} {command.replace('toggle_pause', 'pause/resume')}"
                     for command, names in by_command.items())


class TerminalKeys:
    """Reads single keys from ``stream`` (a terminal) in a thread and calls ``send(command)``
    for mapped ones; ``echo`` gets one line per key with the answer."""

    def __init__(self, keys: Mapping[str, str], send: Callable[[str], str], stream: Optional[TextIO] = None,
                 echo: Callable[[str], None] = print):
        self.keys = dict(keys)
        self.send = send
        self.stream = stream if stream is not None else sys.stdin
        self.echo = echo
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._saved = None
        self._fd: Optional[int] = None

    def start(self) -> bool:
        """Start reading; False (and nothing started) when the stream is not a terminal, e.g.
        a session run from a script or CI."""
        try:
            fd = self.stream.fileno()
        except (AttributeError, OSError, ValueError):
            return False
        if not os.isatty(fd):
            return False
        import termios
        import tty

        self._fd = fd
        self._saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)
        atexit.register(self._restore)
        self._thread = threading.Thread(target=self._read, name="terminal-keys", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)
        self._restore()

    def _restore(self) -> None:
        if self._saved is not None and self._fd is not None:
            import termios

            try:
                termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
            except termios.error:
                pass  # the terminal is gone
            self._saved = None

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._fd], [], [], 0.1)
                if not ready:
                    continue
                data = os.read(self._fd, 32)
            except OSError:
                return  # the terminal closed
            if not data:
                return
            for key in data.decode(errors="replace"):
                command = self.keys.get(key)
                if command is not None:
                    self.echo(f"[{'space' if key == ' ' else key}] {command}: {self.send(command)}")
