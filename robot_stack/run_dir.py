"""Where a task's run keeps its files: the run directory's layout and the task's demo folder.

The session lays a run out, and the commands it starts (learner, record-demos) find the same
folders from the config alone; both read them from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from robot_stack.config.schema import TaskConfig


@dataclass(frozen=True)
class RunPaths:
    """Where a session keeps everything; all under one run directory."""

    run_dir: Path
    config_file: Path
    checkpoints: Path
    logs: Path
    outbox: Path
    demos: Path
    evaluation: Path
    dataset: Path  # what the actors did, one LeRobotDataset v3 per actor: see actor_dataset

    @classmethod
    def under(cls, run_dir: Path, demos: Optional[Path] = None) -> "RunPaths":
        run_dir = Path(run_dir)
        return cls(
            run_dir=run_dir,
            config_file=run_dir / "config.yaml",
            checkpoints=run_dir / "checkpoints",
            logs=run_dir / "logs",
            outbox=run_dir / "outbox",
            demos=Path(demos) if demos is not None else run_dir / "demos",
            evaluation=run_dir / "eval",
            dataset=run_dir / "dataset",
        )

    def actor_dataset(self, actor_id: str) -> Path:
        """The dataset of one actor's episodes (``robot_stack.data.session_dataset``). One folder
        per actor: a dataset has one writer (its metadata is rewritten whole at every flush),
        and each actor numbers its own episodes; ``rldg finetune --data`` takes several folders."""
        if not actor_id or Path(actor_id).name != actor_id or actor_id in (".", ".."):
            raise ValueError(f"actor id {actor_id!r} cannot name a folder under {self.dataset}")
        return self.dataset / actor_id


def demo_dir(config: TaskConfig) -> Path:
    """The task's demo folder: training.demo_dir, else beside the task's run dir (runs/demos/<task>
    by default), so every run of a task finds the same demos."""
    if config.training.demo_dir is not None:
        return Path(config.training.demo_dir)
    return Path(config.session.run_dir).parent / "demos" / config.task.name
