"""The real-arm backends, driven through RobotBackend against franky-sim, which speaks the
real libfranka protocol on 127.0.0.1 (see franka_sim.py for what it does not simulate)."""

import importlib
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from franka_sim import (
    FRANKY,
    FRANKY_SIM,
    PYLIBFRANKA,
    SIM_HOST,
    missing_package,
    sim_robot_config,
    start_franky_sim,
    stop_franky_sim,
)
from robot_stack.config.schema import FR3_HOME_RAD, ImpedanceConfig
from robot_stack.control import SafetyBox, matrix_from_rpy
from robot_stack.hardware.devices import make_franka_backend
from robot_stack.hardware.franka import FrankaConnectionError, FrankaControlError
from robot_stack.hardware.interfaces import RobotBackend

_MISSING = missing_package(FRANKY, FRANKY_SIM)
pytestmark = pytest.mark.skipif(_MISSING is not None, reason=str(_MISSING))

HOME = np.array(FR3_HOME_RAD)
DOWN = matrix_from_rpy(np.array([math.pi, 0.0, 0.0]))
HOME_TCP = np.array([0.307, 0.0, 0.487])  # FR3 home with the Franka Hand TCP, as in the simulator


@pytest.fixture(scope="module")
def franky_sim(tmp_path_factory):
    process = start_franky_sim(tmp_path_factory.mktemp("franky_sim") / "franky_sim.log")
    yield SIM_HOST
    stop_franky_sim(process)


@pytest.fixture
def connect(franky_sim):
    """Connect a backend (config overrides as keywords) with the arm at home; closed after the test."""
    backends = []

    def connect_backend(safety_box=None, **overrides):
        backend = make_franka_backend(sim_robot_config(**overrides), safety_box)
        backends.append(backend)
        backend.move_to_joint_positions(HOME, 0.1)
        return backend

    yield connect_backend
    for backend in backends:
        backend.close()


def track(backend, goal, rotation=DOWN, seconds=3.0, tolerance_m=None, period_s=0.05):
    """Send ``goal`` every ``period_s`` for ``seconds`` (or until within ``tolerance_m``);
    returns the last state and the time it took."""
    started = time.monotonic()
    while True:
        backend.set_target(goal, rotation)
        backend.advance(period_s)
        state = backend.read_state()
        elapsed = time.monotonic() - started
        close_enough = tolerance_m is not None and np.linalg.norm(state.tcp_position_m - goal) < tolerance_m
        if close_enough or elapsed >= seconds:
            return state, elapsed


def test_connected_backend_reads_a_sane_state(connect):
    backend = connect()
    state = backend.read_state()

    assert isinstance(backend, RobotBackend)
    assert state.q_rad.shape == (7,) and state.dq_rad_per_s.shape == (7,)
    np.testing.assert_allclose(state.tcp_rotation.T @ state.tcp_rotation, np.eye(3), atol=1e-6)
    assert np.linalg.norm(state.tcp_velocity) < 0.05
    assert np.all(np.isfinite(state.tcp_wrench)) and np.all(np.isfinite(state.tau_commanded_nm))
    assert 0.0 <= state.gripper_width_m <= 0.081
    assert state.time_s > 0.0


def test_joint_move_home_puts_the_tcp_where_the_simulator_has_it_and_tracking_resumes(connect):
    backend = connect()
    off_home = backend.read_state().tcp_position_m + np.array([0.04, 0.04, -0.04])
    track(backend, off_home, seconds=1.0)

    backend.move_to_joint_positions(HOME, 0.5)

    state = backend.read_state()
    np.testing.assert_allclose(state.q_rad, HOME, atol=0.005)
    # The TCP convention: flange turned -45 deg about z, tcp_offset_m out along its z axis.
    np.testing.assert_allclose(state.tcp_position_m, HOME_TCP, atol=0.003)
    np.testing.assert_allclose(state.tcp_rotation, DOWN, atol=0.01)
    goal = state.tcp_position_m + np.array([0.0, 0.02, 0.0])
    state, _ = track(backend, goal, seconds=2.0, tolerance_m=0.003)
    assert np.linalg.norm(state.tcp_position_m - goal) < 0.003


