"""Specification of the impedance law against hand-computed torques.

Most cases use the Jacobian [I6 | 0]: joint i moves the TCP along (or about) axis i and
joint 7 moves nothing, so J^T w = [w, 0] and every expected torque is the wrench itself.
"""

import math

import numpy as np
import pytest

from robot_stack.control import (
    FRANKA_TORQUE_LIMITS_NM,
    ArmState,
    CartesianTarget,
    ImpedanceGains,
    SafetyBox,
    impedance_torques,
    matrix_from_rotvec,
    matrix_from_rpy,
    rotvec_from_matrix,
)

AXIS_JACOBIAN = np.hstack([np.eye(6), np.zeros((6, 1))])
GRIPPER_DOWN = np.diag([1.0, -1.0, -1.0])
HOME_POSITION = np.array([0.5, 0.0, 0.3])
NO_LIMIT = 1e6


def make_gains(**overrides):
    fields = dict(
        stiffness=[2000.0, 2000.0, 2000.0, 150.0, 150.0, 150.0],
        damping=[80.0, 80.0, 80.0, 20.0, 20.0, 20.0],
        error_clip=[0.01, 0.01, 0.01, 0.1, 0.1, 0.1],
        nullspace_stiffness=0.0,
        torque_rate_limit_nm=NO_LIMIT,
        torque_limits_nm=[NO_LIMIT] * 7,
    )
    fields.update(overrides)
    return ImpedanceGains(**fields)


def make_state(**overrides):
    fields = dict(
        q=np.zeros(7),
        dq=np.zeros(7),
        ee_position=HOME_POSITION.copy(),
        ee_rotation=GRIPPER_DOWN.copy(),
        jacobian=AXIS_JACOBIAN.copy(),
        coriolis=np.zeros(7),
    )
    fields.update(overrides)
    return ArmState(**fields)


def target_at(position=HOME_POSITION, rotation=GRIPPER_DOWN):
    return CartesianTarget(position=np.array(position, dtype=float), rotation=np.array(rotation, dtype=float))


def torques(state=None, target=None, gains=None, q_nullspace=None, tau_previous=None, safety_box=None):
    return impedance_torques(
        state if state is not None else make_state(),
        target if target is not None else target_at(),
        gains if gains is not None else make_gains(),
        q_nullspace if q_nullspace is not None else np.zeros(7),
        tau_previous if tau_previous is not None else np.zeros(7),
        safety_box,
    )


# --- the spring ----------------------------------------------------------------


def test_at_rest_on_target_the_torque_is_zero():
    result = torques()

    np.testing.assert_array_equal(result.tau, np.zeros(7))
    assert not result.target_clamped and not result.error_clipped


