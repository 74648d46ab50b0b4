"""Which augmentation of cached encoder features learns better: the same camera-task session
(same pretrained encoder file, same env-step budget, no early stop) with each
``agent.encoder.cached_augmentation``, compared on the deterministic episodes the actor runs
every 2nd episode (the policy's mean action, nobody intervening: what an evaluation runs) and
on the evaluation after the budget (50 episodes).

    python benchmarks/bench_augmentation.py --encoder WEIGHTS [--task hardware_configs/tasks/sim_pick_cube.yaml]
        [--max-env-steps 6000] [--augmentations none feature_shift stored_crops] [--out outputs/bench_augmentation]
    python benchmarks/bench_augmentation.py --report DIR...   # the table and plot of earlier runs

Each run goes to OUT/<augmentation> (bench_learning.py's layout). Prints a table, writes one PNG
of the deterministic-success curves, ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from robot_stack.data.curves import deterministic_curve, read_episodes, save_rate_plot, steps_to_success  # noqa: E402

WINDOW = 20  # deterministic episodes, as the camera tasks' stop rule reads them


def run(task: Path, encoder: Path, augmentation: str, max_env_steps: int, out: Path) -> None:
    command = [sys.executable, str(REPO / "benchmarks" / "bench_learning.py"), "--runs", "ours", "--task", str(task),
               "--encoder", str(encoder), "--set", f"agent.encoder.cached_augmentation={augmentation}",
               "--target", "-1", "--max-env-steps", str(max_env_steps), "--out", str(out)]
    subprocess.run(command, check=True)


def describe(directory: Path) -> dict:
    summary = json.loads((directory / "results.json").read_text())["summaries"]["ours"]
    from robot_stack.config import load_task_config

    augmentation = load_task_config(directory / "ours" / "config.yaml").agent.encoder.cached_augmentation
    csv = Path(summary["episodes_csv"])
    reached = {}
    for target in (0.9, 1.0):
        hit = steps_to_success(csv, target, WINDOW, 1, "deterministic_episodes")
        reached[target] = None if hit is None else hit["env_steps"]
    return {
        "augmentation": augmentation,
        "env_steps": summary["env_steps"],
        "updates": summary["updates"],
        "minutes": round(summary["wall_time_s"] / 60, 1),
        "deterministic_90_at_env_steps": reached[0.9],
        "deterministic_100_at_env_steps": reached[1.0],
        "evaluation_success": (summary.get("evaluation") or {}).get("success_rate"),
        "episodes_csv": str(csv),
    }


def plot(rows: list[dict], png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7.5, 4.2))
    for row in rows:
        episodes = read_episodes(Path(row["episodes_csv"]))
        steps, rates = [e["step"] for e in episodes], deterministic_curve(episodes, WINDOW)
        evaluation = row["evaluation_success"]
        label = row["augmentation"] + ("" if evaluation is None else f" (evaluation {evaluation:.0%})")
        line, = axis.plot(steps, rates, label=label)
        if evaluation is not None:
            axis.scatter([steps[-1]], [evaluation], color=line.get_color(), marker="*", s=90, zorder=3)
    save_rate_plot(figure, axis, png, title, f"deterministic success (last {WINDOW} such episodes)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", type=Path, default=REPO / "hardware_configs/tasks/sim_pick_cube.yaml")
    parser.add_argument("--encoder", type=Path, help="the pretrained encoder weights every run uses")
    parser.add_argument("--max-env-steps", type=int, default=6000)
    parser.add_argument("--augmentations", nargs="+", default=["none", "feature_shift", "stored_crops"])
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_augmentation"))
    parser.add_argument("--report", nargs="+", type=Path, default=None, help="only tabulate and plot these run folders")
    args = parser.parse_args()
    if args.report:
        directories = args.report
    else:
        if args.encoder is None:
            raise SystemExit("--encoder is needed to run (one file for every augmentation)")
        directories = []
        for augmentation in args.augmentations:
            directory = args.out / augmentation
            run(args.task, args.encoder.resolve(), augmentation, args.max_env_steps, directory)
            directories.append(directory)
    rows = [describe(directory) for directory in directories]
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / "augmentation.png"
    plot(rows, png, f"{args.task.stem}: augmentation of cached features, 2 CPU cores")
    print(f"\n{'augmentation':15s} {'env steps':>10s} {'updates':>8s} {'minutes':>8s} {'det. 90% at':>12s} "
          f"{'det. 100% at':>13s} {'evaluation':>11s}")
    for row in rows:
        def show(value):
            return "-" if value is None else str(value)

        evaluation = "-" if row["evaluation_success"] is None else f"{row['evaluation_success']:.0%}"
        print(f"{row['augmentation']:15s} {row['env_steps']:>10d} {row['updates']:>8d} {row['minutes']:>8.1f} "
              f"{show(row['deterministic_90_at_env_steps']):>12s} {show(row['deterministic_100_at_env_steps']):>13s} {evaluation:>11s}")
    print(f"curves: {png}")
    print(json.dumps({"benchmark": "augmentation", "window": WINDOW,
                      "runs": [{k: v for k, v in row.items() if k != "episodes_csv"} for row in rows]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
