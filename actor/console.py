"""The operator console: the one handler of what the person at the cell asks of the actor.

Commands (``COMMANDS``):

    pause     the actor stops stepping; the arm holds its last target (sim: physics waits)
    resume    stepping goes on where it stopped
    toggle_pause  pause when running, resume when paused (one key or button for both)
    success   end the episode now, labelled a success: its last transition gets the success
              reward and ends the episode (terminated); the label overrides the reward
              detector and is recorded as the operator's
    failure   end the episode now, labelled a failure: reward 0, terminated (the operator says
              nothing good follows from this state)
    rerecord  discard the episode in progress (none of it reaches the learner or the dataset)
              and start it again from a reset
    reset     end the episode now as cut short (truncated: its data is kept and bootstraps)
              and reset the scene
    stop      stop the actor (and the session that runs it) cleanly

Sources (``SOURCES``) are the SpaceMouse buttons (``teleop.button_map``), the keyboard of the
terminal that runs the session, ROS 2 services of the actor node, and the live web page. Each
calls ``OperatorConsole.request`` from its own thread; the actor loop takes the requests
between two steps (``take``) and reports what it did (``record``), so every command is applied
at a step boundary and logged once with the episode it touched, in ``operator.csv`` in the
run's log dir.

The console also holds what the views show (``snapshot``, ``frame``): the episode in progress,
the camera images the policy sees, per-episode outcomes for the curves, recent commands, and
the learner's rate as the actor sees it (weights versions count learner updates).
"""

from __future__ import annotations

import csv
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from robot_stack.hardware.interfaces import TeleopDisconnected

log = logging.getLogger(__name__)

COMMANDS = ("pause", "resume", "toggle_pause", "success", "failure", "rerecord", "reset", "stop")
SOURCES = ("spacemouse", "keyboard", "ros", "web", "api")
#: Commands that act on the episode in progress (they need a step taken in it).
EPISODE_COMMANDS = ("success", "failure", "rerecord", "reset")
MAX_PENDING = 64
EVENTS_KEPT = 200
EPISODES_KEPT = 5000
LOG_FIELDS = ("time", "command", "source", "episode", "episode_step", "env_steps", "outcome")


class ConsoleError(ValueError):
    """A request the console does not take: an unknown command or source."""


@dataclass(frozen=True)
class Request:
    command: str
    source: str
    time: float


@dataclass(frozen=True)
class ConsoleEvent:
    """One command as the actor applied it (or refused it)."""

    time: float
    command: str
    source: str
    episode: int  # the actor's episode index it touched
    episode_step: int  # steps taken in that episode when it was applied
    env_steps: int
    outcome: str  # what happened, e.g. "paused", "episode 12 ended: success (operator)"

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in LOG_FIELDS}


def _json_number(value: Any) -> Any:
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


