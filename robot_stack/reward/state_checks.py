"""State checks: conditions on the robot state that a success also needs (task.reward.state_checks).

A camera can be fooled (a cube held in front of the lens looks lifted); a check such as
``tcp_z_m > 0.1`` or ``gripper_width_m < 0.05`` cannot. The comparison is picked from a
fixed table, never evaluated from text.
"""

from __future__ import annotations

import operator
from typing import Callable, Sequence

import numpy as np

from robot_stack.config.schema import StateCheckConfig
from robot_stack.reward.frame_sets import STATE_QUANTITIES

_OPS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


class StateChecks:
    def __init__(self, checks: Sequence[StateCheckConfig], state_names: Sequence[str] = STATE_QUANTITIES):
        self.checks = tuple(checks)
        names = list(state_names)
        missing = [c.quantity for c in self.checks if c.quantity not in names]
        if missing:
            raise ValueError(f"state checks read {missing}, which the state vector {tuple(names)} does not have")
        self._columns = [names.index(c.quantity) for c in self.checks]

    def __bool__(self) -> bool:
        return bool(self.checks)

    def passes(self, state: np.ndarray) -> np.ndarray:
        """state (N, Q) or (Q,) in ``state_names`` order -> bool (N,) or a bool."""
        state = np.asarray(state, dtype=np.float64)
        single = state.ndim == 1
        rows = state[None] if single else state
        ok = np.ones(rows.shape[0], dtype=bool)
        for check, column in zip(self.checks, self._columns):
            ok &= _OPS[check.op](rows[:, column], check.value)
        return bool(ok[0]) if single else ok

    def failed(self, state: np.ndarray) -> list[str]:
        """The checks one state (Q,) fails, written out (for logs and service messages)."""
        state = np.asarray(state, dtype=np.float64)
        return [
            f"{c.quantity} {c.op} {c.value} (is {state[column]:.4g})"
            for c, column in zip(self.checks, self._columns)
            if not _OPS[c.op](state[column], c.value)
        ]

    def describe(self) -> str:
        return " and ".join(f"{c.quantity} {c.op} {c.value}" for c in self.checks) or "none"
