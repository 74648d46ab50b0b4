"""How fast the HIL-SERL session learns a simulated task on this machine's CPUs, against
stable-baselines3 SAC (no demos; state-based tasks only) and our agent without demos or
interventions. Pick-cube from state by default; ``--task`` names a camera task too.

Runs, each on the same task file and the same env-step budget:

  ours       ``robot-stack session`` as a user runs it: 20 scripted demos, the scripted
             teleoperator stepping in (decaying), learner and actor as separate processes
             over loopback. Stops at the task's stop rule or the budget, then evaluates
             without interventions as the session does: 50 episodes with the policy's mean
             action (the headline) and 50 with sampled actions beside it. A camera
             task whose encoder says how to pretrain it gets a fresh encoder file in the
             output folder, pretrained from the demos inside the session (its time counts).
  ablation   the same session with no demos and no interventions (RLPD on online data only),
             also evaluated; a camera task's ablation uses the encoder "ours" pretrained.
  sb3        stable-baselines3 SAC (MLP 256x256, auto temperature, the task's discount, UTD 1)
             on the same gymnasium env with the state vector as observation, in one process.

The figure that counts is the evaluation with the policy's mean action; sampled actions are
printed beside it. The curves plot the rolling training success (the last 20 episodes nobody
intervened in, sampled actions; sb3 has no other) and, where the actor ran deterministic
episodes, their success over the task's stop-rule window. Every run writes its episodes.csv;
the curves go into one PNG. Figures printed: env steps and minutes until the target was
first reached (training success, and the deterministic episodes' where there are), final
rolling success, evaluation (mean action, sampled), minutes of encoder pretraining; then one
JSON line of them.

    python benchmarks/bench_learning.py [--runs ours ablation sb3] [--max-env-steps 20000]
        [--target 0.9] [--max-minutes M] [--set PATH=VALUE ...] [--out outputs/bench_learning] [--task hardware_configs/tasks/sim_pick_cube_state.yaml]
        [--encoder WEIGHTS]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from robot_stack.data.curves import (  # noqa: E402
    deterministic_points,
    read_episodes,
    rolling,
    save_rate_plot,
    steps_to_success,
)

WINDOW = 20
MIN_POLICY_ONLY = 10


def run_ours(task, out: Path, max_env_steps: int, target: float | None, interventions: bool, demos: bool,
             eval_episodes: int, max_minutes: float | None = None) -> dict:
    from robot_stack.session import run_session

    run_dir = out / ("ours" if interventions or demos else "ablation")
    summary = run_session(
        task, run_dir, max_env_steps=max_env_steps, target_success_rate=target,
        eval_episodes=eval_episodes, demo_episodes=20 if demos else 0,
        demos=out / "demos" if demos else run_dir / "no-demos", interventions=interventions, progress=True,
        max_wall_time_s=None if max_minutes is None else max_minutes * 60.0,
    )
    summary["episodes_csv"] = str(run_dir / "logs" / "episodes.csv")
    return summary


def run_sb3(config, out: Path, max_env_steps: int, target: float, seed: int = 0) -> dict:
    import gymnasium as gym
    import torch
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    from robot_stack.envs import make_env

    torch.set_num_threads(1)
    run_dir = out / "sb3"
    run_dir.mkdir(parents=True, exist_ok=True)
    episodes_csv = run_dir / "episodes.csv"

    class StateOnly(gym.ObservationWrapper):
        def __init__(self, env):
            super().__init__(env)
            self.observation_space = env.observation_space["state"]

        def observation(self, observation):
            return observation["state"]

    env = StateOnly(make_env(config))
    started = time.monotonic()

    class Episodes(BaseCallback):
        """Writes episodes.csv like the learner does and stops at the target."""

        def __init__(self):
            super().__init__()
            self.handle = open(episodes_csv, "w", newline="")
            self.writer = csv.DictWriter(self.handle, ["step", "episode", "success", "intervened", "intervention_steps",
                                                       "length", "return", "wall_time_s"])
            self.writer.writeheader()
            self.episodes: list[dict] = []
            self.length = 0
            self.ret = 0.0

        def _on_step(self) -> bool:
            self.length += 1
            self.ret += float(self.locals["rewards"][0])
            if self.locals["dones"][0]:
                info = self.locals["infos"][0]
                row = {"step": self.num_timesteps, "episode": len(self.episodes), "success": int(bool(info.get("success"))),
                       "intervened": 0, "intervention_steps": 0, "length": self.length, "return": self.ret,
                       "wall_time_s": round(time.monotonic() - started, 2)}
                self.writer.writerow(row)
                self.handle.flush()
                self.episodes.append(row)
                self.length, self.ret = 0, 0.0
                recent = self.episodes[-WINDOW:]
                if len(recent) >= MIN_POLICY_ONLY and sum(e["success"] for e in recent) / len(recent) >= target:
                    return False
            return True

    model = SAC("MlpPolicy", env, gamma=config.task.discount, batch_size=256, learning_rate=3e-4,
                policy_kwargs={"net_arch": [256, 256]}, seed=seed, verbose=0, device="cpu")
    callback = Episodes()
    model.learn(total_timesteps=max_env_steps, callback=callback, progress_bar=False)
    callback.handle.close()
    env.close()
    return {"task": config.task.name, "env_steps": model.num_timesteps, "episodes": len(callback.episodes),
            "wall_time_s": round(time.monotonic() - started, 1), "episodes_csv": str(episodes_csv)}


def load_overrides(task: Path, overrides: list[str]):
    """The task config with ``PATH=VALUE`` overrides applied (validated again as a whole)."""
    from robot_stack.config import ConfigError, load_task_config, load_yaml_text
    from robot_stack.config.rldg import apply_overrides

    config = load_task_config(task)
    values = {}
    for item in overrides:
        path, separator, value = item.partition("=")
        if not separator or not path:
            raise SystemExit(f"--set {item!r}: expected PATH=VALUE, e.g. agent.batch_size=64")
        try:
            values[path] = load_yaml_text(value, f"--set {path}")
        except ConfigError as error:
            raise SystemExit(str(error)) from None
    if not values:
        return config
    try:
        return apply_overrides(config, values)
    except (KeyError, ValueError) as error:  # pydantic's ValidationError is a ValueError
        raise SystemExit(f"--set on {task}: {error}") from None


def describe(name: str, summary: dict, target: float, deterministic_window: int) -> dict:
    """``deterministic_window``: the task's training.success_window_episodes, as its stop rule reads it."""
    path = Path(summary["episodes_csv"])
    reached = steps_to_success(path, target, WINDOW, MIN_POLICY_ONLY) if path.exists() else None
    episodes = read_episodes(path) if path.exists() else []
    deterministic = any(float(e.get("deterministic", 0) or 0) == 1 for e in episodes)
    reached_deterministic = (steps_to_success(path, target, deterministic_window, MIN_POLICY_ONLY, "deterministic_episodes")
                             if deterministic else None)
    evaluation = summary.get("evaluation") or {}
    final = None
    for _, rate, _ in rolling(episodes, WINDOW, MIN_POLICY_ONLY):
        final = rate if rate is not None else final
    return {
        "run": name,
        "env_steps": summary.get("env_steps"),
        "wall_time_min": round(summary.get("wall_time_s", 0.0) / 60, 1),
        "target_reached_at_env_steps": None if reached is None else reached["env_steps"],
        "target_reached_at_min": None if reached is None else round(reached["wall_time_s"] / 60, 1),
        "deterministic_target_reached_at_env_steps": None if reached_deterministic is None else reached_deterministic["env_steps"],
        "deterministic_target_reached_at_min": None if reached_deterministic is None else round(reached_deterministic["wall_time_s"] / 60, 1),
        "final_rolling_success": final,
        "evaluation_success": evaluation.get("success_rate"),  # the policy's mean action
        "evaluation_sampled_success": (evaluation.get("sampled") or {}).get("success_rate"),
        "encoder_pretrain_min": None if summary.get("encoder_pretrain_s") is None else round(summary["encoder_pretrain_s"] / 60, 1),
    }


