"""Making transitions in the flat format every stage shares (the wire, the demo files, the
replay); the format itself, its names and specs are ``robot_stack.data.spec``.

For binary-gripper tasks the recorded gripper command is exactly -1 (open), 0 (stay) or +1
(close), by the env's own thresholds: the grasp critic learns over those three choices,
so it must see the choice the env acted on, not the raw number that led to it.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from robot_stack.data.spec import (
    ACTION_KEY,
    GRIPPER_THRESHOLD,
    NEXT_OBSERVATION_PREFIX,
    OBSERVATION_PREFIX,
    REWARD_KEY,
    flatten_observation,
)


def hold_if_nonfinite(action: np.ndarray) -> tuple[np.ndarray, bool]:
    """The action, or the hold action (zeros: no motion, gripper stays) if any entry is
    NaN/inf; the env would refuse it, and a robot must keep being commanded."""
    action = np.asarray(action, dtype=np.float32)
    if np.all(np.isfinite(action)):
        return action, False
    return np.zeros_like(action), True


def executed_action(action: np.ndarray, binary_gripper: bool) -> np.ndarray:
    """The action as the env executes it: clipped to [-1, 1], the gripper as -1/0/+1."""
    executed = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
    if binary_gripper:
        command = executed[-1]
        executed[-1] = 1.0 if command >= GRIPPER_THRESHOLD else -1.0 if command <= -GRIPPER_THRESHOLD else 0.0
    return executed


def gripper_closed_after_reset(env, reset_info: Mapping[str, Any]) -> bool:
    """Whether the gripper is closed at the start of an episode (reset opens a binary
    gripper; a fixed_closed task holds it shut)."""
    return bool(reset_info.get("gripper_closed", not env.binary_gripper))


def make_transition(
    observation: Mapping[str, Any],
    action: np.ndarray,
    reward: float,
    next_observation: Mapping[str, Any],
    terminated: bool,
    truncated: bool,
    intervention: bool,
    gripper_changed: bool,
    binary_gripper: bool,
) -> dict[str, np.ndarray]:
    """One transition's arrays (no leading axis). ``action`` is the one sent to the env."""
    transition = {OBSERVATION_PREFIX + k: v for k, v in flatten_observation(observation).items()}
    transition.update({NEXT_OBSERVATION_PREFIX + k: v for k, v in flatten_observation(next_observation).items()})
    transition[ACTION_KEY] = executed_action(action, binary_gripper)
    transition[REWARD_KEY] = np.float32(reward)
    transition["terminated"] = np.bool_(terminated)
    transition["truncated"] = np.bool_(truncated)
    transition["interventions"] = np.bool_(intervention)
    transition["gripper_changed"] = np.bool_(gripper_changed)
    return transition


def stack_transitions(transitions: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """N transitions -> one batch (every array gets the leading axis N)."""
    if not transitions:
        raise ValueError("cannot stack an empty list of transitions")
    return {key: np.stack([t[key] for t in transitions]) for key in transitions[0]}


def concatenate_batches(batches: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if not batches:
        raise ValueError("cannot concatenate an empty list of batches")
    return {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}


class TransitionBuffer:
    """Transitions collected between two sends (the actor: one episode in progress)."""

    def __init__(self) -> None:
        self._transitions: list[dict[str, np.ndarray]] = []

    def __len__(self) -> int:
        return len(self._transitions)

    def add(self, transition: dict[str, np.ndarray]) -> None:
        self._transitions.append(transition)

    def take(self) -> dict[str, np.ndarray]:
        """The transitions as one batch (empty dict when there are none), and the buffer empty."""
        batch = stack_transitions(self._transitions) if self._transitions else {}
        self._transitions = []
        return batch

    def amend_last(self, **values: np.ndarray) -> None:
        """Change fields of the latest transition (an operator's label ends an episode there)."""
        if not self._transitions:
            raise ValueError("no transition to amend")
        last = self._transitions[-1]
        unknown = sorted(set(values) - set(last))
        if unknown:
            raise KeyError(f"transitions have no field(s) {unknown}")
        last.update(values)
