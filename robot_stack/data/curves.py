"""Learning curves from the learner's ``episodes.csv``: the success rate the session stops
on, the step at which a target was first reached, and the PNG a session writes.

The success rate that counts is the policy's own: over the last ``window`` episodes, the
share of successes among the episodes nobody intervened in (an episode the teleoperator
finished says nothing about the policy). Until ``min_policy_only`` such episodes are in the
window there is no rate.

Deterministic episodes (``actor.deterministic_every_episodes``: the policy's mean action, no
exploration, nobody intervening) are what an evaluation runs; they have their own rate, over
the last ``window`` of them once there are that many, and stay out of the exploring policy's
window.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence


def _deterministic(episode: Mapping[str, Any]) -> bool:
    value = float(episode.get("deterministic", 0.0))
    return not math.isnan(value) and bool(value)


def window_success_rate(episodes: Sequence[Mapping[str, Any]], window: int, min_policy_only: int, key: str = "success") -> Optional[float]:
    """``key``: "success" (what the task's reward source said) or "true_success" (the
    simulator's answer, where a learned detector gave the reward)."""
    exploring = [e for e in episodes if not _deterministic(e)]
    recent = [e for e in exploring[-window:] if not float(e["intervened"])]
    if not recent or len(recent) < max(min_policy_only, 1):
        return None
    return sum(float(e.get(key, e["success"])) for e in recent) / len(recent)


def window_deterministic_success_rate(episodes: Sequence[Mapping[str, Any]], window: int,
                                      key: str = "success") -> Optional[float]:
    """Success over the last ``window`` deterministic episodes; None until there are that many."""
    recent = [e for e in episodes if _deterministic(e)][-window:]
    if len(recent) < max(window, 1):
        return None
    return sum(float(e.get(key, e["success"])) for e in recent) / len(recent)


def stop_rule_rate(episodes: Sequence[Mapping[str, Any]], stop_on: str, window: int, min_policy_only: int) -> Optional[float]:
    """The success rate ``training.stop_on`` names: "policy_episodes" or "deterministic_episodes"."""
    if stop_on == "deterministic_episodes":
        return window_deterministic_success_rate(episodes, window)
    return window_success_rate(episodes, window, min_policy_only)


def window_intervention_rate(episodes: Sequence[Mapping[str, Any]], window: int) -> float:
    """Share of the env steps of the last ``window`` episodes that a teleoperator drove."""
    recent = list(episodes)[-window:]
    steps = sum(float(e["length"]) for e in recent)
    return sum(float(e["intervention_steps"]) for e in recent) / steps if steps else 0.0


def read_episodes(path: Path) -> list[dict[str, float]]:
    rows = []
    with open(path, newline="") as handle:
        for raw in csv.DictReader(handle):
            row = {}
            for key, text in raw.items():
                try:
                    row[key] = float(text)
                except (TypeError, ValueError):
                    row[key] = math.nan
            rows.append(row)
    return rows


def rolling(episodes: Sequence[Mapping[str, Any]], window: int, min_policy_only: int) -> Iterable[tuple[dict, Optional[float], float]]:
    """(episode, policy success rate, intervention rate) after each episode."""
    for index, episode in enumerate(episodes):
        seen = episodes[: index + 1]
        yield episode, window_success_rate(seen, window, min_policy_only), window_intervention_rate(seen, window)


def steps_to_success(path: Path, target: float, window: int, min_policy_only: int,
                     stop_on: str = "policy_episodes") -> Optional[dict[str, float]]:
    """The first point where the success rate ``stop_on`` names reached ``target``, or None."""
    if not Path(path).exists():
        return None
    episodes = read_episodes(path)
    for index, episode in enumerate(episodes):
        rate = stop_rule_rate(episodes[: index + 1], stop_on, window, min_policy_only)
        if rate is not None and rate >= target:
            return {"env_steps": int(episode["step"]), "wall_time_s": float(episode["wall_time_s"]), "episode": int(episode["episode"])}
    return None


def deterministic_curve(episodes: Sequence[Mapping[str, Any]], window: int) -> list[float]:
    """After each episode, the success rate over the last ``window`` deterministic episodes
    (NaN until there is a full window)."""
    curve = []
    for index in range(len(episodes)):
        rate = window_deterministic_success_rate(episodes[: index + 1], window)
        curve.append(math.nan if rate is None else rate)
    return curve


def save_rate_plot(figure: Any, axis: Any, png: Path, title: str, ylabel: str, legend_loc: str = "lower right") -> Path:
    """Finish a plot of rates against env steps (axes 0..1, grid, legend) and write it as PNG."""
    import matplotlib.pyplot as plt

    axis.set_xlabel("env steps")
    axis.set_ylabel(ylabel)
    axis.set_ylim(-0.02, 1.02)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(loc=legend_loc, fontsize=8)
    figure.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png, dpi=120)
    plt.close(figure)
    return png


def plot_learning_curve(
    episodes_csv: Path,
    png: Path,
    *,
    title: str,
    window: int = 20,
    min_policy_only: int = 5,
    evaluation: Optional[Mapping[str, Any]] = None,
) -> Optional[Path]:
    """Success rate and intervention rate against env steps; the evaluation as a marker."""
    if not Path(episodes_csv).exists():
        return None
    episodes = read_episodes(episodes_csv)
    if not episodes:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, success, intervention = [], [], []
    for episode, rate, intervened in rolling(episodes, window, min_policy_only):
        steps.append(episode["step"])
        success.append(math.nan if rate is None else rate)
        intervention.append(intervened)
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot(steps, success, label=f"policy success (last {window} episodes, no intervention)")
    learned_reward = any(
        not math.isnan(float(e.get("true_success", math.nan))) and float(e["true_success"]) != float(e["success"]) for e in episodes
    )
    if learned_reward:
        truth = []
        for index in range(len(episodes)):
            rate = window_success_rate(episodes[: index + 1], window, min_policy_only, key="true_success")
            truth.append(math.nan if rate is None else rate)
        axis.plot(steps, truth, "--", label="same, as the simulator judges it (the reward came from a learned detector)")
    if any(_deterministic(e) for e in episodes):
        axis.plot(steps, deterministic_curve(episodes, window), label=f"deterministic success (last {window} deterministic episodes)")
    axis.plot(steps, intervention, label="intervention rate (share of steps)", alpha=0.7)
    if evaluation is not None:
        axis.scatter([steps[-1]], [evaluation["success_rate"]], color="black", zorder=3,
                     label=f"evaluation: {evaluation['success_rate']:.0%} of {evaluation['episodes']} episodes")
    return save_rate_plot(figure, axis, png, title, "rate")
