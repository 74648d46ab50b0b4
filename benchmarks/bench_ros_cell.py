"""The robot PC's ROS 2 cell: the actor node's 10 Hz loop and the controller's 1 kHz loop,
with the controller, reward, reset and actor nodes in their own processes (state pick-cube,
simulated FR3, DDS on loopback) and the learner over ZeroMQ.

Two runs, measured in the same invocation:
  - remote learner: the learner receives every transition but does not train (as when it
    runs on the GPU PC): what the robot PC itself costs;
  - learner training on this machine (the baseline of the earlier figure in docs/ros2-cell.md).

Figures: actor loop rate, jitter p50/p99 (from the learner's actor.csv, the actor's own
report), policy inference p99; the controller's achieved loop rate and overruns (its log);
the CPU each process used while the actor stepped (cores, from /proc/<pid>/stat), which
shows what a 2-core machine is short of.

    python benchmarks/bench_ros_cell.py [--env-steps 600] [--only remote|training]
    python benchmarks/bench_ros_cell.py --learn [--env-steps 20000] [--max-minutes 30] [--out DIR]

Target: actor loop jitter p99 < 10 ms.

``--learn`` runs the HIL-SERL session itself over the ROS 2 nodes instead: 20 scripted demos,
the actor node's scripted teleoperator stepping in, the learner training on the same cores,
until the policy's success over its last 20 episodes without intervention reaches 90% (the
session's stop rule) or the budget runs out; then the newest checkpoint is evaluated over
50 episodes without interventions and the learning curve is written as a PNG.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "ros"))

from rosproc import NodeProcess, ros_environment  # noqa: E402

from robot_stack.config import load_task_config  # noqa: E402
from robot_stack.config.loader import config_to_yaml  # noqa: E402
from robot_stack.data.curves import plot_learning_curve, read_episodes, steps_to_success  # noqa: E402
from robot_stack.run_dir import RunPaths  # noqa: E402
from robot_stack.config import with_fields
from robot_stack.session import session_config  # noqa: E402

TARGET_JITTER_P99_MS = 10.0
NO_TRAINING = 10**9  # min_online_transitions: the learner stores transitions but never trains


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its reaped children, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def run_cell(mode: str, env_steps: int, work: Path, max_minutes: float = 30.0) -> dict:
    base = load_task_config(REPO / "hardware_configs" / "tasks" / "sim_pick_cube_state.yaml")
    paths = RunPaths.under(work, work / "demos")
    config = session_config(base, paths, demo_episodes=20 if mode == "learn" else 0)
    config = with_fields(config, "training", torch_threads=1)
    if mode == "learn":
        pass  # the task's own training settings
    elif mode == "remote":
        config = with_fields(config, "training", min_online_transitions=NO_TRAINING)
        config = with_fields(config, "actor", sim_max_lead_env_steps=NO_TRAINING + 1)
    else:
        config = with_fields(config, "training", min_online_transitions=100)
    for directory in (paths.logs, paths.checkpoints):
        directory.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text(config_to_yaml(config))
    if mode == "learn" and not paths.demos.exists():
        print(f"  recording {config.training.demo_episodes} demos into {paths.demos}", flush=True)
        subprocess.run([sys.executable, "-m", "robot_stack", "record-demos", str(paths.config_file), "--episodes",
                        str(config.training.demo_episodes), "--out", str(paths.demos)], cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL)

    env = ros_environment()
    learner_log = open(work / "learner.log", "w")
    learner = subprocess.Popen([sys.executable, "-m", "robot_stack", "learner", str(paths.config_file)],
                               cwd=REPO, env=env, stdout=learner_log, stderr=subprocess.STDOUT)
    params = {"config": str(paths.config_file)}
    nodes = [NodeProcess(name, params, env, work) for name in ("controller", "reward", "reset")]
    nodes.append(NodeProcess("actor", {**params, "run_dir": str(work), "max_env_steps": env_steps}, env, work))
    status = work / "actor_status.json"
    start = time.monotonic()
    deadline = start + (max_minutes * 60 if mode == "learn" else env_steps / 10.0 * 3 + 120)
    reached = None
    last = -1
    processes = {node.name: node.process.pid for node in nodes} | {"learner": learner.pid}
    cpu_start: dict[str, float] = {}
    cpu_window: dict[str, float] = {}
    try:
        while time.monotonic() < deadline:
            time.sleep(1.0)
            for node in nodes[:3]:
                if not node.alive():
                    raise RuntimeError(f"{node.name} exited:\n{node.log()[-3000:]}")
            try:
                steps = json.loads(status.read_text())["env_steps"]
            except (OSError, ValueError, KeyError):
                steps = 0
            if steps > 0 and not cpu_start:
                cpu_start = {name: cpu_seconds(pid) for name, pid in processes.items()}
                cpu_start["_wall"] = time.monotonic()
            if mode == "learn" and steps != last:
                reached = steps_to_success(paths.logs / "episodes.csv", config.training.target_success_rate or 0.9,
                                           config.training.success_window_episodes,
                                           config.training.min_policy_only_episodes)
            if steps != last:
                print(f"  {mode}: {steps}/{env_steps} env steps, {time.monotonic() - start:.0f} s", end="\r", flush=True)
                last = steps
            if steps >= env_steps or not nodes[3].alive() or reached is not None:
                if cpu_start and nodes[3].alive():
                    wall = time.monotonic() - cpu_start["_wall"]
                    cpu_window = {name: (cpu_seconds(pid) - cpu_start[name]) / wall for name, pid in processes.items()}
                break
        else:
            if mode != "learn":
                raise RuntimeError(f"the actor did not finish {env_steps} steps in time:\n{nodes[3].log()[-3000:]}")
    finally:
        print()
        for node in reversed(nodes):
            node.stop(signal.SIGINT, timeout_s=30)
        learner.send_signal(signal.SIGINT)
        learner.wait(60)
        learner_log.close()
    if mode == "learn":
        return learning_result(config, paths, work, reached, time.monotonic() - start)
    actor = read_episodes(paths.logs / "actor.csv")
    rows = [r for r in actor if r.get("env_steps", 0) > 0]
    if not rows:
        raise RuntimeError(f"no actor statistics at the learner ({paths.logs / 'actor.csv'})")
    controller_log = nodes[0].log()
    match = re.search(r"control loop (\d+) Hz of (\d+) Hz nominal, (\d+) overruns", controller_log)
    for r in rows:
        print(f"    window: env_steps {int(r['env_steps'])} loop {r['loop_hz']:.2f} Hz jitter p50 {r['jitter_p50_ms']:.2f} p99 {r['jitter_p99_ms']:.2f} max {r['jitter_max_ms']:.1f} overruns {int(r['overruns'])} step p99 {r['step_p99_ms']:.1f}")
    # Every actor report covers the window since the previous one; the worst window counts.
    return {
        "mode": mode,
        "env_steps": int(rows[-1]["env_steps"]),
        "loop_hz": min(r["loop_hz"] for r in rows),
        "jitter_p50_ms": max(r["jitter_p50_ms"] for r in rows),
        "jitter_p99_ms": max(r["jitter_p99_ms"] for r in rows),
        "overruns": int(sum(r["overruns"] for r in rows)),
        "inference_p99_ms": max(r["inference_p99_ms"] for r in rows),
        "controller_hz": float(match.group(1)) if match else float("nan"),
        "controller_overruns": int(match.group(3)) if match else -1,
        "cpu_cores": cpu_window,
    }


def learning_result(config, paths: RunPaths, work: Path, reached, wall_s: float) -> dict:
    """Evaluate the newest checkpoint (50 episodes, no interventions) and plot the curve."""
    episodes = read_episodes(paths.logs / "episodes.csv")
    training = config.training
    reached = reached or steps_to_success(paths.logs / "episodes.csv", training.target_success_rate or 0.9,
                                          training.success_window_episodes, training.min_policy_only_episodes, training.stop_on)
    evaluation_dir = work / "eval"
    subprocess.run([sys.executable, "-m", "robot_stack", "evaluate", str(paths.config_file), "--checkpoints",
                    str(paths.checkpoints), "--episodes", "50", "--out", str(evaluation_dir), "--no-progress"],
                   cwd=REPO, check=True)
    evaluation = json.loads((evaluation_dir / "eval.json").read_text())
    png = plot_learning_curve(paths.logs / "episodes.csv", work / "learning_curve.png",
                              title="sim pick-cube (state) over ROS 2 nodes, 2 CPU cores",
                              window=config.training.success_window_episodes, evaluation=evaluation,
                              target=config.training.target_success_rate)
    return {
        "mode": "learn", "env_steps": int(episodes[-1]["step"]) if episodes else 0, "episodes": len(episodes),
        "wall_time_min": wall_s / 60, "reached": reached, "evaluation_success": evaluation["success_rate"],
        "evaluation_sampled_success": (evaluation.get("sampled") or {}).get("success_rate"),
        "curve": str(png),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-steps", type=int, default=600)
    parser.add_argument("--only", choices=("remote", "training"), default=None)
    parser.add_argument("--learn", action="store_true", help="run the learning session over the nodes instead")
    parser.add_argument("--max-minutes", type=float, default=30.0, help="--learn: wall-clock budget")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_ros_learning"), help="--learn: run dir (kept)")
    args = parser.parse_args()
    if args.learn:
        env_steps = args.env_steps if args.env_steps != 600 else 20_000
        args.out.mkdir(parents=True, exist_ok=True)
        r = run_cell("learn", env_steps, args.out.resolve(), args.max_minutes)
        target = "not reached" if r["reached"] is None else (
            f"{r['reached']['env_steps']} env steps, {r['reached']['wall_time_s'] / 60:.1f} min")
        print(f"ROS 2 session, state pick-cube: {r['env_steps']} env steps, {r['episodes']} episodes, "
              f"{r['wall_time_min']:.1f} min; 90% policy success: {target}; evaluation (50 episodes, no interventions): "
              f"{r['evaluation_success']:.0%}; curve {r['curve']}")
        return 0
    modes = [args.only] if args.only else ["remote", "training"]
    results = []
    for mode in modes:
        with tempfile.TemporaryDirectory(prefix=f"bench-ros-{mode}-") as work:
            results.append(run_cell(mode, args.env_steps, Path(work)))
    print(f"ROS 2 cell, state pick-cube, {args.env_steps} env steps per run; worst window of the actor's reports")
    print(f"{'learner':22s} {'actor Hz':>9s} {'jitter p50':>11s} {'jitter p99':>11s} {'overruns':>9s} "
          f"{'infer p99':>10s} {'controller Hz':>14s} {'ctl overruns':>13s}")
    for r in results:
        label = "remote (not training)" if r["mode"] == "remote" else "training here"
        print(f"{label:22s} {r['loop_hz']:9.2f} {r['jitter_p50_ms']:9.2f}ms {r['jitter_p99_ms']:9.2f}ms {r['overruns']:9d} "
              f"{r['inference_p99_ms']:8.2f}ms {r['controller_hz']:14.0f} {r['controller_overruns']:13d}")
    for r in results:
        if r["cpu_cores"]:
            used = ", ".join(f"{name} {cores:.2f}" for name, cores in sorted(r["cpu_cores"].items(), key=lambda kv: -kv[1]))
            print(f"CPU while stepping, learner {r['mode']} (cores of {os.cpu_count()}): {used}; "
                  f"total {sum(r['cpu_cores'].values()):.2f}")
    for r in results:
        met = r["jitter_p99_ms"] < TARGET_JITTER_P99_MS
        print(f"target actor jitter p99 < {TARGET_JITTER_P99_MS:.0f} ms, learner {r['mode']}: "
              f"{'met' if met else 'NOT met'} ({r['jitter_p99_ms']:.1f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
