"""Specification of the rotation helpers: conventions, round trips, and the edges at 0 and pi."""

import math

import numpy as np
import pytest

from robot_stack.control import (
    matrix_from_rotvec,
    matrix_from_rpy,
    matrix_to_quat,
    quat_to_matrix,
    rotvec_from_matrix,
    rpy_from_matrix,
    wrap_angle,
)

RANDOM_CASES = 500


def rot_x(angle):
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(angle):
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_z(angle):
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def random_unit_quaternions(count, seed=0):
    quaternions = np.random.default_rng(seed).normal(size=(count, 4))
    return quaternions / np.linalg.norm(quaternions, axis=1, keepdims=True)


def random_rotations(count, seed=0):
    return [quat_to_matrix(q) for q in random_unit_quaternions(count, seed)]


def assert_is_rotation(matrix):
    np.testing.assert_allclose(matrix.T @ matrix, np.eye(3), atol=1e-12)
    assert np.linalg.det(matrix) == pytest.approx(1.0, abs=1e-12)


# --- quaternions -------------------------------------------------------------


def test_quaternion_is_w_first():
    quarter_turn_about_z = [math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)]

    np.testing.assert_allclose(quat_to_matrix(quarter_turn_about_z), rot_z(math.pi / 2), atol=1e-15)


def test_quaternion_convention_matches_mujoco():
    mujoco = pytest.importorskip("mujoco")
    quaternion = random_unit_quaternions(1, seed=3)[0]
    mujoco_matrix = np.zeros(9)
    mujoco.mju_quat2Mat(mujoco_matrix, quaternion)

    np.testing.assert_allclose(quat_to_matrix(quaternion), mujoco_matrix.reshape(3, 3), atol=1e-15)


def test_quat_to_matrix_normalises_its_input():
    np.testing.assert_allclose(quat_to_matrix([2.0, 0.0, 0.0, 2.0]), rot_z(math.pi / 2), atol=1e-15)


def test_quat_to_matrix_rejects_zero_quaternion():
    with pytest.raises(ValueError, match="quaternion"):
        quat_to_matrix([0.0, 0.0, 0.0, 0.0])


def test_matrix_to_quat_round_trips_with_non_negative_w():
    for quaternion in random_unit_quaternions(RANDOM_CASES):
        recovered = matrix_to_quat(quat_to_matrix(quaternion))

        assert recovered[0] >= 0.0
        np.testing.assert_allclose(recovered, quaternion * np.sign(quaternion[0]), atol=1e-12)


@pytest.mark.parametrize("axis", [*np.eye(3), np.ones(3) / math.sqrt(3)])
def test_matrix_to_quat_is_exact_at_half_turns(axis):
    # trace = -1: the naive trace formula divides by ~0 here.
    half_turn = matrix_from_rotvec(math.pi * axis)

    quaternion = matrix_to_quat(half_turn)

    np.testing.assert_allclose(np.abs(quaternion), np.concatenate([[0.0], np.abs(axis)]), atol=1e-12)
    np.testing.assert_allclose(quat_to_matrix(quaternion), half_turn, atol=1e-12)


def test_q_and_minus_q_are_the_same_rotation():
    quaternion = random_unit_quaternions(1, seed=5)[0]

    np.testing.assert_allclose(quat_to_matrix(quaternion), quat_to_matrix(-quaternion), atol=1e-15)


# --- rotation vectors ----------------------------------------------------------