def test_position_error_inside_the_clip_gives_minus_k_times_error():
    # e = current - desired = (0.5 - 0.503, 0 + 0.002, 0.3 - 0.301) = (-0.003, 0.002, -0.001)
    result = torques(target=target_at([0.503, -0.002, 0.301]))

    np.testing.assert_allclose(result.tau, [6.0, -4.0, 2.0, 0.0, 0.0, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(result.pose_error, [-0.003, 0.002, -0.001, 0.0, 0.0, 0.0], atol=1e-12)
    assert not result.error_clipped


def test_far_target_pulls_with_at_most_stiffness_times_clip():
    # 1 m away on every axis: 2000 N/m * 0.01 m = 20 N per axis, not 2000 N.
    result = torques(target=target_at(HOME_POSITION + [1.0, -1.0, 1.0]))

    np.testing.assert_allclose(result.tau, [20.0, -20.0, 20.0, 0.0, 0.0, 0.0, 0.0], atol=1e-9)
    assert result.error_clipped


def test_orientation_error_gives_minus_k_times_rotation_vector():
    # Current is the target turned 0.05 rad about base x: the torque turns it back.
    result = torques(state=make_state(ee_rotation=matrix_from_rotvec([0.05, 0.0, 0.0]) @ GRIPPER_DOWN))

    np.testing.assert_allclose(result.tau, [0.0, 0.0, 0.0, -7.5, 0.0, 0.0, 0.0], atol=1e-9)


def test_orientation_error_is_clipped_in_true_radians():
    result = torques(state=make_state(ee_rotation=matrix_from_rotvec([0.0, -0.5, 0.0]) @ GRIPPER_DOWN))

    np.testing.assert_allclose(result.tau, [0.0, 0.0, 0.0, 0.0, 15.0, 0.0, 0.0], atol=1e-9)
    assert result.error_clipped


@pytest.mark.parametrize("base_orientation", [np.eye(3), GRIPPER_DOWN], ids=["upright", "gripper_down"])
def test_yaw_error_across_the_pi_wrap_is_the_short_two_degrees(base_orientation):
    # Current yaw +179 deg, desired -179 deg: current is 2 deg short of desired going
    # positive, so e_z = -2 deg and the torque is +k * 2 deg, not -k * 358 deg.
    current = matrix_from_rpy([0.0, 0.0, math.radians(179.0)]) @ base_orientation
    desired = matrix_from_rpy([0.0, 0.0, math.radians(-179.0)]) @ base_orientation

    result = torques(state=make_state(ee_rotation=current), target=target_at(rotation=desired))

    np.testing.assert_allclose(result.pose_error[3:], [0.0, 0.0, -math.radians(2.0)], atol=1e-12)
    np.testing.assert_allclose(result.tau, [0.0, 0.0, 0.0, 0.0, 0.0, 150.0 * math.radians(2.0), 0.0], atol=1e-9)
    assert not result.error_clipped


# --- the damper, Coriolis, and the nullspace ---------------------------------------


def test_damping_opposes_the_tcp_twist():
    # TCP twist J dq = dq[:6]; joint 7 moves nothing and so is not damped by the task.
    dq = np.array([0.1, -0.2, 0.0, 0.0, 0.0, 0.3, 0.7])

    result = torques(state=make_state(dq=dq))

    np.testing.assert_allclose(result.tau, [-8.0, 16.0, 0.0, 0.0, 0.0, -6.0, 0.0], atol=1e-9)


def test_coriolis_torque_is_added_as_is():
    coriolis = np.array([0.1, -0.2, 0.3, -0.4, 0.5, -0.6, 0.7])

    result = torques(state=make_state(coriolis=coriolis))

    np.testing.assert_allclose(result.tau, coriolis, atol=1e-12)


def test_posture_torque_acts_only_on_the_joint_that_does_not_move_the_tcp():
    # With J = [I6 | 0] the nullspace is joint 7: k_ns (q_ns - q) = 10 * 0.3 = 3 Nm there,
    # and joints 1-6 keep only lambda / (1 + lambda) ~ 1e-6 of their posture torque.
    q_nullspace = np.array([0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3])

    result = torques(gains=make_gains(nullspace_stiffness=10.0), q_nullspace=q_nullspace)

    np.testing.assert_allclose(result.tau, [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 3.0], atol=1e-5)


def test_nullspace_damping_defaults_to_critical_for_unit_inertia():
    assert make_gains(nullspace_stiffness=16.0).nullspace_damping == pytest.approx(8.0)


def test_posture_torque_produces_no_tcp_wrench_on_a_redundant_arm():
    rng = np.random.default_rng(7)
    jacobian = rng.normal(size=(6, 7))
    q = rng.uniform(-1.0, 1.0, size=7)
    # Park the TCP on its target moving with zero twist so only the posture term remains.
    null_direction = np.linalg.svd(jacobian)[2][-1]
    state = make_state(q=q, dq=0.4 * null_direction, jacobian=jacobian)
    gains = make_gains(nullspace_stiffness=20.0, nullspace_damping=3.0)
    q_nullspace = q + rng.uniform(-0.5, 0.5, size=7)

    tau = torques(state=state, gains=gains, q_nullspace=q_nullspace).tau

    tcp_wrench = np.linalg.pinv(jacobian.T) @ tau
    posture_torque = 20.0 * (q_nullspace - q) - 3.0 * state.dq
    projector = np.eye(7) - jacobian.T @ np.linalg.pinv(jacobian.T)
    assert np.linalg.norm(tcp_wrench) < 1e-4 * np.linalg.norm(posture_torque)
    np.testing.assert_allclose(tau, projector @ posture_torque, atol=1e-4 * np.linalg.norm(posture_torque))
    assert np.linalg.norm(tau) > 0.1  # the posture term does act


def test_closing_the_loop_on_a_unit_inertia_arm_settles_on_the_target():
    # Joints 1-3 move the TCP along x, y, z and joints 4-6 turn it about x, y, z, each
    # with unit inertia, integrated at the law's 1 kHz. Sign errors would diverge.
    target = target_at(HOME_POSITION + [0.05, -0.03, 0.02], matrix_from_rotvec([0.2, -0.1, 0.3]) @ GRIPPER_DOWN)
    gains = make_gains(damping=[89.0, 89.0, 89.0, 25.0, 25.0, 25.0], torque_rate_limit_nm=1.0)
    state = make_state()
    tau, dt = np.zeros(7), 1e-3

    for _ in range(2000):
        tau = impedance_torques(state, target, gains, np.zeros(7), tau).tau
        state.dq = state.dq + tau * dt
        state.ee_position = state.ee_position + state.dq[:3] * dt
        state.ee_rotation = matrix_from_rotvec(state.dq[3:6] * dt) @ state.ee_rotation

    np.testing.assert_allclose(state.ee_position, target.position, atol=1e-4)
    np.testing.assert_allclose(rotvec_from_matrix(state.ee_rotation @ target.rotation.T), np.zeros(3), atol=1e-3)


# --- limits on the command -----------------------------------------------------------


def test_torque_change_per_cycle_is_rate_limited_from_the_previous_torque():
    # Command (-K e) = [6, -4, 2, 0, 0, 0, 0]; steps from tau_previous are [0.5, -9, 2, 0...].
    tau_previous = np.array([5.5, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0])

    result = torques(
        target=target_at([0.503, -0.002, 0.301]),
        gains=make_gains(torque_rate_limit_nm=1.0),
        tau_previous=tau_previous,
    )

    np.testing.assert_allclose(result.tau, [6.0, 4.0, 1.0, 0.0, 0.0, 0.0, 0.0], atol=1e-9)


def test_torque_is_saturated_at_the_franka_joint_limits():
    # 1e5 N/m * 0.01 m = 1000 N and 1e4 Nm/rad * 0.1 rad = 1000 Nm: far past every limit.
    gains = make_gains(stiffness=[1e5, 1e5, 1e5, 1e4, 1e4, 1e4], torque_limits_nm=FRANKA_TORQUE_LIMITS_NM)
    state = make_state(ee_rotation=matrix_from_rotvec([0.5, -0.5, 0.5]) @ GRIPPER_DOWN)

    result = torques(state=state, target=target_at(HOME_POSITION + [1.0, -1.0, 1.0]), gains=gains)

    np.testing.assert_allclose(result.tau, [87.0, -87.0, 87.0, -87.0, 12.0, -12.0, 0.0])


def test_default_limits_are_the_franka_ones_and_one_newton_metre_per_cycle():
    gains = ImpedanceGains(stiffness=np.ones(6), damping=np.ones(6), error_clip=np.ones(6), nullspace_stiffness=0.0)

    np.testing.assert_array_equal(gains.torque_limits_nm, [87, 87, 87, 87, 12, 12, 12])
    assert gains.torque_rate_limit_nm == 1.0


# --- the safety box --------------------------------------------------------------------


def test_target_outside_the_safety_box_is_clamped_before_the_error():
    box = SafetyBox(
        xyz_min_m=[0.3, -0.2, 0.05],
        xyz_max_m=[0.505, 0.2, 0.4],
        rpy_min_rad=[-0.5, -0.5, -0.5],
        rpy_max_rad=[0.5, 0.5, 0.5],
        reference_rotation=GRIPPER_DOWN,
    )

    result = torques(target=target_at([0.9, 0.0, 0.3]), safety_box=box)

    # Desired x is clamped to 0.505: e_x = -0.005, inside the clip, tau_x = 10 N.
    np.testing.assert_allclose(result.tau, [10.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], atol=1e-9)
    assert result.target_clamped
    assert not result.error_clipped


# --- non-finite inputs -------------------------------------------------------------------


def with_nan(array, index=0, value=math.nan):
    poisoned = np.array(array, dtype=float)
    poisoned.flat[index] = value
    return poisoned


@pytest.mark.parametrize(
    "name, call",
    [
        ("target.position", lambda: torques(target=target_at(with_nan(HOME_POSITION)))),
        ("target.rotation", lambda: torques(target=target_at(rotation=with_nan(GRIPPER_DOWN, 4, math.inf)))),
        ("state.ee_position", lambda: torques(state=make_state(ee_position=with_nan(HOME_POSITION, 2, -math.inf)))),
        ("state.ee_rotation", lambda: torques(state=make_state(ee_rotation=with_nan(GRIPPER_DOWN, 8)))),
        ("state.q", lambda: torques(state=make_state(q=with_nan(np.zeros(7), 6)))),
        ("state.dq", lambda: torques(state=make_state(dq=with_nan(np.zeros(7), 6, math.inf)))),
        ("state.jacobian", lambda: torques(state=make_state(jacobian=with_nan(AXIS_JACOBIAN, 41, math.inf)))),
        ("state.coriolis", lambda: torques(state=make_state(coriolis=with_nan(np.zeros(7), 3)))),
        ("q_nullspace", lambda: torques(q_nullspace=with_nan(np.zeros(7), 1, math.inf))),
        ("tau_previous", lambda: torques(tau_previous=with_nan(np.zeros(7), 5, -math.inf))),
    ],
)
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # numpy meeting the NaN
def test_non_finite_input_is_refused_naming_it(name, call):
    # inf as well as NaN: the clips downstream would turn an inf into a finite torque.
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        call()


def test_law_leaves_its_inputs_untouched():
    state = make_state(dq=np.full(7, 0.1), coriolis=np.full(7, 0.2))
    target = target_at([0.6, 0.1, 0.2])
    tau_previous = np.full(7, 0.5)
    before = [a.copy() for a in (state.q, state.dq, state.jacobian, target.position, target.rotation, tau_previous)]

    torques(state=state, target=target, tau_previous=tau_previous)

    after = (state.q, state.dq, state.jacobian, target.position, target.rotation, tau_previous)
    for original, current in zip(before, after):
        np.testing.assert_array_equal(current, original)


# --- gains validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("stiffness", [2000.0] * 5),
        ("damping", [80.0, 80.0, 80.0, 20.0, 20.0, -1.0]),
        ("error_clip", [0.01, 0.01, 0.0, 0.1, 0.1, 0.1]),
        ("error_clip", [0.01, 0.01, math.nan, 0.1, 0.1, 0.1]),
        ("nullspace_stiffness", -1.0),
        ("nullspace_damping", math.inf),
        ("torque_rate_limit_nm", 0.0),
        ("torque_limits_nm", [87.0] * 6),
    ],
)
def test_invalid_gain_is_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        make_gains(**{field: value})


def test_gains_cannot_be_changed_under_the_controller():
    gains = make_gains()

    with pytest.raises(ValueError):
        gains.stiffness[0] = 1e6
    with pytest.raises(AttributeError):
        gains.nullspace_stiffness = 1e6