class OperatorConsole:
    """Thread-safe: any source may call ``request``; only the actor loop calls ``take``,
    ``record``, ``observe_step`` and ``observe_episode``; any view may call ``snapshot`` and
    ``frame``."""

    def __init__(self, log_path: Optional[Path] = None, task: str = "", actor_id: str = ""):
        self.log_path = Path(log_path) if log_path is not None else None
        self._lock = threading.Lock()
        self._pending: deque[Request] = deque()
        self._events: deque[ConsoleEvent] = deque(maxlen=EVENTS_KEPT)
        self._episodes: deque[dict[str, Any]] = deque(maxlen=EPISODES_KEPT)
        self._episodes_seen = 0  # over the console's life; the deque keeps the latest EPISODES_KEPT
        self._frames: dict[str, np.ndarray] = {}
        self._frame_version = 0
        self._live: dict[str, Any] = {"task": task, "actor_id": actor_id, "state": "starting"}
        self._versions: deque[tuple[float, int]] = deque(maxlen=64)  # (time, weights version)
        self.changed = threading.Condition(self._lock)  # views may wait on it for the next step

    # ------------------------------------------------------------------ sources

    def request(self, command: str, source: str) -> dict[str, Any]:
        """Queue a command from a source; returns at once with whether it was queued (the actor
        applies it at its next step boundary)."""
        if command not in COMMANDS:
            raise ConsoleError(f"unknown operator command {command!r}; known: {', '.join(COMMANDS)}")
        if source not in SOURCES:
            raise ConsoleError(f"unknown command source {source!r}; known: {', '.join(SOURCES)}")
        with self._lock:
            if self._live.get("state") in ("stopping", "stopped", "failed"):
                return {"queued": False, "command": command, "message": f"the actor is {self._live['state']}"}
            if len(self._pending) >= MAX_PENDING:
                return {"queued": False, "command": command, "message": "too many commands waiting; try again"}
            self._pending.append(Request(command, source, time.time()))
        return {"queued": True, "command": command, "message": "queued"}

    # ------------------------------------------------------------------ the actor loop

    def has_pending(self) -> bool:
        with self._lock:
            return bool(self._pending)

    def take(self) -> list[Request]:
        with self._lock:
            requests = list(self._pending)
            self._pending.clear()
        return requests

    def record(self, request: Request, episode: int, episode_step: int, env_steps: int, outcome: str) -> ConsoleEvent:
        event = ConsoleEvent(time.time(), request.command, request.source, episode, episode_step, env_steps, outcome)
        with self._lock:
            self._events.append(event)
            self.changed.notify_all()
        log.info("operator %s (%s): %s [episode %d, step %d]", request.command, request.source, outcome, episode, episode_step)
        if self.log_path is not None:
            try:
                new = not self.log_path.exists()
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.log_path, "a", newline="") as file:
                    writer = csv.DictWriter(file, fieldnames=LOG_FIELDS)
                    if new:
                        writer.writeheader()
                    writer.writerow(event.as_dict())
            except OSError as error:  # a full disk must not stop the robot; the event is still in memory
                log.error("could not log the operator command to %s: %s", self.log_path, error)
        return event

    def set_state(self, state: str, **fields: Any) -> None:
        """The actor's state: starting, running, paused, resetting, stopping, stopped, failed."""
        with self._lock:
            self._live["state"] = state
            self._live.update({k: _json_number(v) for k, v in fields.items()})
            self.changed.notify_all()

    def observe_step(self, images: Optional[dict[str, np.ndarray]] = None, **fields: Any) -> None:
        """After each step: the camera images the policy saw and what the episode shows
        (episode, episode_step, env_steps, intervening, reward, success_probability,
        weights_version, deterministic)."""
        now = time.time()
        with self._lock:
            if images:
                self._frames = {name: np.asarray(image) for name, image in images.items()}
                self._frame_version += 1
            self._live.update({k: _json_number(v) for k, v in fields.items()})
            self._live["updated"] = now
            version = fields.get("weights_version")
            if version is not None and (not self._versions or self._versions[-1][1] != version):
                self._versions.append((now, int(version)))
            self.changed.notify_all()

    def observe_episode(self, detail: dict[str, Any]) -> None:
        """A finished episode (the actor's ``episode_end`` detail) for the curves."""
        keep = ("episode", "success", "length", "intervention_steps", "deterministic", "label", "env_steps_total", "weights_version")
        with self._lock:
            self._episodes.append({k: _json_number(detail[k]) for k in keep if k in detail})
            self._episodes_seen += 1
            self.changed.notify_all()

    # ------------------------------------------------------------------ views

    def learner_updates_per_s(self) -> Optional[float]:
        """Weights versions count learner updates: their rate over the last versions seen."""
        with self._lock:
            versions = list(self._versions)
        if len(versions) < 2:
            return None
        (t0, v0), (t1, v1) = versions[0], versions[-1]
        return (v1 - v0) / (t1 - t0) if t1 > t0 else None

    def snapshot(self, episodes_since: int = 0) -> dict[str, Any]:
        """What a view shows, JSON-safe: ``live`` (the episode in progress and the actor's
        state), ``episodes`` (finished ones, from index ``episodes_since`` of this console's
        history, counted over its life: ``episodes_total``), ``events`` (recent commands), ``cameras`` and ``frame_version``, the
        learner's updates/s, and the commands a view may send."""
        rate = self.learner_updates_per_s()
        with self._lock:
            episodes, seen = list(self._episodes), self._episodes_seen
            forgotten = seen - len(episodes)
            return {
                "live": dict(self._live),
                "learner_updates_per_s": rate,
                "episodes": episodes[max(0, episodes_since - forgotten):],
                "episodes_total": seen,
                "events": [event.as_dict() for event in self._events][-20:],
                "cameras": sorted(self._frames),
                "frame_version": self._frame_version,
                "commands": list(COMMANDS),
            }

    def frame(self, camera: str) -> Optional[np.ndarray]:
        """The latest image of a camera (HxWx3 uint8), or None if the policy sees no such camera."""
        with self._lock:
            return self._frames.get(camera)


#: SpaceMouse button actions (teleop.button_map) that are operator commands; the gripper ones
#: are interventions and stay with the intervention.
BUTTON_COMMANDS = {
    "success": "success", "failure": "failure", "rerecord": "rerecord",
    "pause": "toggle_pause", "reset": "reset", "stop": "stop",
}


class ButtonCommands:
    """The teleop device's command buttons as console requests: one request per press (a
    button held for several steps is one command). Polled by the actor loop every step and
    while paused, so a paused actor can be resumed from the device."""

    def __init__(self, device, teleop_config, console: OperatorConsole):
        mapped = set(getattr(teleop_config, "button_map", {}).values())
        self.device = device if mapped & set(BUTTON_COMMANDS) else None
        self.console = console
        self._held: frozenset[str] = frozenset()

    def poll(self) -> None:
        if self.device is None:
            return
        try:
            pressed = frozenset(name for name in self.device.read().buttons if name in BUTTON_COMMANDS)
        except TeleopDisconnected:
            pressed = frozenset()  # the intervention reports the device's absence
        for name in sorted(pressed - self._held):
            self.console.request(BUTTON_COMMANDS[name], "spacemouse")
        self._held = pressed
