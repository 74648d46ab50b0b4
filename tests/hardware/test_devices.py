from typing import get_args

from robot_stack.config.schema import RobotConfig
from robot_stack.hardware.devices import FRANKA_DRIVERS


def test_every_driver_a_robot_config_accepts_has_a_backend():
    assert set(FRANKA_DRIVERS) == set(get_args(RobotConfig.model_fields["driver"].annotation))
