"""A process started by a supervisor (the task session, `ros2 launch`) stops when its
supervisor is gone, however the supervisor died.

A learner that outlives its session keeps the session's ports and goes on writing checkpoints
and status.json into the run dir, where the next session of the same task then finds them.
A supervisor that is killed (SIGKILL, a crash, launch's own argument errors) cannot stop its
children, so each child watches for itself.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from typing import Optional

# From <linux/prctl.h>.
PR_SET_PDEATHSIG = 1


def exit_with_parent(parent_pid: Optional[int] = None, *, signum: int = signal.SIGTERM, poll_s: float = 0.5,
                     kernel: bool = True) -> None:
    """Send ``signum`` to this process when its parent exits: the same clean stop an operator's
    ``kill`` asks for (the learner still writes its final checkpoint).

    ``parent_pid``: the supervisor's pid as the supervisor itself passed it; the process may have
    been orphaned while it was still importing, and then its parent is already someone else.
    Default: the current parent. ``kernel=False`` skips prctl and relies on the watchdog alone
    (what non-Linux systems get)."""
    parent = os.getppid() if parent_pid is None else int(parent_pid)
    if kernel and _ask_the_kernel(signum):
        # The kernel only reports deaths after the prctl call.
        if os.getppid() != parent:
            os.kill(os.getpid(), signum)
        return
    watchdog = threading.Thread(target=_watch, args=(parent, signum, poll_s), name="parent-watchdog", daemon=True)
    watchdog.start()


def _ask_the_kernel(signum: int) -> bool:
    # Linux sends it when the *thread* that started the child exits: supervisors spawn their
    # children from a thread that lives as long as they do (the session and launch: the main one).
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent: int, signum: int, poll_s: float) -> None:
    # An orphan is adopted by init or a subreaper: its parent pid changes, never back.
    while os.getppid() == parent:
        time.sleep(poll_s)
    os.kill(os.getpid(), signum)
