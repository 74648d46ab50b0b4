"""What a learner accepts inside well-formed messages.

Decoding (``messages.decode``) guarantees types and sizes; these checks guarantee that the
content is something training can use: a transition batch matches the spec its actor
announced, with finite numbers; stats and event details are a bounded set of named scalars;
an episode-end event's fields have the types the learner reads them as. Each check names
the array or field at fault, so the learner's log says what an actor got wrong.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np

from robot_stack.transport.messages import ArraySpec, Spec

OBSERVATION_PREFIX = "observations/"
NEXT_OBSERVATION_PREFIX = "next_observations/"
FLAG_KEYS = ("terminated", "truncated", "interventions", "gripper_changed")
ACTION_KEY = "actions"


# --------------------------------------------------------------------------- transition batches


def transition_batch_spec(observation_spec: Spec, action_spec: Spec) -> dict[str, ArraySpec]:
    """The per-transition spec of every array in a batch (without the leading axis): the
    observation under both prefixes, the actions, the reward and the flags."""
    spec: dict[str, ArraySpec] = {}
    for prefix in (OBSERVATION_PREFIX, NEXT_OBSERVATION_PREFIX):
        spec.update({prefix + key: value for key, value in observation_spec.items()})
    spec.update(action_spec)
    spec["rewards"] = ArraySpec.of(np.zeros((), np.float32))
    spec.update({key: ArraySpec.of(np.zeros((), bool)) for key in FLAG_KEYS})
    return spec


def batch_spec(observation_spec: Spec, action_dim: int) -> dict[str, ArraySpec]:
    """``transition_batch_spec`` for float32 actions of ``action_dim``."""
    return transition_batch_spec(observation_spec, {ACTION_KEY: ArraySpec.of(np.zeros(action_dim, np.float32))})


def check_batch(arrays: Mapping[str, np.ndarray], spec: Mapping[str, ArraySpec], where: str) -> None:
    """Raise ValueError naming ``where`` and the array if arrays do not match the batch spec:
    keys, dtypes, shapes, one transition count, finite floats, actions within [-1, 1] (the
    env executes them clipped, and the critic extrapolates wildly outside), bools that are
    0 or 1 (a bool array viewed on received bytes can hold any byte)."""
    missing = sorted(set(spec) - set(arrays))
    extra = sorted(set(arrays) - set(spec))
    if missing or extra:
        raise ValueError(
            f"{where}: keys do not match the expected spec"
            + (f"; missing {missing}" if missing else "")
            + (f"; unexpected {extra}" if extra else "")
        )
    counts = set()
    for key, expected in spec.items():
        array = arrays[key]
        if array.ndim == 0 or tuple(array.shape[1:]) != tuple(expected.shape) or array.dtype != np.dtype(expected.dtype):
            raise ValueError(
                f"{where}: '{key}' is {array.dtype.name}{list(array.shape)}; expected "
                f"{np.dtype(expected.dtype).name}{['N', *expected.shape]} (N transitions)"
            )
        counts.add(array.shape[0])
    if len(counts) > 1:
        raise ValueError(f"{where}: arrays disagree on the number of transitions ({sorted(counts)})")
    for key in spec:
        array = arrays[key]
        if not array.size:
            continue
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            row = int(np.flatnonzero(~np.isfinite(array).reshape(len(array), -1).all(axis=1))[0])
            raise ValueError(f"{where}: '{key}' holds a NaN or infinity (first in transition {row})")
        if key == ACTION_KEY and array.dtype.kind == "f" and np.abs(array).max() > 1.0:
            raise ValueError(f"{where}: '{key}' holds values outside [-1, 1] (largest magnitude {np.abs(array).max():g})")
        if array.dtype.kind == "b" and array.view(np.uint8).max() > 1:
            raise ValueError(f"{where}: '{key}' holds bytes other than 0 and 1 for its booleans")


# --------------------------------------------------------------------------- stats and events

# Names become CSV columns and TensorBoard tags: short, printable, no separators of either.
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.:/-]+$")


@dataclass(frozen=True)
class ReportRules:
    """Bounds on what an actor's Stats and Event messages may carry, per actor. A stats name
    becomes a column of the learner's actors CSV (each new one rewrites the file), so the
    names an actor may introduce are bounded over its whole life, not only per message."""

    max_keys: int = 64  # per message
    max_names_per_actor: int = 128  # distinct stats names over the actor's life
    max_name_chars: int = 64
    max_text_chars: int = 256
    messages_per_s: float = 50.0  # sustained, per connection
    burst_messages: int = 500  # e.g. the events an actor queued while the learner was away


DEFAULT_REPORT_RULES = ReportRules()


def scalar_problem(name: Any, value: Any, rules: ReportRules) -> Optional[str]:
    """Why ``name: value`` cannot be a reported scalar, or None."""
    if not isinstance(name, str) or not 0 < len(name) <= rules.max_name_chars or not _NAME_PATTERN.match(name):
        shown = name if not isinstance(name, str) else name[: rules.max_name_chars] + ("..." if len(name) > rules.max_name_chars else "")
        return f"name {shown!r} is not 1-{rules.max_name_chars} characters of letters, digits and _.:/-"
    if value is None or isinstance(value, (bool, int, float)):
        return None
    if isinstance(value, str):
        if len(value) > rules.max_text_chars:
            return f"'{name}' is text of {len(value)} characters; at most {rules.max_text_chars}"
        return None
    return f"'{name}' is a {type(value).__name__}; reports carry numbers, booleans, short text or nothing"


def detail_problem(detail: Mapping[str, Any], rules: ReportRules = DEFAULT_REPORT_RULES) -> Optional[str]:
    """Why an Event's detail breaks the report rules (the first reason), or None."""
    if len(detail) > rules.max_keys:
        return f"{len(detail)} fields; at most {rules.max_keys}"
    for name, value in detail.items():
        problem = scalar_problem(name, value, rules)
        if problem is not None:
            return problem
    return None


