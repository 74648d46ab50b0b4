"""Simulated env throughput: env steps per second with and without two rendered cameras.

Prints medians over repeated runs on this machine, one process, one core (MuJoCo and
numpy are pinned to one thread), and, measured in the same run as baselines:
  - raw physics: bare ``mj_step`` for the same simulated time (no control law, no
    Python env), the ceiling for a 1 kHz simulation at 10 Hz policy steps;
  - rendering share: the fraction of a two-camera step spent rendering.

    python benchmarks/bench_sim_env.py [--steps 200] [--repeats 5]

Targets: >= 100 env steps/s without cameras; >= 20 with two 128x128 cameras (software
EGL rendering on these machines).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")
os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from robot_stack.config import load_task_config  # noqa: E402
from robot_stack.envs import make_sim_env  # noqa: E402

TASKS = Path(__file__).resolve().parents[1] / "hardware_configs" / "tasks"
TARGET_NO_CAMERAS = 100.0
TARGET_TWO_CAMERAS = 20.0


def policy_steps_per_second(task_yaml: Path, steps: int, seed: int) -> tuple[float, float]:
    """(env steps/s, fraction of wall time in camera reads) for random actions; resets
    between episodes are not timed (they are part of a session, not of a policy step)."""
    sim = make_sim_env(task_yaml)
    env = sim.env
    rng = np.random.default_rng(seed)
    render_time = 0.0
    if env.cameras is not None:
        read = env.cameras.read

        def timed_read():
            nonlocal render_time
            t = time.perf_counter()
            frames = read()
            render_time += time.perf_counter() - t
            return frames

        env.cameras.read = timed_read
    env.reset(seed=seed)
    render_time = 0.0
    elapsed = 0.0
    done_steps = 0
    while done_steps < steps:
        action = rng.uniform(-1, 1, env.action_dim)
        t = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(action)
        elapsed += time.perf_counter() - t
        done_steps += 1
        if terminated or truncated:
            before = render_time
            env.reset()
            render_time = before
    env.close()
    return done_steps / elapsed, render_time / elapsed


def raw_physics_steps_per_second(task_yaml: Path, steps: int) -> float:
    """Policy steps/s if a policy step were nothing but 100 bare MuJoCo steps."""
    sim = make_sim_env(task_yaml)
    model, data = sim.world.model, sim.world.data
    substeps = int(round(1.0 / sim.env.task.control_rate_hz / model.opt.timestep))
    t = time.perf_counter()
    for _ in range(steps):
        for _ in range(substeps):
            mujoco.mj_step(model, data)
    elapsed = time.perf_counter() - t
    sim.env.close()
    return steps / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200, help="timed env steps per run")
    parser.add_argument("--repeats", type=int, default=5, help="runs per case; the median is reported")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args()

    cases = [
        ("pick_cube, state only (no rendering)", TASKS / "sim_pick_cube_state.yaml"),
        ("pick_cube, front + wrist 128x128", TASKS / "sim_pick_cube.yaml"),
        ("peg_insertion, front + wrist 128x128", TASKS / "sim_peg_insertion.yaml"),
    ]
    config = load_task_config(cases[0][1])
    print(
        f"physics {1 / config.task.sim.physics_timestep_s:.0f} Hz with the impedance law every physics step, "
        f"policy {config.task.control_rate_hz:.0f} Hz; medians of {args.repeats} runs x {args.steps} steps; "
        f"MUJOCO_GL={os.environ['MUJOCO_GL']}"
    )
    raw = statistics.median(raw_physics_steps_per_second(cases[0][1], args.steps) for _ in range(args.repeats))
    print(f"{'baseline: bare mj_step, same simulated time':45s} {raw:8.1f} policy steps/s")
    ok = True
    results = {}
    for label, path in cases:
        runs = [policy_steps_per_second(path, args.steps, seed) for seed in range(args.repeats)]
        rate = statistics.median(r for r, _ in runs)
        share = statistics.median(s for _, s in runs)
        target = TARGET_NO_CAMERAS if "no rendering" in label else TARGET_TWO_CAMERAS
        passed = rate >= target
        ok &= passed
        results[label] = rate
        extra = f", rendering {share:.0%} of step time" if share > 0 else ""
        print(
            f"{label:45s} {rate:8.1f} env steps/s  ({rate / raw:.2f} of bare physics{extra}; "
            f"target >= {target:.0f}: {'PASS' if passed else 'FAIL'})"
        )
    state_rate = results[cases[0][0]]
    camera_rate = results[cases[1][0]]
    print(f"env_steps_per_s_no_cameras={state_rate:.1f}")
    print(f"env_steps_per_s_two_cameras={camera_rate:.1f}")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
