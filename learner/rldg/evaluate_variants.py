"""Success rate of generalists (and the specialists) per task variant, seen and held out
(``robot-stack rldg eval``): a table in Markdown and JSON and a bar chart PNG.

Every policy meets the same episodes: variant i's episode j starts from seed
``eval.seed + 10_000 * i + j`` whichever policy runs it, so the comparison is paired.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from robot_stack.config.rldg import RldgExperiment, Variant
from robot_stack.data.files import write_json_atomic

EVAL_JSON = "rldg_eval.json"
EVAL_TABLE = "rldg_eval.md"
EVAL_PLOT = "rldg_eval.png"
SPECIALISTS = "specialists"


class InstructedPolicy:
    """A generalist told one variant's instruction, behind the actor's evaluation interface."""

    def __init__(self, generalist, instruction: str):
        self.generalist, self.instruction = generalist, instruction

    def reset(self) -> None:
        self.generalist.reset()

    def act(self, observation, deterministic: bool = True, rng=None) -> np.ndarray:
        return self.generalist.act(observation, self.instruction)


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate."""
    if trials == 0:
        return (math.nan, math.nan)
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return (max(0.0, centre - half), min(1.0, centre + half))


def evaluate(
    experiment: RldgExperiment,
    generalists: Mapping[str, Path],
    out: Path,
    variants: Optional[list[str]] = None,
    episodes: Optional[int] = None,
    include_specialists: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate each generalist (label -> checkpoint dir) on every variant; returns the results."""
    from actor.evaluate_policy import evaluate_policy
    from learner.rldg.collect import load_specialist, with_cameras
    from learner.rldg.generalist import load_generalist

    if not generalists and not include_specialists:
        raise ValueError("nothing to evaluate: name a generalist or ask for the specialists")
    chosen = experiment.select(variants)
    count = episodes or experiment.spec.eval.episodes_per_variant
    loaded = {label: load_generalist(Path(path)) for label, path in generalists.items()}
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for label, generalist in loaded.items():
        results[label] = {}
        for variant in chosen:
            config = with_cameras(variant, generalist.features.cameras)
            seed = _seed(experiment, variant)
            report = evaluate_policy(config, InstructedPolicy(generalist, variant.instruction), count, seed=seed, progress=progress)
            results[label][variant.name] = _outcome(report)
    if include_specialists:
        results[SPECIALISTS] = {}
        for variant in chosen:
            if variant.held_out:
                continue
            report = evaluate_policy(variant.config, load_specialist(variant), count, seed=_seed(experiment, variant), progress=progress)
            results[SPECIALISTS][variant.name] = _outcome(report)

    summary = {
        "experiment": experiment.spec.name,
        "episodes_per_variant": count,
        "variants": [{"name": v.name, "instruction": v.instruction, "held_out": v.held_out} for v in chosen],
        "generalists": {label: str(path) for label, path in generalists.items()},
        "results": results,
        "seen_mean": {label: _mean(per, chosen, held_out=False) for label, per in results.items()},
        "held_out_mean": {label: _mean(per, chosen, held_out=True) for label, per in results.items()},
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / EVAL_JSON, summary)
    (out / EVAL_TABLE).write_text(results_table(summary) + "\n")
    plot_results(summary, out / EVAL_PLOT)
    return summary


def _seed(experiment: RldgExperiment, variant: Variant) -> int:
    return experiment.spec.eval.seed + 10_000 * [v.name for v in experiment.variants].index(variant.name)


def _outcome(report) -> dict[str, Any]:
    successes = sum(e.success for e in report.episodes)
    low, high = wilson_interval(successes, len(report.episodes))
    return {"success_rate": report.success_rate, "successes": successes, "episodes": len(report.episodes),
            "interval_95": [low, high], "mean_length": report.mean_length, "nonfinite_actions": report.nonfinite_actions}


def _mean(per_variant: Mapping[str, Mapping[str, Any]], variants, held_out: bool) -> Optional[float]:
    rates = [per_variant[v.name]["success_rate"] for v in variants if v.held_out == held_out and v.name in per_variant]
    return float(np.mean(rates)) if rates else None


def results_table(summary: Mapping[str, Any]) -> str:
    variants = summary["variants"]
    header = ["policy"] + [f"{v['name']}{' (held out)' if v['held_out'] else ''}" for v in variants] + ["seen mean", "held-out mean"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, per in summary["results"].items():
        cells = [label]
        for v in variants:
            result = per.get(v["name"])
            cells.append(f"{result['success_rate']:.0%} ({result['successes']}/{result['episodes']})" if result else "")
        for mean in (summary["seen_mean"][label], summary["held_out_mean"][label]):
            cells.append(f"{mean:.0%}" if mean is not None else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_results(summary: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = summary["variants"]
    labels = list(summary["results"])
    groups = [v["name"] + ("\n(held out)" if v["held_out"] else "") for v in variants] + ["seen\nmean"]
    width = 0.8 / max(1, len(labels))
    figure, axis = plt.subplots(figsize=(1.6 + 1.5 * len(groups), 4))
    for i, label in enumerate(labels):
        per = summary["results"][label]
        values, errors = [], [[], []]
        for v in variants:
            result = per.get(v["name"])
            rate = result["success_rate"] if result else np.nan
            values.append(rate)
            low, high = result["interval_95"] if result else (np.nan, np.nan)
            errors[0].append(rate - low if result else 0.0)
            errors[1].append(high - rate if result else 0.0)
        seen = summary["seen_mean"][label]
        values.append(seen if seen is not None else np.nan)
        errors[0].append(0.0)
        errors[1].append(0.0)
        positions = np.arange(len(groups)) + (i - (len(labels) - 1) / 2) * width
        axis.bar(positions, np.asarray(values) * 100, width, yerr=np.asarray(errors) * 100, capsize=2, label=label)
    axis.set_xticks(np.arange(len(groups)))
    axis.set_xticklabels(groups)
    axis.set_ylabel("success rate (%)")
    axis.set_ylim(0, 105)
    axis.set_title(f"RLDG {summary['experiment']}: {summary['episodes_per_variant']} episodes per variant (95% intervals)")
    axis.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
