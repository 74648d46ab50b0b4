"""The simulated FR3 under the 1 kHz Cartesian impedance law, through the RobotBackend API."""

import math

import numpy as np
import pytest

from robot_stack.config import load_task_config
from robot_stack.control import matrix_from_rpy
from robot_stack.control.from_config import safety_box_from_config
from robot_stack.hardware.interfaces import RobotBackend
from robot_stack.sim.backend import SimFrankaBackend
from robot_stack.sim.world import SimWorld

DOWN = matrix_from_rpy(np.array([math.pi, 0.0, 0.0]))


@pytest.fixture
def config(pick_cube_state_yaml):
    return load_task_config(pick_cube_state_yaml)


@pytest.fixture
def backend(config):
    return SimFrankaBackend(SimWorld(config.robot, config.task.sim))


def track(backend, position, rotation=DOWN, seconds=2.0, period=0.1):
    for _ in range(int(round(seconds / period))):
        backend.set_target(position, rotation)
        backend.advance(period)
    return backend.read_state()


def test_sim_backend_implements_the_robot_backend_interface(backend):
    assert isinstance(backend, RobotBackend)


def test_home_pose_puts_the_tcp_where_a_real_fr3_has_it(backend):
    state = backend.read_state()
    # FR3 home (0, -pi/4, 0, -3pi/4, 0, pi/2, pi/4) with the Franka Hand: TCP ~(0.307, 0, 0.487) m, pointing down.
    np.testing.assert_allclose(state.tcp_position_m, [0.307, 0.0, 0.487], atol=0.002)
    np.testing.assert_allclose(state.tcp_rotation, DOWN, atol=1e-3)


def test_arm_reaches_a_target_and_settles(backend):
    goal = np.array([0.5, 0.05, 0.2])
    state = track(backend, goal, seconds=2.5)
    assert np.linalg.norm(state.tcp_position_m - goal) < 0.002
    assert np.linalg.norm(state.tcp_velocity[:3]) < 0.01


def test_far_target_moves_at_the_speed_the_error_clip_allows(backend):
    # With the error clipped to 1 cm the spring pulls with at most 2000 N/m * 0.01 m = 20 N,
    # so the TCP cruises at about K * clip / D = 0.22 m/s instead of lunging at a target 30 cm away.
    start = backend.read_state().tcp_position_m
    goal = start + np.array([0.0, 0.0, -0.3])
    speeds = []
    for _ in range(8):
        backend.set_target(goal, DOWN)
        backend.advance(0.1)
        speeds.append(np.linalg.norm(backend.read_state().tcp_velocity[:3]))
    assert max(speeds) < 0.35


def test_pressing_into_the_table_is_force_bounded_by_the_error_clip(backend):
    # Target 20 cm below the table surface: the contact force must stay near the clip's
    # bound (K * clip = 20 N), not K * 0.2 m = 400 N.
    track(backend, np.array([0.5, 0.0, 0.05]), seconds=2.0)
    state = track(backend, np.array([0.5, 0.0, -0.2]), seconds=2.0)
    vertical_force = abs(state.tcp_wrench[2])
    assert 10.0 < vertical_force < 26.0, vertical_force


def test_target_outside_the_safety_box_is_clamped(config):
    box = safety_box_from_config(config.task)
    backend = SimFrankaBackend(SimWorld(config.robot, config.task.sim), box)
    status = backend.set_target(np.array([1.5, 0.0, 0.2]), DOWN)
    assert status.clamped
    assert status.position_m[0] == pytest.approx(config.task.safety_box.xyz_max_m[0])
    state = track(backend, np.array([1.5, 0.0, 0.2]), seconds=3.0)
    assert state.tcp_position_m[0] <= config.task.safety_box.xyz_max_m[0] + 0.003


def test_nan_target_is_refused_and_nothing_moves(backend):
    before = backend.read_state()
    with pytest.raises(ValueError, match="non-finite target"):
        backend.set_target(np.array([0.5, np.nan, 0.2]), DOWN)
    backend.advance(0.2)
    after = backend.read_state()
    np.testing.assert_allclose(after.tcp_position_m, before.tcp_position_m, atol=1e-3)
    assert np.all(np.isfinite(after.tau_commanded_nm))


def test_watchdog_holds_position_when_targets_stop(backend):
    start = backend.read_state().tcp_position_m
    backend.set_target(start + np.array([0.0, 0.0, -0.3]), DOWN)
    backend.advance(backend.watchdog_timeout_s + 0.05)
    assert backend.watchdog_tripped
    held_at = backend.read_state().tcp_position_m
    backend.advance(1.0)
    final = backend.read_state().tcp_position_m
    # It stops near where it was when the watchdog tripped, far short of the stale goal.
    assert np.linalg.norm(final - held_at) < 0.03
    assert final[2] > start[2] - 0.2


def test_gripper_closes_and_opens(backend):
    backend.set_gripper(0.0)
    backend.advance(0.5)
    assert backend.read_state().gripper_width_m < 0.002
    backend.set_gripper(0.08)
    backend.advance(0.5)
    assert backend.read_state().gripper_width_m == pytest.approx(0.08, abs=0.002)


def test_joint_move_reaches_the_goal_configuration(backend):
    goal = np.array([0.2, -0.5, 0.1, -2.2, 0.05, 1.8, 0.6])
    backend.move_to_joint_positions(goal, 1.5)
    reached = backend.read_state()
    np.testing.assert_allclose(reached.q_rad, goal, atol=0.02)
    # Afterwards the Cartesian law holds the TCP where the joint move left it.
    backend.advance(0.4)
    np.testing.assert_allclose(backend.read_state().tcp_position_m, reached.tcp_position_m, atol=0.003)


def test_joint_move_outside_the_limits_is_refused(backend):
    with pytest.raises(ValueError, match="outside the joint limits"):
        backend.move_to_joint_positions(np.array([0.0, 0.0, 0.0, 0.5, 0.0, 1.0, 0.0]), 1.0)
