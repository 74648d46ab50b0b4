"""Per-call latency of the impedance control law, against a naive numpy version of it.

The simulated Franka calls the law at 1 kHz from Python, so it has to fit in a small part
of a millisecond; the budget is 50 us per call.

    python benchmarks/bench_control_law.py [--calls 2000] [--repeats 7] [--check]

Every call is timed on its own (perf_counter_ns), so p90 shows the jitter a control loop
sees, not just the mean. The last line, control_law_us_median=<x>, is for scripts.
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

# Runnable from a plain checkout, without `pip install -e .`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from robot_stack.control import (  # noqa: E402
    ArmState,
    CartesianTarget,
    ImpedanceGains,
    SafetyBox,
    impedance_torques,
    matrix_from_rotvec,
)

BUDGET_US = 50.0
GRIPPER_DOWN = np.diag([1.0, -1.0, -1.0])
STATE_POOL_SIZE = 64  # calls cycle through varied states, as a real loop would see


def build_gains() -> ImpedanceGains:
    return ImpedanceGains(
        stiffness=[2000.0, 2000.0, 2000.0, 150.0, 150.0, 150.0],
        damping=[89.0, 89.0, 89.0, 7.0, 7.0, 7.0],
        error_clip=[0.01, 0.01, 0.01, 0.05, 0.05, 0.05],
        nullspace_stiffness=10.0,
    )


def build_safety_box() -> SafetyBox:
    return SafetyBox(
        xyz_min_m=[0.3, -0.3, 0.02],
        xyz_max_m=[0.7, 0.3, 0.5],
        rpy_min_rad=[-0.3, -0.3, -0.8],
        rpy_max_rad=[0.3, 0.3, 0.8],
        reference_rotation=GRIPPER_DOWN,
    )


def build_inputs(rng: np.random.Generator):
    """(state, target, q_nullspace, tau_previous) tuples near a gripper-down home pose."""
    inputs = []
    for _ in range(STATE_POOL_SIZE):
        ee_position = np.array([0.5, 0.0, 0.25]) + rng.uniform(-0.1, 0.1, size=3)
        state = ArmState(
            q=rng.uniform(-1.5, 1.5, size=7),
            dq=rng.uniform(-0.5, 0.5, size=7),
            ee_position=ee_position,
            ee_rotation=matrix_from_rotvec(rng.uniform(-0.3, 0.3, size=3)) @ GRIPPER_DOWN,
            jacobian=rng.normal(scale=0.5, size=(6, 7)),
            coriolis=rng.normal(scale=0.2, size=7),
        )
        # Some targets inside the clip, some beyond it, some outside the safety box.
        target = CartesianTarget(
            position=ee_position + rng.uniform(-0.05, 0.05, size=3),
            rotation=matrix_from_rotvec(rng.uniform(-0.5, 0.5, size=3)) @ GRIPPER_DOWN,
        )
        inputs.append((state, target, np.zeros(7), rng.uniform(-5.0, 5.0, size=7)))
    return inputs


def naive_impedance_torques(state, target, gains, q_nullspace, tau_previous):
    """The same law written the obvious way: full matrices, pinv (an SVD), np.clip."""
    for value in (state.q, state.dq, state.ee_position, state.ee_rotation, state.jacobian, state.coriolis):
        if not np.all(np.isfinite(value)):
            raise ValueError("non-finite state")
    for value in (target.position, target.rotation, q_nullspace, tau_previous):
        if not np.all(np.isfinite(value)):
            raise ValueError("non-finite input")
    rotation_error = state.ee_rotation @ target.rotation.T
    angle = np.arccos(np.clip((np.trace(rotation_error) - 1.0) / 2.0, -1.0, 1.0))
    skew = np.array(
        [
            rotation_error[2, 1] - rotation_error[1, 2],
            rotation_error[0, 2] - rotation_error[2, 0],
            rotation_error[1, 0] - rotation_error[0, 1],
        ]
    )
    rotvec = skew * (angle / (2.0 * np.sin(angle))) if angle > 1e-9 else skew / 2.0
    error = np.concatenate([state.ee_position - target.position, rotvec])
    error = np.clip(error, -gains.error_clip, gains.error_clip)
    J = state.jacobian
    K, D = np.diag(gains.stiffness), np.diag(gains.damping)
    tau_task = J.T @ (-K @ error - D @ (J @ state.dq))
    nullspace_projector = np.eye(7) - J.T @ np.linalg.pinv(J.T)
    posture = gains.nullspace_stiffness * (q_nullspace - state.q) - gains.nullspace_damping * state.dq
    tau_command = tau_task + nullspace_projector @ posture + state.coriolis
    rate = gains.torque_rate_limit_nm
    tau = tau_previous + np.clip(tau_command - tau_previous, -rate, rate)
    return np.clip(tau, -gains.torque_limits_nm, gains.torque_limits_nm)


def time_calls_us(function, argument_pool, calls: int, repeats: int) -> tuple[np.ndarray, list[float]]:
    """Latency of every call (us), and the median of each repeat (to show run-to-run spread)."""
    samples, repeat_medians = [], []
    pool_size = len(argument_pool)
    clock = time.perf_counter_ns
    for _ in range(repeats):
        gc.collect()
        repeat_samples = []
        for index in range(calls):
            arguments = argument_pool[index % pool_size]
            start = clock()
            function(*arguments)
            repeat_samples.append(clock() - start)
        samples.extend(repeat_samples)
        repeat_medians.append(statistics.median(repeat_samples) / 1e3)
    return np.array(samples) / 1e3, repeat_medians


# The two laws differ only by the pseudo-inverse damping: the real one leaks
# lambda / sigma_min^2 of the posture torque (~1e-3 Nm on these random Jacobians)
# where pinv leaks nothing. A bigger gap means the laws are not the same.
AGREEMENT_TOLERANCE_NM = 1e-2


def largest_disagreement_nm(inputs, gains) -> float:
    """The naive version must compute the same torques, or comparing their speed is moot."""
    return max(
        float(np.max(np.abs(impedance_torques(s, t, gains, q, tau).tau - naive_impedance_torques(s, t, gains, q, tau))))
        for s, t, q, tau in inputs
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per repeat")
    parser.add_argument("--repeats", type=int, default=7, help="repeats of --calls")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true", help="exit 1 if the median misses the budget")
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    gains, safety_box = build_gains(), build_safety_box()
    inputs = build_inputs(rng)
    error_clip, stiffness = gains.error_clip, gains.stiffness

    cases = [
        ("impedance_torques + safety box", lambda s, t, q, tau: impedance_torques(s, t, gains, q, tau, safety_box)),
        ("impedance_torques", lambda s, t, q, tau: impedance_torques(s, t, gains, q, tau)),
        ("naive numpy law (pinv, np.clip)", lambda s, t, q, tau: naive_impedance_torques(s, t, gains, q, tau)),
        ("bare J.T @ (K * e)", lambda s, t, q, tau: s.jacobian.T @ (stiffness * error_clip)),
        ("timer + call overhead", lambda s, t, q, tau: None),
    ]
    for _, function in cases:  # warm-up: first calls pay for imports, caches, CPU clock-up
        time_calls_us(function, inputs, args.calls, repeats=1)

    results = {name: time_calls_us(function, inputs, args.calls, args.repeats) for name, function in cases}
    law_median = float(np.median(results[cases[0][0]][0]))
    # The naive law has no safety box, so ratios are taken against the law without one.
    unboxed_law_median = float(np.median(results[cases[1][0]][0]))

    versions = f"python {sys.version.split()[0]}, numpy {np.__version__}"
    print(f"control law latency, {args.calls} calls x {args.repeats} repeats, {versions}")
    print(f"{'case':<34} {'median us':>10} {'p90 us':>8} {'p99 us':>8} {'vs law':>7}   repeat medians us")
    for name, (samples, repeat_medians) in results.items():
        median = float(np.median(samples))
        spread = " ".join(f"{value:.1f}" for value in repeat_medians)
        print(
            f"{name:<34} {median:>10.2f} {np.percentile(samples, 90):>8.2f} {np.percentile(samples, 99):>8.2f}"
            f" {median / unboxed_law_median:>7.2f}   {spread}"
        )
    disagreement = largest_disagreement_nm(inputs, gains)
    print(f"largest |tau - tau_naive| over the pool: {disagreement:.2e} Nm")
    passed = law_median < BUDGET_US
    print(f"target: median < {BUDGET_US:.0f} us per call (with safety box): {'PASS' if passed else 'FAIL'}")
    print(f"control_law_us_median={law_median:.2f}")
    if not math.isfinite(disagreement) or disagreement > AGREEMENT_TOLERANCE_NM:
        print("naive and real law disagree: the comparison is not like for like", file=sys.stderr)
        return 1
    return 1 if (args.check and not passed) else 0


if __name__ == "__main__":
    sys.exit(main())
