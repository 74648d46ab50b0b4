"""Pretrain the ResNet-10 trunk on a lab's own recorded frames, for when no ImageNet weights are
at hand: ``robot-stack encoder pretrain``.

Frames come from demo sets (``record-demos``) and labelled frame sets (``reward record``). Every
target is something a real cell records with its frames, never a simulator-only quantity:

  proprioception  the TCP position and gripper width at the frame
  keypoints       those, plus where the arm ended the episode and where its gripper first
                  closed, relative to the TCP at the frame: a demonstration ends where the
                  task is done (the hole), and a grasp happens where the object is, so
                  predicting them from the image teaches the trunk to find the object and the
                  goal, the things a policy must see
  contrastive     SimCLR: two augmented views of a frame against the rest of the batch

One trunk is trained for every camera (the weights file holds one trunk, which every camera's
encoder loads, as HIL-SERL loads its ImageNet trunk). Each camera has its own small prediction
head, so each camera's features must carry the targets on their own. Images are augmented as the
reward classifier's are (random shift, brightness, contrast).

Then the projection: the principal components of the trunk's 512 channels over all the frames
(every cell of every map a sample), scaled to unit average variance, as a 1x1 map to
``agent.encoder.projection_channels`` channels. The file written holds the trunk and the
projection (``robot_stack.policy.encoders.save_trunk_weights``), with a JSON report beside it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import safetensors
import safetensors.numpy
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from robot_stack.config.schema import EncoderPretrainConfig, TaskConfig, TaskSpec
from robot_stack.data.demo_sets import DEMOS_FILE, read_demo_meta
from robot_stack.data.spec import STATE_KEY_SIZES
from robot_stack.policy.encoders import ResNet10, augment_images, load_trunk_weights, save_trunk_weights
from robot_stack.policy.layers import compute_autocast
from robot_stack.reward.frame_sets import FRAMES_FILE, load_frames

log = logging.getLogger(__name__)

VALIDATION_FRACTION = 0.15
PROJECTION_MAX_FRAMES = 3000  # per camera: plenty for a 512 x 512 covariance
CROP_PAD_PX = 4
CONTRASTIVE_CROP_PAD_PX = 12
BRIGHTNESS = CONTRAST = 0.15
CONTRASTIVE_TEMPERATURE = 0.1
HEAD_CHANNELS = 64
HEAD_HIDDEN = 256
# A gripper that moved less than this over an episode never grasped (fixed_closed tasks).
GRIPPER_MOTION_M = 0.005


class PretrainError(ValueError):
    """Frames that cannot be pretrained on; the message names the file and what is wrong."""


@dataclass
class PretrainFrames:
    """Frames of every camera with the proprioception recorded beside them."""

    images: dict[str, np.ndarray]  # camera -> uint8 (N, H, W, 3)
    episodes: np.ndarray  # (N,) episode index, unique across sources
    tcp_xyz: np.ndarray  # (N, 3) float32, base frame
    gripper_width: np.ndarray  # (N,) float32, m

    def __len__(self) -> int:
        return int(self.episodes.shape[0])

    def take(self, index: np.ndarray) -> "PretrainFrames":
        return PretrainFrames({c: v[index] for c, v in self.images.items()}, self.episodes[index], self.tcp_xyz[index],
                              self.gripper_width[index])


def _state_slices(task: TaskSpec) -> dict[str, slice]:
    slices, offset = {}, 0
    for key in task.observation.state:
        slices[key] = slice(offset, offset + STATE_KEY_SIZES[key])
        offset += STATE_KEY_SIZES[key]
    return slices


def _load_demo_set(directory: Path, cameras: Sequence[str], task: TaskSpec) -> list[dict[str, np.ndarray]]:
    slices = _state_slices(task)
    for needed in ("tcp_pose", "gripper_width"):
        if needed not in slices:
            raise PretrainError(
                f"{directory}: the task's state ({list(slices)}) has no '{needed}', which pretraining reads from demo frames"
            )
    episodes = []
    for entry in read_demo_meta(directory)["episodes"]:
        path = directory / entry["file"]
        try:
            arrays = safetensors.numpy.load_file(str(path))
        except (safetensors.SafetensorError, OSError, ValueError) as error:
            raise PretrainError(f"{path}: not a readable safetensors file: {error}") from None
        episode = {}
        # Each step's observation, then the episode's last next observation: every frame once.
        for key in [*(f"images/{c}" for c in cameras), "state"]:
            first, last = f"observations/{key}", f"next_observations/{key}"
            if first not in arrays or last not in arrays:
                raise PretrainError(f"{path}: no '{first}' (the demo set was recorded without it)")
            episode[key] = np.concatenate([arrays[first], arrays[last][-1:]])
        state = episode.pop("state")
        episode["tcp_xyz"] = state[:, slices["tcp_pose"]][:, :3]
        episode["gripper_width"] = state[:, slices["gripper_width"]][:, 0]
        episodes.append(episode)
    return episodes


def _load_frame_set(directory: Path, cameras: Sequence[str]) -> list[dict[str, np.ndarray]]:
    frames = load_frames(directory, cameras)
    names = list(frames.state_names)
    try:
        xyz = [names.index(n) for n in ("tcp_x_m", "tcp_y_m", "tcp_z_m")]
        width = names.index("gripper_width_m")
    except ValueError:
        raise PretrainError(f"{directory}: the frame set's state ({names}) lacks the TCP position or gripper width") from None
    episodes = []
    for index in np.unique(frames.episodes):
        rows = np.flatnonzero(frames.episodes == index)
        rows = rows[np.argsort(frames.steps[rows], kind="stable")]
        episode = {f"images/{c}": frames.images[c][rows] for c in cameras}
        episode["tcp_xyz"] = frames.state[rows][:, xyz]
        episode["gripper_width"] = frames.state[rows][:, width]
        episodes.append(episode)
    return episodes


def load_pretrain_frames(sources: Sequence[Path], task: TaskSpec) -> PretrainFrames:
    """Every frame of the demo sets and frame sets in ``sources``, for the task's cameras."""
    cameras = list(task.observation.images)
    if not cameras:
        raise PretrainError(f"task '{task.name}' has no cameras in task.observation.images: nothing to pretrain on")
    episodes: list[dict[str, np.ndarray]] = []
    for source in sources:
        source = Path(source)
        if (source / DEMOS_FILE).is_file():
            episodes += _load_demo_set(source, cameras, task)
        elif (source / FRAMES_FILE).is_file():
            episodes += _load_frame_set(source, cameras)
        else:
            raise PretrainError(f"{source}: neither a demo set ({DEMOS_FILE}) nor a frame set ({FRAMES_FILE})")
    if not episodes:
        raise PretrainError(f"no frames in {[str(s) for s in sources]}")
    for camera in cameras:
        shapes = {episode[f"images/{camera}"].shape[1:] for episode in episodes}
        if len(shapes) > 1:
            raise PretrainError(f"camera '{camera}' has frames of several sizes {sorted(shapes)} across {[str(s) for s in sources]}")
    return PretrainFrames(
        images={c: np.concatenate([e[f"images/{c}"] for e in episodes]) for c in cameras},
        episodes=np.concatenate([np.full(len(e["tcp_xyz"]), i) for i, e in enumerate(episodes)]),
        tcp_xyz=np.concatenate([e["tcp_xyz"] for e in episodes]).astype(np.float32),
        gripper_width=np.concatenate([e["gripper_width"] for e in episodes]).astype(np.float32),
    )


