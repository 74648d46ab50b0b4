"""One HIL-SERL specialist per seen variant: a whole task session on the variant's config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from robot_stack.config.rldg import RldgExperiment, Variant
from robot_stack.data.files import write_json_atomic

SPECIALISTS_FILE = "specialists.json"


def has_checkpoint(directory: Path) -> bool:
    from robot_stack.data.checkpoints import CheckpointStore

    return Path(directory).is_dir() and bool(CheckpointStore(directory).complete())


def train_specialists(
    experiment: RldgExperiment,
    names: Optional[list[str]] = None,
    retrain: bool = False,
    progress: bool = True,
    max_env_steps: Optional[int] = None,
) -> dict[str, dict]:
    """Run a session for every seen variant (or those named) that has no specialist yet; returns
    and writes ``specialists.json`` (per variant: its session summary, or that it was kept)."""
    from robot_stack.session import run_session

    chosen = experiment.select(names) if names else experiment.seen
    held_out = [v.name for v in chosen if v.held_out]
    if held_out:
        raise ValueError(f"held-out variants get no specialist: {', '.join(held_out)}")
    summary_path = experiment.run_dir / SPECIALISTS_FILE
    summaries: dict[str, dict] = {}
    training = experiment.spec.specialists
    for variant in chosen:
        if has_checkpoint(variant.specialist) and not retrain:
            print(f"specialist '{variant.name}': keeping the checkpoint under {variant.specialist} (--retrain replaces it)")
            summaries.setdefault(variant.name, {"checkpoints": str(variant.specialist), "kept": True})
            continue
        run_dir = _session_dir(experiment, variant)
        print(f"specialist '{variant.name}': {variant.instruction!r}, session in {run_dir}")
        summary = run_session(
            variant.config,
            run_dir,
            max_env_steps=max_env_steps or training.max_env_steps,
            target_success_rate=training.target_success_rate,
            eval_episodes=training.eval_episodes,
            demo_episodes=training.demo_episodes,
            max_wall_time_s=training.max_minutes * 60 if training.max_minutes else None,
            demos=run_dir / "demos",
            progress=progress,
        )
        summaries[variant.name] = summary
        _record(summary_path, variant.name, summary)
    return summaries


def _record(path: Path, name: str, summary: dict) -> None:
    """Add one specialist's summary to the file (read afresh: sessions of other variants may
    run at the same time in other processes)."""
    recorded = json.loads(path.read_text()) if path.exists() else {}
    recorded[name] = summary
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, recorded)


def _session_dir(experiment: RldgExperiment, variant: Variant) -> Path:
    """The session's run dir: the parent of the variant's checkpoint dir (a session writes its
    checkpoints to ``<run dir>/checkpoints``)."""
    if variant.specialist.name != "checkpoints":
        raise ValueError(
            f"variant '{variant.name}': specialist {variant.specialist} has no checkpoint and is not a session's "
            "'checkpoints' folder, so a session cannot train it there; name <run dir>/checkpoints or leave it unset"
        )
    return variant.specialist.parent
