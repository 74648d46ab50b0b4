"""Which pretraining objective makes the trunk see what a policy needs: each objective of
``robot-stack encoder pretrain`` trained with the same budget on the same demo frames, then
judged by how well a linear probe on its (projected) features finds the object.

  frames     demos of the task by the scripted teleoperator (what a lab records), with the
             simulator's object position kept beside them for the probe only: pretraining
             reads the TCP and gripper, never the object
  objectives random trunk (no training; the baseline in the same run), proprioception,
             keypoints, contrastive; each fits its projection on the same frames
  probe      ridge regression from both cameras' projected maps (flattened) to the object's
             position and to the object relative to the TCP, fitted on the training
             episodes, R^2 on held-out episodes (mean over x, y, z)

    python benchmarks/bench_encoder_pretrain.py [--task hardware_configs/tasks/sim_pick_cube.yaml]
        [--episodes 40] [--steps 400] [--objectives keypoints proprioception contrastive]

Prints a table, writes a bar chart PNG and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from robot_stack.config import load_task_config  # noqa: E402
from robot_stack.config.schema import EncoderPretrainConfig  # noqa: E402
from robot_stack.data.spec import STATE_KEY_SIZES  # noqa: E402
from robot_stack.config import with_fields  # noqa: E402

HELD_OUT_FRACTION = 0.25
RIDGE_ALPHA = 10.0


def record_frames(config, episodes: int, out: Path, seed: int) -> None:
    from actor.record_demos import record_demos

    observation = config.task.observation
    if "object_position" not in observation.state:
        config = with_fields(config, "task.observation", state=tuple(observation.state) + ("object_position",))
    record_demos(config, episodes, out, seed=seed, progress=True)
    return config


def probe_data(config, demo_dir: Path):
    """Per frame: images per camera, the object position and the TCP position (reset frame), episode."""
    import safetensors.numpy

    from robot_stack.data.demo_sets import read_demo_meta

    offsets, offset = {}, 0
    for key in config.task.observation.state:
        offsets[key] = offset
        offset += STATE_KEY_SIZES[key]
    cameras = list(config.task.observation.images)
    images = {c: [] for c in cameras}
    objects, tcps, episodes = [], [], []
    for index, entry in enumerate(read_demo_meta(demo_dir)["episodes"]):
        arrays = safetensors.numpy.load_file(str(demo_dir / entry["file"]))
        state = np.concatenate([arrays["observations/state"], arrays["next_observations/state"][-1:]])
        for c in cameras:
            images[c].append(np.concatenate([arrays[f"observations/images/{c}"], arrays[f"next_observations/images/{c}"][-1:]]))
        objects.append(state[:, offsets["object_position"] : offsets["object_position"] + 3])
        tcps.append(state[:, offsets["tcp_pose"] : offsets["tcp_pose"] + 3])
        episodes.append(np.full(len(state), index))
    return ({c: np.concatenate(v) for c, v in images.items()}, np.concatenate(objects), np.concatenate(tcps),
            np.concatenate(episodes))


def projected_features(weights: Path, config, images) -> np.ndarray:
    from robot_stack.policy.encoders import ImageEncoder

    parts = []
    for camera, frames in images.items():
        encoder = ImageEncoder(frames.shape[1:3], config.agent.encoder.model_copy(update={"pretrained_path": weights}),
                               config.agent.mixed_precision).eval()
        with torch.inference_mode():
            maps = torch.cat([encoder.trunk_features(torch.from_numpy(frames[i : i + 64])) for i in range(0, len(frames), 64)])
        parts.append(maps.flatten(1).numpy())
    return np.concatenate(parts, axis=1).astype(np.float64)


def ridge_r2(features: np.ndarray, targets: np.ndarray, train: np.ndarray) -> float:
    mean, std = features[train].mean(0), features[train].std(0) + 1e-6
    x = (features - mean) / std
    t_mean = targets[train].mean(0)
    xt = x[train]
    weights = np.linalg.solve(xt.T @ xt + RIDGE_ALPHA * np.eye(x.shape[1]), xt.T @ (targets[train] - t_mean))
    predicted = x[~train] @ weights + t_mean
    residual = ((predicted - targets[~train]) ** 2).mean(0)
    return float(np.mean(1 - residual / targets[~train].var(0)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", type=Path, default=REPO / "hardware_configs/tasks/sim_pick_cube.yaml")
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--objectives", nargs="+", default=["proprioception", "keypoints", "contrastive"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "outputs/bench_encoder_pretrain")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from learner.encoder_pretrain import pretrain_encoder

    config = load_task_config(args.task)
    if config.agent.encoder.projection_channels is None:
        config = with_fields(config, "agent.encoder", projection_channels=64)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        started = time.monotonic()
        probe_config = record_frames(config, args.episodes, tmp / "demos", args.seed)
        record_seconds = time.monotonic() - started
        images, objects, tcps, episodes = probe_data(probe_config, tmp / "demos")
        rng = np.random.default_rng(args.seed)
        unique = np.unique(episodes)
        held = rng.permutation(unique)[: max(1, int(round(HELD_OUT_FRACTION * len(unique))))]
        train = ~np.isin(episodes, held)
        # Pretraining sees only the training episodes' frames.
        train_dir = tmp / "train_demos"
        _subset_demos(tmp / "demos", train_dir, sorted(set(unique) - set(held)))
        print(f"{len(episodes)} frames from {len(unique)} episodes ({record_seconds:.0f} s to record); "
              f"{int(train.sum())} for pretraining and probe fitting, {int((~train).sum())} held out")
        for objective in ["random", *args.objectives]:
            weights = tmp / f"{objective}.safetensors"
            settings = EncoderPretrainConfig(objective=objective if objective != "random" else "keypoints",
                                             steps=0 if objective == "random" else args.steps,
                                             batch_size=args.batch_size, max_minutes=60.0, seed=args.seed)
            report = pretrain_encoder(probe_config, [train_dir], weights, settings=settings, progress=True)
            features = projected_features(weights, probe_config, images)
            rows.append({
                "objective": objective,
                "steps": report["steps"],
                "seconds": report["seconds"],
                "object_r2": round(ridge_r2(features, objects, train), 3),
                "object_minus_tcp_r2": round(ridge_r2(features, objects - tcps, train), 3),
                "tcp_r2": round(ridge_r2(features, tcps, train), 3),
            })
            print(rows[-1])
    print()
    print(f"{'objective':<16}{'steps':>7}{'seconds':>9}{'object R2':>11}{'object-TCP R2':>15}{'TCP R2':>9}")
    for row in rows:
        print(f"{row['objective']:<16}{row['steps']:>7}{row['seconds']:>9.0f}{row['object_r2']:>11.3f}"
              f"{row['object_minus_tcp_r2']:>15.3f}{row['tcp_r2']:>9.3f}")
    _plot(rows, args.out / "encoder_objectives.png", config.task.name)
    print(f"plot: {args.out / 'encoder_objectives.png'}")
    print(json.dumps({"benchmark": "encoder_pretrain", "task": config.task.name, "episodes": args.episodes,
                      "steps": args.steps, "batch_size": args.batch_size, "results": rows}))
    return 0


def _subset_demos(source: Path, target: Path, keep) -> None:
    import shutil

    from robot_stack.data.demo_sets import DEMOS_FILE, read_demo_meta

    meta = read_demo_meta(source)
    target.mkdir(parents=True)
    episodes = [meta["episodes"][i] for i in keep]
    for entry in episodes:
        shutil.copy(source / entry["file"], target / entry["file"])
    (target / DEMOS_FILE).write_text(json.dumps({**meta, "episodes": episodes}))


def _plot(rows, path: Path, task: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [row["objective"] for row in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for offset, key, label in ((-0.2, "object_r2", "object position"), (0.2, "object_minus_tcp_r2", "object relative to TCP")):
        ax.bar(x + offset, [row[key] for row in rows], width=0.4, label=label)
    ax.set_xticks(x, names)
    ax.set_ylabel("held-out R$^2$ of a linear probe")
    ax.set_title(f"{task}: what the trunk's features tell about the object")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