class ReportBudget:
    """A token bucket: ``rules.burst_messages`` at once, ``rules.messages_per_s`` sustained."""

    def __init__(self, rules: ReportRules, now: float) -> None:
        self.rules = rules
        self.tokens = float(rules.burst_messages)
        self.updated = now

    def take(self, now: float) -> bool:
        rules = self.rules
        self.tokens = min(float(rules.burst_messages), self.tokens + (now - self.updated) * rules.messages_per_s)
        self.updated = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


# --------------------------------------------------------------------------- episode-end events

_FLAG_FIELDS = ("success", "true_success", "intervened", "deterministic")
_COUNT_FIELDS = ("episode", "intervention_steps", "length", "env_steps_total")
_VERSION_FIELDS = ("weights_version", "last_seq")
_NUMBER_FIELDS = ("return",)


def episode_end_detail(detail: Mapping[str, Any]) -> dict[str, Any]:
    """The detail of an ``episode_end`` event with the fields the learner reads checked and
    made plain (flags 0/1, counts >= 0, versions >= -1, a finite return); other fields pass
    through. Raises ValueError naming the field and its value."""
    checked = dict(detail)
    for name, value in detail.items():
        if name in _FLAG_FIELDS:
            if isinstance(value, bool) or (isinstance(value, (int, float)) and value in (0, 1)):
                checked[name] = int(value)
                continue
            raise ValueError(f"episode_end field '{name}' must be 0, 1, true or false, got {value!r}")
        if name in _COUNT_FIELDS or name in _VERSION_FIELDS:
            lowest = 0 if name in _COUNT_FIELDS else -1
            if type(value) is int and lowest <= value < 2**63:
                continue
            raise ValueError(f"episode_end field '{name}' must be an integer >= {lowest}, got {value!r}")
        if name in _NUMBER_FIELDS:
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                checked[name] = float(value)
                continue
            raise ValueError(f"episode_end field '{name}' must be a finite number, got {value!r}")
    return checked


__all__ = [
    "ACTION_KEY",
    "DEFAULT_REPORT_RULES",
    "FLAG_KEYS",
    "NEXT_OBSERVATION_PREFIX",
    "OBSERVATION_PREFIX",
    "ReportBudget",
    "ReportRules",
    "batch_spec",
    "check_batch",
    "detail_problem",
    "episode_end_detail",
    "scalar_problem",
    "transition_batch_spec",
]
