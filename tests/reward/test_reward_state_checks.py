"""State checks from the task YAML: compared from a table, never evaluated from text."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from robot_stack.config.schema import StateCheckConfig
from robot_stack.reward.frame_sets import STATE_QUANTITIES
from robot_stack.reward.state_checks import StateChecks


def test_checks_combine_with_and():
    checks = StateChecks([StateCheckConfig(quantity="tcp_z_m", op=">=", value=0.1),
                          StateCheckConfig(quantity="gripper_width_m", op="<", value=0.06)])
    state = np.zeros((3, len(STATE_QUANTITIES)), np.float32)
    z, width = STATE_QUANTITIES.index("tcp_z_m"), STATE_QUANTITIES.index("gripper_width_m")
    state[:, z] = (0.1, 0.2, 0.05)
    state[:, width] = (0.04, 0.08, 0.04)
    np.testing.assert_array_equal(checks.passes(state), [True, False, False])
    assert checks.passes(state[0]) is True
    assert checks.failed(state[1]) == ["gripper_width_m < 0.06 (is 0.08)"]
    assert "tcp_z_m >= 0.1" in checks.describe()
    assert not StateChecks(())


def test_unknown_quantity_or_operator_is_a_config_error():
    with pytest.raises(ValidationError):
        StateCheckConfig(quantity="tcp_height", op=">", value=0.1)
    with pytest.raises(ValidationError):
        StateCheckConfig(quantity="tcp_z_m", op="__import__('os')", value=0.1)