def test_rotvec_is_axis_times_angle():
    np.testing.assert_allclose(rotvec_from_matrix(rot_x(0.3)), [0.3, 0.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(rotvec_from_matrix(rot_y(-1.2)), [0.0, -1.2, 0.0], atol=1e-15)
    np.testing.assert_allclose(rotvec_from_matrix(rot_z(3.0)), [0.0, 0.0, 3.0], atol=1e-14)


def test_rotvec_takes_the_short_way_round():
    rotvec = rotvec_from_matrix(rot_z(math.radians(358.0)))

    np.testing.assert_allclose(rotvec, [0.0, 0.0, math.radians(-2.0)], atol=1e-14)


def test_rotvec_of_identity_is_zero():
    np.testing.assert_array_equal(rotvec_from_matrix(np.eye(3)), np.zeros(3))


def test_rotvec_is_accurate_for_tiny_angles():
    rotvec = np.array([1e-10, -2e-10, 3e-11])

    np.testing.assert_allclose(rotvec_from_matrix(matrix_from_rotvec(rotvec)), rotvec, rtol=1e-6, atol=1e-20)
    np.testing.assert_allclose(matrix_from_rotvec(rotvec), np.eye(3), atol=1e-9)


def test_rotvec_and_matrix_round_trip_for_random_rotations():
    rng = np.random.default_rng(1)
    axes = rng.normal(size=(RANDOM_CASES, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = rng.uniform(0.0, math.pi, size=RANDOM_CASES)

    for axis, angle in zip(axes, angles):
        rotvec = angle * axis
        matrix = matrix_from_rotvec(rotvec)

        assert_is_rotation(matrix)
        np.testing.assert_allclose(rotvec_from_matrix(matrix), rotvec, atol=1e-9)


@pytest.mark.parametrize("angle", [math.pi - 1e-3, math.pi - 1e-7, math.pi - 1e-12])
def test_rotvec_keeps_axis_and_sign_just_below_pi(angle):
    axis = np.array([2.0, -1.0, 0.5]) / math.sqrt(5.25)

    np.testing.assert_allclose(rotvec_from_matrix(matrix_from_rotvec(angle * axis)), angle * axis, atol=1e-9)


@pytest.mark.parametrize("axis", [*np.eye(3), np.array([0.6, -0.8, 0.0])])
def test_rotvec_at_exactly_pi_is_pi_times_the_axis_up_to_sign(axis):
    half_turn = 2.0 * np.outer(axis, axis) - np.eye(3)  # R = 2 a a^T - I is the 180 deg turn

    rotvec = rotvec_from_matrix(half_turn)

    assert np.linalg.norm(rotvec) == pytest.approx(math.pi, abs=1e-12)
    assert abs(rotvec @ axis) == pytest.approx(math.pi, abs=1e-12)
    np.testing.assert_allclose(matrix_from_rotvec(rotvec), half_turn, atol=1e-12)


def test_rotvec_agrees_with_quaternion_angle_for_random_rotations():
    for matrix in random_rotations(RANDOM_CASES, seed=2):
        w = matrix_to_quat(matrix)[0]

        assert np.linalg.norm(rotvec_from_matrix(matrix)) == pytest.approx(2.0 * math.acos(min(w, 1.0)), abs=1e-7)


# --- roll, pitch, yaw ------------------------------------------------------------


def test_rpy_is_extrinsic_xyz_rz_ry_rx():
    roll, pitch, yaw = 0.3, -0.4, 2.5

    np.testing.assert_allclose(matrix_from_rpy([roll, pitch, yaw]), rot_z(yaw) @ rot_y(pitch) @ rot_x(roll), atol=1e-15)


def test_rpy_and_matrix_round_trip_for_random_angles():
    rng = np.random.default_rng(4)
    for _ in range(RANDOM_CASES):
        rpy = np.array([rng.uniform(-math.pi, math.pi), rng.uniform(-1.5, 1.5), rng.uniform(-math.pi, math.pi)])

        np.testing.assert_allclose(rpy_from_matrix(matrix_from_rpy(rpy)), rpy, atol=1e-12)


def test_rpy_of_gripper_down_is_roll_pi():
    roll, pitch, yaw = rpy_from_matrix(np.diag([1.0, -1.0, -1.0]))

    assert abs(roll) == pytest.approx(math.pi)
    assert (pitch, yaw) == pytest.approx((0.0, 0.0))


@pytest.mark.parametrize("pitch", [math.pi / 2, -math.pi / 2])
def test_rpy_at_gimbal_lock_still_rebuilds_the_same_matrix(pitch):
    matrix = matrix_from_rpy([0.7, pitch, -0.2])

    rpy = rpy_from_matrix(matrix)

    assert rpy[2] == 0.0
    np.testing.assert_allclose(matrix_from_rpy(rpy), matrix, atol=1e-9)


# --- angle wrapping ----------------------------------------------------------------


@pytest.mark.parametrize(
    "angle, wrapped",
    [
        (0.0, 0.0),
        (math.pi, math.pi),
        (-math.pi, math.pi),
        (1.5 * math.pi, -0.5 * math.pi),
        (-3.0, -3.0),
        (7.0, 7.0 - 2 * math.pi),
    ],
)
def test_wrap_angle_maps_into_minus_pi_exclusive_to_pi_inclusive(angle, wrapped):
    assert wrap_angle(angle) == pytest.approx(wrapped, abs=1e-15)


def test_wrap_angle_works_elementwise_on_arrays():
    wrapped = wrap_angle(np.array([-math.pi, 0.5, 4.0 * math.pi + 0.25]))

    np.testing.assert_allclose(wrapped, [math.pi, 0.5, 0.25], atol=1e-14)
