"""The learner's status file: what a running learner reports, rewritten about once a second.

The learner writes it into its log dir; the session's progress line and stop rule, and anything
else watching a run (tests, benchmarks), read it. Both sides use this module, so a field added or
renamed is changed here once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, TypedDict

from robot_stack.data.files import write_json_atomic

STATUS_FILE = "status.json"


class LearnerStatus(TypedDict):
    task: str
    env_steps: int  # online transitions received
    episodes: int
    updates: int
    updates_per_s: float
    env_steps_per_s: float
    success_rate: Optional[float]  # over the last training.success_window_episodes episodes
    policy_success_rate: Optional[float]  # the same, episodes without interventions only
    deterministic_success_rate: Optional[float]  # over the last success_window_episodes deterministic ones, once that many
    deterministic_window: list[int]  # [successes, episodes] among the last success_window_episodes deterministic ones
    intervention_rate: Optional[float]
    weights_version: int
    online_transitions: int
    demo_transitions: int
    actors: list[str]
    wall_time_s: float  # learner running time, summed over restarts
    stopped: bool  # the final status of a learner that stopped cleanly
    time: float  # Unix time of writing


STATUS_FIELDS: tuple[str, ...] = tuple(LearnerStatus.__annotations__)


def status_path(log_dir: Path) -> Path:
    return Path(log_dir) / STATUS_FILE


def actor_status_path(log_dir: Path, actor_id: str) -> Path:
    """Where an actor started by a session writes its own status (state, paused, the live
    page's URL, who stopped it): beside the learner's."""
    return Path(log_dir) / f"actor-{actor_id}.json"


def read_json_status(path: Path) -> Optional[dict[str, Any]]:
    """A status file written atomically (the learner's or an actor's), or None before the first."""
    try:
        status = json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return status if isinstance(status, dict) else None


def write_status(log_dir: Path, status: LearnerStatus) -> None:
    """Replace the status in ``log_dir`` in one rename (a reader never sees half of it)."""
    missing = [name for name in STATUS_FIELDS if name not in status]
    unknown = [name for name in status if name not in STATUS_FIELDS]
    if missing or unknown:
        raise ValueError(f"learner status for {status_path(log_dir)}: missing fields {missing}, unknown fields {unknown}")
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    write_json_atomic(status_path(log_dir), dict(status))


def read_status(log_dir: Path) -> Optional[dict[str, Any]]:
    """The last status the learner wrote into ``log_dir``, or None before its first one."""
    return read_json_status(status_path(log_dir))
