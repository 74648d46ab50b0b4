"""Specification of the safety box: what it clamps, what it leaves alone, what it refuses."""

import math

import numpy as np
import pytest

from robot_stack.control import SafetyBox, matrix_from_rpy, rpy_from_matrix

GRIPPER_DOWN = np.diag([1.0, -1.0, -1.0])  # Rx(pi): the TCP z axis points at the table


def make_box(**overrides):
    fields = dict(
        xyz_min_m=[0.3, -0.2, 0.05],
        xyz_max_m=[0.7, 0.2, 0.40],
        rpy_min_rad=[-0.1, -0.2, -0.3],
        rpy_max_rad=[0.1, 0.2, 0.3],
        reference_rotation=GRIPPER_DOWN,
    )
    fields.update(overrides)
    return SafetyBox(**fields)


def deviation_rpy(rotation):
    return rpy_from_matrix(GRIPPER_DOWN.T @ rotation)


def test_target_inside_the_box_comes_back_unchanged_as_new_arrays():
    position = np.array([0.5, 0.1, 0.2])
    rotation = GRIPPER_DOWN @ matrix_from_rpy([0.05, -0.1, 0.2])

    clamped_position, clamped_rotation, clamped = make_box().clamp(position, rotation)

    assert not clamped
    np.testing.assert_array_equal(clamped_position, position)
    np.testing.assert_array_equal(clamped_rotation, rotation)
    assert clamped_position is not position and clamped_rotation is not rotation


def test_position_outside_the_box_is_clamped_per_axis():
    clamped_position, clamped_rotation, clamped = make_box().clamp(np.array([1.0, -0.5, 0.2]), GRIPPER_DOWN)

    assert clamped
    np.testing.assert_allclose(clamped_position, [0.7, -0.2, 0.2])
    np.testing.assert_array_equal(clamped_rotation, GRIPPER_DOWN)


def test_orientation_deviation_is_clamped_per_rpy_axis_around_the_reference():
    rotation = GRIPPER_DOWN @ matrix_from_rpy([0.05, -0.5, 0.6])

    _, clamped_rotation, clamped = make_box().clamp(np.array([0.5, 0.0, 0.2]), rotation)

    assert clamped
    np.testing.assert_allclose(deviation_rpy(clamped_rotation), [0.05, -0.2, 0.3], atol=1e-12)


@pytest.mark.parametrize("absolute_roll", [math.pi - 0.05, -math.pi + 0.05])
def test_gripper_down_target_is_not_clamped_when_its_absolute_roll_wraps_past_pi(absolute_roll):
    # Absolute roll +179 deg and -179 deg are both 3 deg from gripper-down: deviations of
    # -0.05 and +0.05 rad, inside +-0.1, with no wrap to handle.
    rotation = matrix_from_rpy([absolute_roll, 0.0, 0.0])

    _, clamped_rotation, clamped = make_box().clamp(np.array([0.5, 0.0, 0.2]), rotation)

    assert not clamped
    np.testing.assert_array_equal(clamped_rotation, rotation)


def test_clamp_leaves_its_inputs_untouched():
    position, rotation = np.array([2.0, 2.0, 2.0]), matrix_from_rpy([0.0, 0.0, 1.0])
    position_before, rotation_before = position.copy(), rotation.copy()

    make_box().clamp(position, rotation)

    np.testing.assert_array_equal(position, position_before)
    np.testing.assert_array_equal(rotation, rotation_before)


@pytest.mark.parametrize(
    "field, value",
    [
        ("xyz_min_m", [0.8, -0.2, 0.05]),  # x min above x max
        ("rpy_max_rad", [0.1, -0.3, 0.3]),  # pitch max below pitch min
    ],
)
def test_min_above_max_is_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        make_box(**{field: value})


@pytest.mark.parametrize(
    "field, value",
    [
        ("xyz_max_m", [0.7, 0.2]),
        ("rpy_min_rad", [[-0.1, -0.2, -0.3]]),
        ("reference_rotation", np.eye(4)),
    ],
)
def test_wrong_shape_is_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        make_box(**{field: value})


def test_non_finite_limit_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="xyz_max_m"):
        make_box(xyz_max_m=[0.7, math.nan, 0.4])


def test_rpy_limit_in_degrees_is_refused():
    with pytest.raises(ValueError, match="rpy_max_rad"):
        make_box(rpy_max_rad=[10.0, 20.0, 30.0])


@pytest.mark.parametrize("reference", [2.0 * np.eye(3), np.diag([1.0, 1.0, -1.0]), np.ones((3, 3))])
def test_reference_that_is_not_a_rotation_is_refused(reference):
    with pytest.raises(ValueError, match="reference_rotation"):
        make_box(reference_rotation=reference)


def test_limits_are_read_only():
    box = make_box()

    with pytest.raises(ValueError):
        box.xyz_max_m[0] = 10.0
