"""How reliably a task learns across seeds, and what a second actor buys in wall-clock: the
task session as a user runs it (``robot-stack session``: 20 scripted demos, the scripted
teleoperator stepping in, the task's stop rule or the ``--max-env-steps`` budget), once per
seed and actor count, each final policy evaluated without interventions over 50 episodes with
its mean action (the headline; sampled actions beside it).

Every run shares one demo set (recorded by the first run) and differs from the others only
in ``training.seed`` (the learner's networks and sampling, the actors' seeds follow from it)
and ``--actors``. Printed: one row per run (env steps and minutes it ran, env steps and
minutes until its last ``success_window_episodes`` deterministic episodes first reached
``--reach``, evaluation), then per actor count the mean, lowest and highest evaluation and
whether every seed met ``--target-eval``, then the wall-clock to ``--reach`` of N actors
against 1 actor on the same seed (ratios measured in this run, on this machine's load), then
one JSON line of the figures.
The deterministic episodes' success along each run goes into one PNG, against env steps and
against minutes.

    python benchmarks/bench_seeds.py [--task hardware_configs/tasks/sim_pick_cube_state.yaml]
        [--seeds 1 2 3] [--actors 1 2] [--max-env-steps 15000] [--target-eval 0.95] [--reach 0.9]
        [--set PATH=VALUE ...] [--out outputs/bench_seeds] [--reuse]

``--reuse`` keeps the runs an earlier invocation finished in ``--out`` (a run dir with its
summary.json) and runs only the others, so a long benchmark can be continued.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_learning import load_overrides  # noqa: E402  (benchmarks/ is the script's folder)

from robot_stack.data.curves import deterministic_points, finish_rate_axes, read_episodes, steps_to_success, write_png  # noqa: E402


def run_name(actors: int, seed: int) -> str:
    return f"actors{actors}-seed{seed}"


def run_one(config, out: Path, seed: int, actors: int, max_env_steps: int, eval_episodes: int, reuse: bool) -> dict:
    from robot_stack.config import with_fields
    from robot_stack.session import run_session

    run_dir = out / run_name(actors, seed)
    summary_file = run_dir / "summary.json"
    if reuse and summary_file.exists():
        summary = json.loads(summary_file.read_text())
        if not summary.get("interrupted") and summary.get("evaluation"):
            print(f"== {run_dir.name}: reusing {summary_file}", flush=True)
            return summary
    print(f"== {run_dir.name}", flush=True)
    return run_session(with_fields(config, "training", seed=seed), run_dir, max_env_steps=max_env_steps,
                       eval_episodes=eval_episodes, demos=out / "demos", actors=actors, progress=True)


def describe(actors: int, seed: int, summary: dict, reach: float, window: int) -> dict:
    """One run's figures; ``reach_*``: when its last ``window`` deterministic episodes (run as an
    evaluation runs) first succeeded at ``reach`` or more, read from its episodes.csv."""
    evaluation = summary.get("evaluation") or {}
    reached = steps_to_success(Path(summary["run_dir"]) / "logs" / "episodes.csv", reach, window, 0,
                               "deterministic_episodes") or {}
    return {
        "run": run_name(actors, seed),
        "actors": actors,
        "seed": seed,
        "env_steps": summary.get("env_steps"),
        "wall_time_min": round(summary.get("wall_time_s", 0.0) / 60, 2),
        "stop_reason": summary.get("stop_reason"),
        "reached": bool(reached),
        "reach_env_steps": reached.get("env_steps"),
        "reach_min": None if not reached else round(reached["wall_time_s"] / 60, 2),
        "evaluation_success": evaluation.get("success_rate"),  # the policy's mean action
        "evaluation_episodes": evaluation.get("episodes"),
        "evaluation_sampled_success": (evaluation.get("sampled") or {}).get("success_rate"),
        "intervention_rate": summary.get("intervention_rate"),
        "updates": summary.get("updates"),
    }


def aggregate(rows: list[dict], target_eval: float) -> list[dict]:
    groups = []
    for actors in sorted({row["actors"] for row in rows}):
        mine = [row for row in rows if row["actors"] == actors and row["evaluation_success"] is not None]
        if not mine:
            continue
        rates = [row["evaluation_success"] for row in mine]
        reached = [row for row in mine if row["reached"]]
        groups.append({
            "actors": actors,
            "seeds": [row["seed"] for row in mine],
            "evaluation_mean": round(statistics.fmean(rates), 4),
            "evaluation_min": min(rates),
            "evaluation_max": max(rates),
            "evaluation_std": round(statistics.pstdev(rates), 4),
            "every_seed_met_target": all(rate >= target_eval for rate in rates),
            "reached": f"{len(reached)}/{len(mine)}",
            "reach_mean_env_steps": round(statistics.fmean(r["reach_env_steps"] for r in reached)) if reached else None,
            "reach_mean_min": round(statistics.fmean(r["reach_min"] for r in reached), 2) if reached else None,
        })
    return groups


def wall_clock_ratios(rows: list[dict]) -> list[dict]:
    """N actors against 1 actor on the same seed: minutes until the deterministic window first
    reached the mark."""
    single = {row["seed"]: row for row in rows if row["actors"] == 1 and row["reached"]}
    ratios = []
    for row in rows:
        base = single.get(row["seed"])
        if row["actors"] == 1 or base is None or not row["reached"]:
            continue
        ratios.append({
            "seed": row["seed"], "actors": row["actors"],
            "minutes_1_actor": base["reach_min"], "minutes_n_actors": row["reach_min"],
            "speedup": round(base["reach_min"] / row["reach_min"], 2),
            "env_steps_1_actor": base["reach_env_steps"], "env_steps_n_actors": row["reach_env_steps"],
        })
    return ratios


def plot(summaries: dict[str, dict], png: Path, window: int, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_steps, by_minutes) = plt.subplots(1, 2, figsize=(15, 4.5), sharey=True)
    for name, summary in summaries.items():
        episodes = read_episodes(Path(summary["run_dir"]) / "logs" / "episodes.csv")
        steps, rates = deterministic_points(episodes, window)
        minutes = [float(e["wall_time_s"]) / 60 for e in episodes if float(e.get("deterministic", 0) or 0) == 1]
        minutes = minutes[len(minutes) - len(steps):]
        rate = (summary.get("evaluation") or {}).get("success_rate")
        label = name if rate is None else f"{name}: evaluation {rate:.0%}"
        line, = by_steps.plot(steps, rates)
        by_minutes.plot(minutes, rates, color=line.get_color(), label=label)
    by_steps.set_xlabel("env steps")
    by_steps.set_ylabel(f"deterministic episodes' success (last {window})")
    by_steps.grid(alpha=0.3)
    # The legend goes beside the right-hand axes, so it hides no line.
    finish_rate_axes(figure, by_minutes, title, "")
    by_minutes.set_xlabel("minutes")
    by_minutes.set_title("")
    figure.suptitle(title)
    figure.tight_layout()
    write_png(figure, png)

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", type=Path, default=REPO / "hardware_configs/tasks/sim_pick_cube_state.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--actors", type=int, nargs="+", default=[1], help="actor counts to run each seed with, e.g. 1 2")
    parser.add_argument("--max-env-steps", type=int, default=15_000)
    parser.add_argument("--target-eval", type=float, default=0.95, help="the evaluation every seed should reach")
    parser.add_argument("--reach", type=float, default=0.9,
                        help="report env steps and minutes until the deterministic episodes' window first reached this")
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="PATH=VALUE",
                        help="dotted task-config fields for every run, e.g. agent.batch_size=64 (values are YAML)")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_seeds"))
    parser.add_argument("--reuse", action="store_true", help="keep the runs an earlier invocation finished in --out")
    args = parser.parse_args()
    if min(args.actors) < 1:
        raise SystemExit("--actors: every count must be at least 1")
    if not 0.0 < args.reach <= 1.0:
        raise SystemExit(f"--reach: a success rate in (0, 1], got {args.reach}")
    args.out.mkdir(parents=True, exist_ok=True)
    config = load_overrides(args.task, args.overrides)
    window = config.training.success_window_episodes

    summaries: dict[str, dict] = {}
    rows = []
    for actors in args.actors:
        for seed in args.seeds:
            summary = run_one(config, args.out, seed, actors, args.max_env_steps, args.eval_episodes, args.reuse)
            summaries[run_name(actors, seed)] = summary
            rows.append(describe(actors, seed, summary, args.reach, window))
    groups = aggregate(rows, args.target_eval)
    ratios = wall_clock_ratios(rows)

    def percent(value) -> str:
        return "-" if value is None else f"{value:.0%}"

    target = config.training.target_success_rate
    stop = ("none" if target is None else
            f"{target:.1%} over the last {window} {config.training.stop_on.replace('_', ' ')}")
    print(f"\n{config.task.name}: {len(rows)} runs, budget {args.max_env_steps} env steps, success-rate stop {stop}")
    mark = f"{args.reach:.0%} of {window} at (steps / min)"
    print(f"{'run':18s} {'env steps':>10s} {'minutes':>8s} {mark:>30s} {'eval mean action':>17s} {'eval sampled':>13s}")
    for row in rows:
        reached = "not reached" if not row["reached"] else f"{row['reach_env_steps']} / {row['reach_min']:.1f}"
        print(f"{row['run']:18s} {row['env_steps']!s:>10s} {row['wall_time_min']:>8.1f} {reached:>30s} "
              f"{percent(row['evaluation_success']):>17s} {percent(row['evaluation_sampled_success']):>13s}")
    for group in groups:
        print(f"{group['actors']} actor(s), seeds {group['seeds']}: evaluation mean {group['evaluation_mean']:.1%} "
              f"(lowest {group['evaluation_min']:.0%}, highest {group['evaluation_max']:.0%}, std {group['evaluation_std']:.1%}); "
              f"every seed >= {args.target_eval:.0%}: {'yes' if group['every_seed_met_target'] else 'no'}; "
              f"deterministic window reached {args.reach:.0%} in {group['reached']}"
              + ("" if group["reach_mean_min"] is None else
                 f", on average at {group['reach_mean_env_steps']} env steps, {group['reach_mean_min']:.1f} min"))
    for ratio in ratios:
        print(f"seed {ratio['seed']}: {ratio['actors']} actors reached {args.reach:.0%} in {ratio['minutes_n_actors']:.1f} min "
              f"({ratio['env_steps_n_actors']} env steps), 1 actor in {ratio['minutes_1_actor']:.1f} min "
              f"({ratio['env_steps_1_actor']} env steps): {ratio['speedup']:.2f}x")
    png = args.out / "seeds.png"
    plot(summaries, png, window, f"{config.task.name}: deterministic episodes along each run (CPU)")
    results = {"benchmark": "seeds", "task": config.task.name, "max_env_steps": args.max_env_steps,
               "target_eval": args.target_eval, "reach": args.reach, "window": window, "runs": rows, "by_actors": groups, "wall_clock_vs_1_actor": ratios}
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"curves: {png}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
