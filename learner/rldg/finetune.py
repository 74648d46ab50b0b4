"""Train a generalist on one or more LeRobotDataset v3 datasets (``robot-stack rldg finetune``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from robot_stack.config.rldg import GeneralistConfig
from robot_stack.data.lerobot_v3 import read_dataset, validate_dataset
from learner.rldg.generalist import PolicyFeatures, TrainingSample, build_generalist

LOSS_PLOT = "finetune_loss.png"


def camera_key(name: str) -> str:
    return f"observation.images.{name}"


def load_training_data(roots: Sequence[Path], cameras: Sequence[str]) -> tuple[TrainingSample, PolicyFeatures, list[dict[str, Any]]]:
    """Every frame of the datasets, checked to share one layout; returns the data, the features
    and a description of each dataset."""
    states, actions, starts, ends, instructions = [], [], [], [], []
    images: dict[str, list[np.ndarray]] = {name: [] for name in cameras}
    features: Optional[PolicyFeatures] = None
    described = []
    offset = 0
    for root in roots:
        problems = validate_dataset(Path(root), decode_videos=False)
        if problems:
            raise ValueError(f"{root} is not a valid LeRobot v3 dataset:\n  " + "\n  ".join(problems[:10]))
        dataset = read_dataset(Path(root))
        f = dataset.features
        for name in ("observation.state", "action"):
            if name not in f:
                raise ValueError(f"{root}: no '{name}' feature; the generalist trains on observation.state and action")
        missing = [name for name in cameras if camera_key(name) not in f]
        if missing:
            raise ValueError(f"{root}: no camera features for {missing} (has {dataset.camera_keys()})")
        these = PolicyFeatures(tuple(f["observation.state"]["names"] or ()), tuple(f["action"]["names"] or ()), tuple(cameras), dataset.fps)
        if features is None:
            features = these
        elif these != features:
            raise ValueError(f"{root}: its state, action, cameras or fps differ from {roots[0]}'s; datasets trained together must match")
        counts: dict[str, int] = {}
        for episode in dataset.iter_episodes(cameras=[camera_key(name) for name in cameras]):
            length = episode.length
            states.append(episode.frames["observation.state"])
            actions.append(episode.frames["action"])
            starts.append(np.full(length, offset, np.int64))
            ends.append(np.full(length, offset + length, np.int64))
            instructions.extend([episode.task] * length)
            for name in cameras:
                images[name].append(episode.frames[camera_key(name)])
            counts[episode.task] = counts.get(episode.task, 0) + 1
            offset += length
        described.append({"path": str(root), "episodes": dataset.info["total_episodes"], "frames": dataset.info["total_frames"],
                          "episodes_per_task": counts})
    assert features is not None
    data = TrainingSample(
        state=np.concatenate(states).astype(np.float32), action=np.concatenate(actions).astype(np.float32),
        episode_start=np.concatenate(starts), episode_end=np.concatenate(ends), instruction=instructions,
        images={name: np.concatenate(frames) for name, frames in images.items()},
    )
    return data, features, described


def finetune(config: GeneralistConfig, datasets: Sequence[Path], out: Path, progress: bool = True) -> dict[str, Any]:
    """Train and save the generalist under ``out``; returns the training summary."""
    if not datasets:
        raise ValueError("finetune needs at least one dataset")
    started = time.perf_counter()
    data, features, described = load_training_data(datasets, config.cameras)
    generalist = build_generalist(config, features)
    if generalist.features.state_names != features.state_names or generalist.features.action_names != features.action_names:
        raise ValueError(f"the initial checkpoint {config.init} was trained on other state/action entries than these datasets")
    print(f"finetune: {len(data.state)} frames from {sum(d['episodes'] for d in described)} episodes, "
          f"{len(set(data.instruction))} instructions, cameras {list(features.cameras) or 'none'}")
    result = generalist.fit(data, Path(out), progress=progress)
    losses = result.pop("losses", [])
    summary = {
        **result,
        "datasets": described,
        "instructions": sorted(set(data.instruction)),
        "wall_time_s": round(time.perf_counter() - started, 1),
        "initialised_from": str(config.init) if config.init else None,
    }
    generalist.save(Path(out), summary)
    if losses:
        _plot_losses(losses, Path(out) / LOSS_PLOT)
    return summary


def _plot_losses(losses: Sequence[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = np.asarray(losses)
    window = max(1, len(values) // 50)
    smooth = np.convolve(values, np.ones(window) / window, mode="valid")
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot(values, alpha=0.25, label="batch")
    axis.plot(np.arange(len(smooth)) + window - 1, smooth, label=f"mean of {window}")
    axis.set_xlabel("step")
    axis.set_ylabel("L1 action-chunk loss")
    axis.set_yscale("log")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