def test_a_longer_tcp_offset_moves_the_tracked_point_along_the_tool_axis(connect):
    backend = connect()
    default_tcp = backend.read_state().tcp_position_m
    backend.close()  # franky-sim serves one client at a time
    longer = connect(tcp_offset_m=(0.0, 0.0, 0.2034)).read_state().tcp_position_m

    # Gripper pointing down at home: 10 cm further out along the tool axis is 10 cm lower.
    np.testing.assert_allclose(longer - default_tcp, [0.0, 0.0, -0.1], atol=0.002)


def test_arm_reaches_a_target_a_few_cm_away(connect):
    backend = connect()
    goal = backend.read_state().tcp_position_m + np.array([0.03, -0.02, -0.03])

    _, reach_s = track(backend, goal, seconds=3.0, tolerance_m=0.003)
    state, _ = track(backend, goal, seconds=0.5)

    assert np.linalg.norm(state.tcp_position_m - goal) < 0.003, f"still {state.tcp_position_m - goal} m away"
    assert np.linalg.norm(state.tcp_velocity[:3]) < 0.01
    print(f"reached a target 4.7 cm away within 3 mm in {reach_s:.2f} s")


def test_far_target_is_approached_at_the_speed_the_error_clip_allows(connect):
    # With the error clipped to 1 cm the spring pulls with at most 2000 N/m x 0.01 m = 20 N,
    # which the 89 Ns/m damper balances at K clip / D = 0.22 m/s: the arm cruises at that
    # speed instead of lunging at a target 30 cm away with 600 N.
    impedance = ImpedanceConfig(translational_error_clip_m=(0.01, 0.01, 0.01))
    backend = connect(impedance=impedance)
    start = backend.read_state().tcp_position_m
    goal = start + np.array([0.0, 0.3, 0.0])
    cruise_speed = impedance.translational_stiffness_n_per_m * 0.01 / impedance.translational_damping_ns_per_m

    speeds = []
    for _ in range(40):
        state, _ = track(backend, goal, seconds=0.0, period_s=0.025)
        speeds.append(np.linalg.norm(state.tcp_velocity[:3]))

    travelled = np.linalg.norm(backend.read_state().tcp_position_m - start)
    print(f"far target: max TCP speed {max(speeds):.3f} m/s (clip bound {cruise_speed:.3f}), {travelled:.3f} m in 1 s")
    assert max(speeds) < 1.15 * cruise_speed
    assert max(speeds) > 0.5 * cruise_speed
    assert 0.05 < travelled < 0.25


def test_target_outside_the_safety_box_is_clamped_onto_it(connect):
    box = SafetyBox(
        xyz_min_m=HOME_TCP - 0.05, xyz_max_m=HOME_TCP + 0.05,
        rpy_min_rad=np.full(3, -0.3), rpy_max_rad=np.full(3, 0.3), reference_rotation=DOWN,
    )
    backend = connect(safety_box=box)
    outside = HOME_TCP + np.array([0.2, 0.0, 0.0])

    status = backend.set_target(outside, DOWN)
    state, _ = track(backend, outside, seconds=1.5)

    assert status.clamped
    np.testing.assert_allclose(status.position_m, HOME_TCP + np.array([0.05, 0.0, 0.0]))
    assert state.tcp_position_m[0] < box.xyz_max_m[0] + 0.003


def test_non_finite_target_is_refused_and_the_arm_keeps_its_target(connect):
    backend = connect()
    goal = backend.read_state().tcp_position_m + np.array([0.0, 0.0, -0.02])
    backend.set_target(goal, DOWN)

    with pytest.raises(ValueError, match="non-finite target"):
        backend.set_target(np.array([0.4, math.nan, 0.3]), DOWN)

    np.testing.assert_array_equal(backend.target.position, goal)
    backend.advance(0.5)
    assert np.linalg.norm(backend.read_state().tcp_position_m - goal) < 0.005