# --------------------------------------------------------------------------- targets


def regression_targets(frames: PretrainFrames, objective: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(targets (N, T), mask (N, T) of the targets a frame has, their names)."""
    names = ["tcp_x", "tcp_y", "tcp_z", "gripper_width"]
    columns = [frames.tcp_xyz, frames.gripper_width[:, None]]
    masks = [np.ones((len(frames), 4), bool)]
    if objective == "keypoints":
        final = np.zeros_like(frames.tcp_xyz)
        grasp = np.zeros_like(frames.tcp_xyz)
        has_grasp = np.zeros(len(frames), bool)
        for episode in np.unique(frames.episodes):
            rows = np.flatnonzero(frames.episodes == episode)
            final[rows] = frames.tcp_xyz[rows[-1]]
            width = frames.gripper_width[rows]
            if width.max() - width.min() >= GRIPPER_MOTION_M:
                # The first frame the gripper is past half-way from open to its narrowest.
                closed = np.flatnonzero(width <= (width.max() + width.min()) / 2)
                if closed.size and closed[0] > 0:
                    grasp[rows] = frames.tcp_xyz[rows[closed[0]]]
                    has_grasp[rows] = True
        names += ["final_dx", "final_dy", "final_dz", "grasp_dx", "grasp_dy", "grasp_dz"]
        columns += [final - frames.tcp_xyz, grasp - frames.tcp_xyz]
        masks += [np.ones((len(frames), 3), bool), np.repeat(has_grasp[:, None], 3, axis=1)]
    elif objective != "proprioception":
        raise ValueError(f"no regression targets for objective '{objective}'")
    return np.concatenate(columns, axis=1).astype(np.float32), np.concatenate(masks, axis=1), names


# --------------------------------------------------------------------------- networks


class CameraHead(nn.Module):
    """Trunk map -> 1x1 conv -> flatten -> dense -> ReLU -> outputs (a regression or an
    embedding): what one camera's features must carry."""

    def __init__(self, feature_hw: tuple[int, int], outputs: int):
        super().__init__()
        self.reduce = nn.Conv2d(ResNet10.out_channels, HEAD_CHANNELS, 1)
        self.hidden = nn.Linear(HEAD_CHANNELS * feature_hw[0] * feature_hw[1], HEAD_HIDDEN)
        self.out = nn.Linear(HEAD_HIDDEN, outputs)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(self.hidden(F.relu(self.reduce(maps)).flatten(1))))


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss: each view must pick its partner out of the other 2B - 2 views."""
    z = F.normalize(torch.cat([a, b]).float(), dim=1)
    logits = z @ z.t() / temperature
    logits.fill_diagonal_(-math.inf)
    n = a.shape[0]
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, partner)


# --------------------------------------------------------------------------- projection


@torch.inference_mode()
def trunk_maps(trunk: ResNet10, images: np.ndarray, mixed_precision: bool, chunk: int = 64) -> torch.Tensor:
    """float32 trunk maps (N, 512, h, w) of uint8 frames, no augmentation."""
    trunk.eval()
    out = []
    for start in range(0, len(images), chunk):
        with compute_autocast("cpu", mixed_precision):
            out.append(trunk(torch.from_numpy(images[start : start + chunk])).float())
    return torch.cat(out)


def fit_projection(trunk: ResNet10, images: Mapping[str, np.ndarray], channels: int, mixed_precision: bool,
                   seed: int = 0) -> tuple[nn.Conv2d, dict[str, float]]:
    """The principal components of the trunk's channels over ``images`` (every camera, every
    cell of every map), as a 1x1 conv to ``channels`` channels that centres the features and
    scales them to unit average variance; and how much of the variance they keep."""
    rng = np.random.default_rng(seed)
    samples = []
    for frames in images.values():
        index = rng.permutation(len(frames))[:PROJECTION_MAX_FRAMES]
        maps = trunk_maps(trunk, frames[np.sort(index)], mixed_precision)
        samples.append(maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1]).double())
    x = torch.cat(samples)
    mean = x.mean(0)
    covariance = torch.cov((x - mean).t())
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
    top = eigenvalues.flip(0)[:channels].clamp_min(0)
    basis = eigenvectors.flip(1)[:, :channels]  # (512, channels)
    scale = 1.0 / math.sqrt(max(float(top.mean()), 1e-12))
    weight = (basis.t() * scale).float()
    projection = nn.Conv2d(x.shape[1], channels, 1)
    with torch.no_grad():
        projection.weight.copy_(weight[:, :, None, None])
        projection.bias.copy_(-(weight.double() @ mean).float())
    kept = float(top.sum() / eigenvalues.clamp_min(0).sum())
    return projection, {"channels": channels, "variance_kept": round(kept, 4), "samples": int(x.shape[0])}


# --------------------------------------------------------------------------- training


def _r2(predicted: np.ndarray, target: np.ndarray, mask: np.ndarray) -> list[Optional[float]]:
    scores = []
    for j in range(target.shape[1]):
        rows = mask[:, j]
        if rows.sum() < 2 or target[rows, j].var() == 0:
            scores.append(None)
            continue
        residual = ((predicted[rows, j] - target[rows, j]) ** 2).mean()
        scores.append(round(float(1 - residual / target[rows, j].var()), 4))
    return scores


def pretrain_encoder(
    config: TaskConfig,
    sources: Sequence[Path],
    out: Path,
    *,
    settings: Optional[EncoderPretrainConfig] = None,
    init: Optional[Path] = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a trunk on the frames of ``sources``, fit its projection, write both to ``out`` (and
    a report to ``out`` + ".json"); returns the report."""
    settings = settings or config.agent.encoder.pretrain or EncoderPretrainConfig()
    channels = config.agent.encoder.projection_channels
    mixed_precision = config.agent.mixed_precision
    started = time.monotonic()
    frames = load_pretrain_frames(sources, config.task)
    cameras = list(frames.images)
    feature_hw = {c: ResNet10.feature_hw(frames.images[c].shape[1:3]) for c in cameras}

    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    trunk = ResNet10()
    if init is not None:
        load_trunk_weights(trunk, init)

    episodes = np.unique(frames.episodes)
    held = rng.permutation(episodes)[: max(1, int(round(VALIDATION_FRACTION * len(episodes))))] if len(episodes) >= 4 else []
    held_rows = np.isin(frames.episodes, held)
    train, validation = frames.take(np.flatnonzero(~held_rows)), frames.take(np.flatnonzero(held_rows))

    contrastive = settings.objective == "contrastive"
    if not contrastive:
        targets, mask, names = regression_targets(frames, settings.objective)
        train_targets, train_mask = targets[~held_rows], mask[~held_rows]
        # Standardised on the training frames, so every target weighs the same in the loss.
        mean = np.array([train_targets[train_mask[:, j], j].mean() if train_mask[:, j].any() else 0.0 for j in range(len(names))])
        std = np.array([train_targets[train_mask[:, j], j].std() if train_mask[:, j].any() else 1.0 for j in range(len(names))])
        std = np.where(std > 1e-6, std, 1.0)
        outputs = len(names)
    else:
        names, outputs = [], 128
    heads = nn.ModuleDict({c: CameraHead(feature_hw[c], outputs) for c in cameras})
    parameters = [*trunk.parameters(), *heads.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * min(step, settings.steps) / max(settings.steps, 1)))
    )
    losses: list[float] = []
    deadline = started + settings.max_minutes * 60.0
    bar = tqdm(total=settings.steps, desc=f"encoder pretrain ({settings.objective})", unit="step", disable=not progress,
               dynamic_ncols=True)
    trunk.train()
    heads.train()
    step = 0
    for step in range(settings.steps):
        if time.monotonic() > deadline:
            log.warning("encoder pretraining stopped at step %d of %d: max_minutes %.1f reached", step, settings.steps, settings.max_minutes)
            break
        rows = rng.integers(0, len(train), settings.batch_size)
        loss = torch.zeros(())
        for camera in cameras:
            images = torch.from_numpy(train.images[camera][rows])
            if contrastive:
                views = [augment_images(images, CONTRASTIVE_CROP_PAD_PX, 0.4, 0.4, generator) for _ in range(2)]
                with compute_autocast("cpu", mixed_precision):
                    a, b = (heads[camera](trunk(v)).float() for v in views)
                loss = loss + nt_xent(a, b, CONTRASTIVE_TEMPERATURE)
            else:
                x = augment_images(images, CROP_PAD_PX, BRIGHTNESS, CONTRAST, generator)
                with compute_autocast("cpu", mixed_precision):
                    predicted = heads[camera](trunk(x)).float()
                target = torch.from_numpy((train_targets[rows] - mean) / std).float()
                weight = torch.from_numpy(train_mask[rows]).float()
                loss = loss + ((predicted - target) ** 2 * weight).sum() / weight.sum().clamp_min(1.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix_str(f"loss {np.mean(losses[-10:]):.4f}")
    bar.close()
    steps_done = len(losses)
    train_seconds = time.monotonic() - started

    report: dict[str, Any] = {
        "task": config.task.name,
        "objective": settings.objective,
        "sources": [str(s) for s in sources],
        "cameras": cameras,
        "frames": len(frames),
        "episodes": int(len(episodes)),
        "validation_episodes": int(len(held)),
        "steps": steps_done,
        "batch_size": settings.batch_size,
        "init": str(init) if init is not None else None,
        # Mean loss over the first and the last tenth of the steps.
        "loss_start": round(float(np.mean(losses[: max(1, len(losses) // 10)])), 5) if losses else None,
        "loss_end": round(float(np.mean(losses[-max(1, len(losses) // 10) :])), 5) if losses else None,
        "train_seconds": round(train_seconds, 1),
    }
    if not contrastive and len(validation):
        trunk.eval()
        heads.eval()
        r2 = {}
        with torch.inference_mode():
            for camera in cameras:
                maps = trunk_maps(trunk, validation.images[camera], mixed_precision)
                predicted = heads[camera](maps).numpy() * std + mean
                r2[camera] = dict(zip(names, _r2(predicted, targets[held_rows], mask[held_rows])))
        report["validation_r2"] = r2

    trunk.eval()
    projection = None
    if channels is not None:
        projection, projection_report = fit_projection(trunk, frames.images, channels, mixed_precision, settings.seed)
        report["projection"] = projection_report
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_trunk_weights(trunk, out, projection)
    report["seconds"] = round(time.monotonic() - started, 1)
    report["weights"] = str(out)
    Path(f"{out}.json").write_text(json.dumps(report, indent=1))
    return report
