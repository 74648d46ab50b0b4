"""What a learner accepts inside well-formed messages, beyond the transitions.

Decoding (``messages.decode``) guarantees types and sizes; these checks guarantee that the
content is something the learner can use: stats and event details are a bounded set of
named scalars; an episode-end event's fields have the types the learner reads them as.
Each check names the field at fault, so the learner's log says what an actor got wrong.

A transition batch is checked against the spec its actor announced by
``robot_stack.data.spec.check_batch``: that check is about the transition layout, not the
wire, and demo files go through the same one.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional

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
#: Who said whether the episode succeeded: the reward detector (or simulator), or the operator.
EPISODE_LABELS = ("detector", "operator")


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
        if name == "label" and value not in EPISODE_LABELS:
            raise ValueError(f"episode_end field 'label' must be one of {', '.join(EPISODE_LABELS)}, got {value!r:.60}")
    return checked


__all__ = [
    "DEFAULT_REPORT_RULES",
    "ReportBudget",
    "ReportRules",
    "detail_problem",
    "episode_end_detail",
    "scalar_problem",
]
