from typing import get_args

import pytest

from robot_stack.config.schema import CameraConfig, CamerasConfig, RobotConfig, TaskSpec, TeleopConfig
from robot_stack.hardware.devices import FRANKA_DRIVERS, make_cameras, make_robot_backend, make_teleop


def test_every_driver_a_robot_config_accepts_has_a_backend():
    assert set(FRANKA_DRIVERS) == set(get_args(RobotConfig.model_fields["driver"].annotation))


def test_the_cameras_come_from_the_cameras_section_and_a_simulated_one_is_refused():
    cameras = CamerasConfig(cameras={"front": CameraConfig(kind="sim")})

    with pytest.raises(ValueError, match=r"\['front'\] are kind 'sim'"):
        make_cameras(cameras, ("front",))


def test_a_camera_the_cameras_section_does_not_define_is_named():
    with pytest.raises(ValueError, match=r"\['wrist'\] are not in the cameras file"):
        make_cameras(CamerasConfig(), ("wrist",))


def test_the_teleop_section_of_kind_none_builds_no_device_and_scripted_is_refused():
    assert make_teleop(TeleopConfig(kind="none")) is None
    with pytest.raises(ValueError, match="scripted teleoperator lives in the simulator"):
        make_teleop(TeleopConfig(kind="scripted"))


def test_the_robot_backend_from_a_simulated_robot_section_points_at_the_sim_env():
    with pytest.raises(ValueError, match="make_sim_env"):
        make_robot_backend(RobotConfig(backend="sim"), TaskSpec(name="t"))