def plot(results: dict[str, dict], png: Path, target: float, title: str, deterministic_window: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {"ours": "ours: 20 demos + scripted interventions", "ablation": "ours: no demos, no interventions",
              "sb3": "stable-baselines3 SAC (no demos)"}
    figure, axis = plt.subplots(figsize=(13, 4.5))  # the legend sits beside the axes
    for name, summary in results.items():
        episodes = read_episodes(Path(summary["episodes_csv"]))
        steps, rates = [], []
        for episode, rate, _ in rolling(episodes, WINDOW, MIN_POLICY_ONLY):
            steps.append(episode["step"])
            rates.append(math.nan if rate is None else rate)
        line, = axis.plot(steps, rates, label=labels.get(name, name))
        if any(float(e.get("deterministic", 0) or 0) == 1 for e in episodes):
            deterministic_steps, deterministic_rates = deterministic_points(episodes, deterministic_window)
            axis.plot(deterministic_steps, deterministic_rates, "--", color=line.get_color(),
                      label=f"{labels.get(name, name)}: deterministic episodes (last {deterministic_window})")
        evaluation = summary.get("evaluation") or {}
        if evaluation.get("success_rate") is not None and steps:
            axis.scatter([steps[-1]], [evaluation["success_rate"]], color=line.get_color(), marker="*", s=90, zorder=3,
                         label=f"{labels.get(name, name)}: evaluation, mean action {evaluation['success_rate']:.0%} "
                               f"of {evaluation['episodes']}")
            sampled = evaluation.get("sampled")
            if sampled:
                axis.scatter([steps[-1]], [sampled["success_rate"]], facecolors="none", edgecolors=line.get_color(), marker="o",
                             s=60, zorder=3, label=f"{labels.get(name, name)}: sampled actions {sampled['success_rate']:.0%}")
    axis.axhline(target, color="grey", linestyle=":", linewidth=1, label=f"target {target:.0%}")
    save_rate_plot(figure, axis, png, title, "success rate")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="*", default=["ours", "ablation", "sb3"], choices=["ours", "ablation", "sb3"])
    parser.add_argument("--merge", nargs="*", type=Path, default=[],
                        help="out dirs of earlier runs (e.g. run in parallel) whose results join this table and plot")
    parser.add_argument("--task", type=Path, default=REPO / "hardware_configs/tasks/sim_pick_cube_state.yaml")
    parser.add_argument("--max-env-steps", type=int, default=20_000)
    parser.add_argument("--target", type=float, default=0.9, help="stop rule and plot line; below 0: no early stop")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="PATH=VALUE",
                        help="dotted task-config fields for this benchmark's session runs, e.g. agent.batch_size=64 "
                             "(values are YAML)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="wall-clock budget of each session run (training only; evaluation comes after)")
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--encoder", type=Path, default=None,
                        help="camera tasks: use this encoder weights file instead of pretraining a fresh one")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_learning"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    previous = args.out / "results.json"
    for earlier in [previous, *(directory / "results.json" for directory in args.merge)]:
        if earlier.exists():  # runs made earlier (e.g. --runs sb3 alone) join the plot
            results.update(json.loads(earlier.read_text()).get("summaries", {}))
    task_config = load_overrides(args.task, args.overrides)
    encoder = task_config.agent.encoder
    if task_config.task.observation.images and (encoder.pretrain is not None or args.encoder is not None):
        # A fresh machine has no encoder file: the session pretrains one (and the time counts).
        from robot_stack.config import with_fields

        weights = args.encoder or args.out / "encoder_resnet10.safetensors"
        task_config = with_fields(task_config, "agent.encoder", pretrained_path=weights.resolve())
    stop_at = None if args.target < 0 else args.target
    if stop_at is None:  # the session's own None means "the task's target": switch the rule off in the config
        from robot_stack.config import with_fields

        task_config = with_fields(task_config, "training", target_success_rate=None)
    for name in args.runs:
        print(f"== {name}", flush=True)
        if name == "sb3":
            if task_config.task.observation.images:
                raise SystemExit("sb3 runs on the state vector: give a state-based task (e.g. sim_pick_cube_state.yaml)")
            results[name] = run_sb3(task_config, args.out, args.max_env_steps, args.target)
        else:
            demos = interventions = name == "ours"
            results[name] = run_ours(task_config, args.out, args.max_env_steps, stop_at, interventions, demos,
                                     args.eval_episodes, args.max_minutes)
    window = task_config.training.success_window_episodes
    table = [describe(name, summary, args.target, window) for name, summary in results.items()]
    png = args.out / "learning_curves.png"
    task = task_config.task
    kind = f"{len(task.observation.images)} camera(s)" if task.observation.images else "state-based"
    plot(results, png, args.target, f"{task.name}, {kind}, CPU", window)
    (args.out / "results.json").write_text(json.dumps({"summaries": results, "table": table}, indent=1, default=str))
    print(f"\n{'run':10s} {'env steps':>10s} {'minutes':>8s} {'pretrain min':>13s} {'to target (steps / min)':>24s} "
          f"{'final rolling':>14s} {'eval mean action':>17s} {'eval sampled':>13s}")
    for row in table:
        reached = "not reached" if row["target_reached_at_env_steps"] is None else f"{row['target_reached_at_env_steps']} / {row['target_reached_at_min']}"
        final = "-" if row["final_rolling_success"] is None else f"{row['final_rolling_success']:.0%}"
        evaluation = "-" if row["evaluation_success"] is None else f"{row['evaluation_success']:.0%}"
        sampled = "-" if row.get("evaluation_sampled_success") is None else f"{row['evaluation_sampled_success']:.0%}"
        pretrain = "-" if row.get("encoder_pretrain_min") is None else f"{row['encoder_pretrain_min']:.1f}"
        print(f"{row['run']:10s} {row['env_steps']!s:>10s} {row['wall_time_min']:>8.1f} {pretrain:>13s} {reached:>24s} "
              f"{final:>14s} {evaluation:>17s} {sampled:>13s}")
    print(f"curves: {png}")
    print(json.dumps({"benchmark": "learning", "task": task.name, "target": args.target, "runs": table}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
