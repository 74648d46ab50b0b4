"""Learning curves from the learner's ``episodes.csv``: the success rate the session stops
on, the step at which a target was first reached, and the PNG a session writes.

Deterministic episodes (``actor.deterministic_every_episodes``: the policy's mean action, no
exploration, nobody intervening) are what an evaluation runs; their rate, over the last
``window`` of them once there are that many, is what the shipped tasks stop on.

The training success rate (``stop_on: policy_episodes``): over the last ``window`` exploring
episodes, the share of successes among those nobody intervened in (an episode the
teleoperator finished says nothing about the policy); none until ``min_policy_only`` such
episodes are in the window. It reads high: the teleoperator steps in exactly when the policy
strays, so the episodes it keeps are the ones going well, and their actions are sampled.
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


def deterministic_points(episodes: Sequence[Mapping[str, Any]], window: int) -> tuple[list[float], list[float]]:
    """(env steps, rate) at each deterministic episode: the success over the last ``window`` of
    them, over as many as there are while the window fills: the evaluations along the run."""
    steps, rates, outcomes = [], [], []
    for episode in episodes:
        if _deterministic(episode):
            outcomes = (outcomes + [float(episode["success"])])[-window:]
            steps.append(float(episode["step"]))
            rates.append(sum(outcomes) / len(outcomes))
    return steps, rates


def finish_rate_axes(figure: Any, axis: Any, title: str, ylabel: str) -> None:
    """Axes 0..1 against env steps, grid, and the legend to the right of the axes: inside them
    it would hide lines that run across the whole height (a success curve climbs from 0 to 1,
    an intervention rate falls from 1 to 0)."""
    axis.set_xlabel("env steps")
    axis.set_ylabel(ylabel)
    axis.set_ylim(-0.02, 1.02)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8)
    figure.tight_layout()


def write_png(figure: Any, png: Path) -> Path:
    """Write the figure (the legend beside the axes included) and close it."""
    import matplotlib.pyplot as plt

    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return png


def save_rate_plot(figure: Any, axis: Any, png: Path, title: str, ylabel: str) -> Path:
    """Finish a plot of rates against env steps (``finish_rate_axes``) and write it as PNG."""
    finish_rate_axes(figure, axis, title, ylabel)
    return write_png(figure, png)


def learning_curve_figure(episodes: Sequence[Mapping[str, Any]], *, title: str, window: int = 20, min_policy_only: int = 5,
                          evaluation: Optional[Mapping[str, Any]] = None, target: Optional[float] = None) -> Any:
    """Against env steps: training success (sampled actions, episodes nobody intervened in), the
    deterministic episodes' success along the run, the intervention rate, the target, and the
    final evaluation (eval.json: the policy's mean action, and sampled actions beside it) as
    points at the end. The caller saves and closes the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, success, intervention = [], [], []
    for episode, rate, intervened in rolling(episodes, window, min_policy_only):
        steps.append(episode["step"])
        success.append(math.nan if rate is None else rate)
        intervention.append(intervened)
    figure, axis = plt.subplots(figsize=(10, 4.5))
    axis.plot(steps, success, label=f"training success, sampled actions\n(last {window} episodes, those without intervention)")
    learned_reward = any(
        not math.isnan(float(e.get("true_success", math.nan))) and float(e["true_success"]) != float(e["success"]) for e in episodes
    )
    if learned_reward:
        truth = []
        for index in range(len(episodes)):
            rate = window_success_rate(episodes[: index + 1], window, min_policy_only, key="true_success")
            truth.append(math.nan if rate is None else rate)
        axis.plot(steps, truth, "--", label="same, as the simulator judges it\n(the reward came from a learned detector)")
    deterministic_steps, deterministic_rates = deterministic_points(episodes, window)
    if deterministic_steps:
        axis.plot(deterministic_steps, deterministic_rates, ".-", markersize=3, linewidth=1.2,
                  label=f"deterministic episodes' success, mean action\n(last {window} of them; fewer until there are)")
    axis.plot(steps, intervention, label="intervention rate (share of steps)", alpha=0.7)
    if target is not None:
        axis.axhline(target, color="grey", linestyle=":", linewidth=1, label=f"target {target:.0%}")
    if evaluation is not None:
        axis.scatter([steps[-1]], [evaluation["success_rate"]], color="black", marker="*", s=110, zorder=3,
                     label=f"final evaluation, mean action: {evaluation['success_rate']:.0%} of {evaluation['episodes']}")
        sampled = evaluation.get("sampled")
        if sampled:
            axis.scatter([steps[-1]], [sampled["success_rate"]], facecolors="none", edgecolors="black", marker="o", s=70,
                         zorder=3, label=f"final evaluation, sampled actions: {sampled['success_rate']:.0%} of {sampled['episodes']}")
    finish_rate_axes(figure, axis, title, "rate")
    return figure


def plot_learning_curve(episodes_csv: Path, png: Path, *, title: str, window: int = 20, min_policy_only: int = 5,
                        evaluation: Optional[Mapping[str, Any]] = None, target: Optional[float] = None) -> Optional[Path]:
    """``learning_curve_figure`` of an ``episodes.csv``, written as PNG; None without episodes."""
    if not Path(episodes_csv).exists():
        return None
    episodes = read_episodes(episodes_csv)
    if not episodes:
        return None
    figure = learning_curve_figure(episodes, title=title, window=window, min_policy_only=min_policy_only,
                                   evaluation=evaluation, target=target)
    return write_png(figure, png)
