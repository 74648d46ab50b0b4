"""Warm start (``training.init_from``): what a new run takes from another run, found and checked
here without torch, so that the session refuses an unusable source before it starts anything and
the learner loads only what passed the same checks.

- Networks: the other run's newest complete checkpoint. Its task may be another one (that is
  what a warm start is for), but its observation and action spec must be this task's: networks
  shaped for other arrays would not load, and networks fed other quantities in the same shapes
  would act on nonsense.
- Datasets as demos: every episode the other run recorded under its ``dataset/``, each checked
  against this task's transition layout before it reaches the demo buffer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from robot_stack.config import with_fields
from robot_stack.config.schema import InitFromConfig, TaskConfig
from robot_stack.data.lerobot_v3 import DatasetError
from robot_stack.data.checkpoints import CheckpointInfo, CheckpointStore, described_spec, spec_differences
from robot_stack.data.spec import ArraySpec, batch_spec, check_batch
from robot_stack.run_dir import RunPaths


class WarmStartError(RuntimeError):
    """The other run cannot warm-start this one: another spec or image trunk, networks that do not
    fit, nothing to take."""


def with_init_from(config: TaskConfig, run_dir: Path) -> TaskConfig:
    """``config`` warm-started from ``run_dir`` (the ``--init-from`` flag): it replaces the YAML's
    ``training.init_from.run_dir`` and keeps what the YAML says to take from it."""
    if config.training.init_from is not None:
        return with_fields(config, "training.init_from", run_dir=Path(run_dir))
    return with_fields(config, "training", init_from=InitFromConfig(run_dir=Path(run_dir)))


def source_checkpoints(run_dir: Path, observation_spec: Mapping[str, ArraySpec], action_spec: Mapping[str, ArraySpec],
                       own_checkpoint_dir: Path) -> list[CheckpointInfo]:
    """The other run's complete checkpoints, newest first, each written for this observation and
    action spec; raises WarmStartError if there is none or one was written for another spec."""
    directory = RunPaths.under(run_dir).checkpoints
    if directory.resolve() == Path(own_checkpoint_dir).resolve():
        raise WarmStartError(f"init_from names this run's own directory ({run_dir}): a run resumes its own checkpoints; "
                             "give init_from another run's directory")
    if not directory.is_dir():
        raise WarmStartError(f"init_from: {run_dir} has no checkpoints folder ({directory} does not exist)")
    found = CheckpointStore(directory).complete()
    if not found:
        raise WarmStartError(f"init_from: no complete checkpoint under {directory}")
    ours = described_spec(observation_spec, action_spec)
    newest_first = list(reversed(found))
    for info in newest_first:
        saved = info.meta.get("spec")
        if not isinstance(saved, Mapping):
            raise WarmStartError(f"init_from: {info.path} does not name its observation and action spec "
                                 "(written before checkpoints did): it cannot be checked, so it is not used")
        differences = spec_differences({key: saved.get(key) for key in ours}, ours)
        if differences:
            raise WarmStartError(f"init_from: {info.path} (task '{info.meta.get('task')}') was written for another "
                                 "observation/action spec: " + "; ".join(differences))
    return newest_first


def describe_checkpoint(info: CheckpointInfo) -> str:
    """Which checkpoint, of which task, how far its run had trained: for the logs of both ends."""
    counters = info.meta.get("counters") if isinstance(info.meta.get("counters"), dict) else {}
    return (f"{info.path} (task '{info.meta.get('task')}', {counters.get('updates', '?')} updates, "
            f"{counters.get('env_steps', '?')} env steps)")


def warm_start_record(run_dir: Path, info: CheckpointInfo) -> dict[str, Any]:
    """What the new run's checkpoints carry about where its networks came from (JSON-ready)."""
    counters = info.meta.get("counters") if isinstance(info.meta.get("counters"), dict) else {}
    return {
        "run_dir": str(Path(run_dir).resolve()), "checkpoint": str(info.path.resolve()), "task": info.meta.get("task"),
        "updates": counters.get("updates"), "env_steps": counters.get("env_steps"),
    }


def source_datasets(run_dir: Path) -> list[Path]:
    """The other run's recorded datasets (one per actor, run_dir/dataset/<actor id>); WarmStartError
    if it recorded none."""
    directory = RunPaths.under(run_dir).dataset
    folders = sorted(info.parent.parent for info in directory.glob("*/meta/info.json")) if directory.is_dir() else []
    if (directory / "meta" / "info.json").is_file():
        folders.insert(0, directory)
    if not folders:
        raise WarmStartError(f"init_from.datasets_as_demos: {run_dir} has no recorded dataset (none in {directory})")
    return folders


def dataset_episodes(run_dir: Path, observation_spec: Mapping[str, ArraySpec],
                     action_dim: int) -> Iterator[tuple[dict[str, np.ndarray], dict]]:
    """The other run's recorded episodes as transition batches with their metadata, each checked
    against this task's layout (WarmStartError naming the folder, the episode and the array that
    differs)."""
    folders = source_datasets(run_dir)
    # The reader brings the dataset format's dependencies: only a warm start from datasets needs them.
    try:
        from robot_stack.data.session_dataset import read_episode_transitions
    except ModuleNotFoundError as error:
        raise WarmStartError(f"init_from.datasets_as_demos: cannot read {folders[0]}: {error}") from error
    spec = batch_spec(observation_spec, action_dim)
    for directory in folders:
        try:
            for index, (arrays, meta) in enumerate(read_episode_transitions(directory)):
                try:
                    check_batch(arrays, spec, where=f"{directory} episode {index}")
                except ValueError as error:
                    raise WarmStartError(f"init_from.datasets_as_demos: {error}") from error
                yield arrays, meta
        except DatasetError as error:
            raise WarmStartError(f"init_from.datasets_as_demos: {error}") from error