def test_gripper_commands_return_at_once_and_move_the_fingers(connect):
    backend = connect()

    def command_and_wait(width_m):
        started = time.monotonic()
        backend.set_gripper(width_m)
        call_s = time.monotonic() - started
        while not backend.gripper_idle and time.monotonic() - started < 3.0:
            backend.hold()
            backend.advance(0.05)
        return call_s, backend.read_state().gripper_width_m

    open_call_s, opened = command_and_wait(0.08)
    close_call_s, closed = command_and_wait(0.0)

    assert max(open_call_s, close_call_s) < 0.05
    assert opened > 0.075
    assert closed < 0.005
    assert backend.gripper_error is None


def test_watchdog_holds_the_measured_pose_when_targets_stop(connect):
    backend = connect(watchdog_timeout_s=0.2)
    start = backend.read_state().tcp_position_m
    goal = start + np.array([0.0, 0.0, -0.08])
    backend.set_target(goal, DOWN)

    backend.advance(1.0)  # no more targets
    held = backend.read_state().tcp_position_m
    backend.advance(0.5)
    later = backend.read_state()

    assert backend.watchdog_tripped
    assert np.linalg.norm(held - goal) > 0.03  # stopped short of the stale target
    assert np.linalg.norm(later.tcp_position_m - held) < 0.003  # and stays there
    backend.set_target(goal, DOWN)
    assert not backend.watchdog_tripped


def test_an_unexpected_end_of_tracking_is_reported_and_recover_resumes_it(connect):
    backend = connect()
    # franky-sim simulates no reflexes; preempting the motion behind the backend's back
    # ends tracking the same way a reflex does.
    backend._robot.stop()
    time.sleep(0.05)

    with pytest.raises(FrankaControlError, match="stopped tracking: .*preempted.*recover"):
        backend.advance(0.05)
    with pytest.raises(FrankaControlError, match="recover"):
        backend.set_target(HOME_TCP, DOWN)

    backend.recover()

    assert backend.fault is None
    goal = backend.read_state().tcp_position_m + np.array([0.02, 0.0, 0.0])
    state, _ = track(backend, goal, seconds=2.0, tolerance_m=0.003)
    assert np.linalg.norm(state.tcp_position_m - goal) < 0.003


def test_enforcing_real_time_on_a_kernel_without_it_names_the_setting(franky_sim):
    if Path("/sys/kernel/realtime").exists():
        pytest.skip("this kernel is real-time: the connection would succeed")

    with pytest.raises(FrankaConnectionError, match="robot.realtime is 'enforce'"):
        make_franka_backend(sim_robot_config(realtime="enforce"), None)


def test_libfranka_torque_backend_refuses_a_process_that_imported_franky(franky_sim):
    importlib.import_module("franky")  # the conflict under test

    with pytest.raises(ImportError, match="franky is already imported"):
        make_franka_backend(sim_robot_config(driver="libfranka_torque"), None)


@pytest.mark.skipif(missing_package(PYLIBFRANKA) is not None, reason=str(missing_package(PYLIBFRANKA)))
def test_libfranka_torque_backend_reaches_a_target(franky_sim):
    # pylibfranka cannot load next to franky, which this process imported: a subprocess.
    result = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("franka_sim.py"))],
        capture_output=True, text=True, timeout=90,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"libfranka_torque: {outcome}")

    assert outcome["reached_s"] is not None, outcome
    assert outcome["settled_error_m"] < 0.003
    assert outcome["opened_width_m"] > 0.075 and outcome["closed_width_m"] < 0.005
    assert outcome["gripper_error"] is None
    assert outcome["caller_kept_scheduling"]


def test_the_callers_thread_keeps_its_scheduling_policy(connect):
    # libfranka raises the thread that connects to SCHED_FIFO 99; left there, the caller (and
    # every process it starts) would starve the machine while it busy-waits.
    import os

    before = os.sched_getscheduler(0), os.sched_getparam(0).sched_priority
    backend = connect()
    backend.set_gripper(0.02)
    backend.recover()

    assert (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority) == before
