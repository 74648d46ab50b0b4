"""The success classifier: labelled frames -> P(success), HIL-SERL's reward model in torch.

    camera image (uint8 HxWx3) -> ResNet-10 trunk -> spatial embeddings -> dense -> LayerNorm -> tanh
    (one encoder per camera, the learner's family, robot_stack.policy.encoders)
    concat(cameras in the configured order) -> dense -> ReLU -> dense -> logits

Binary (classes failure/success: one logit, sigmoid) or multi-class (softmax; P(success)
is the probability of the class named "success").

Training (``train_classifier``): episodes are split into a training part and a calibration
part; batches are class-balanced; images are augmented (random shift, brightness,
contrast). With a frozen trunk (the default, as HIL-SERL) the trunk's features are
computed once, for every frame and for a few augmented copies of it, and only the heads
train: minutes on a CPU. The threshold is then chosen on the calibration episodes for
the target precision (robot_stack.reward.calibration) and saved with the model.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import safetensors
import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from robot_stack.config.schema import ClassifierConfig
from robot_stack.policy.encoders import ImageEncoder, augment_images
from robot_stack.policy.weights_io import WeightsMismatchError, cpu_weights, load_weights_strict
from robot_stack.reward.base import WEIGHTS_FILE, RewardModelError, check_images, read_model_json, write_model_json
from robot_stack.reward.calibration import ThresholdChoice, choose_threshold
from robot_stack.reward.frame_sets import LabelledFrames, success_class_index

log = logging.getLogger(__name__)

INFERENCE_BATCH = 64


class SuccessClassifierNet(nn.Module):
    def __init__(self, cameras: Sequence[str], image_hw: Mapping[str, tuple[int, int]], config: ClassifierConfig,
                 num_classes: int, load_pretrained: bool = True):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
        self.cameras = tuple(cameras)
        self.encoders = nn.ModuleDict(
            {c: ImageEncoder(tuple(image_hw[c]), config.encoder, mixed_precision=False, load_pretrained=load_pretrained) for c in self.cameras}
        )
        outputs = 1 if num_classes == 2 else num_classes
        width = config.encoder.bottleneck_dim * len(self.cameras)
        self.mlp = nn.Sequential(nn.Linear(width, config.hidden_dim), nn.ReLU(), nn.Linear(config.hidden_dim, outputs))

    @property
    def frozen_trunk(self) -> bool:
        return all(encoder.frozen for encoder in self.encoders.values())

    def trunk_features(self, images: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {c: self.encoders[c].trunk_features(images[c]) for c in self.cameras}

    def logits_from_features(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        embedded = torch.cat([self.encoders[c].head(features[c].float()) for c in self.cameras], dim=-1)
        return self.mlp(embedded)

    def forward(self, images: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.logits_from_features(self.trunk_features(images))


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """(B, 1) binary logits -> (B, 2) [failure, success]; (B, C) -> softmax."""
    if logits.shape[-1] == 1:
        p = torch.sigmoid(logits[:, 0])
        return torch.stack([1.0 - p, p], dim=-1)
    return torch.softmax(logits, dim=-1)


class SuccessClassifierModel:
    """A trained classifier with its calibrated threshold; the SuccessModel of kind "classifier"."""

    kind = "classifier"

    def __init__(self, net: SuccessClassifierNet, config: ClassifierConfig, image_hw: Mapping[str, tuple[int, int]],
                 class_names: Sequence[str], threshold: float = 0.5, device: str = "cpu"):
        self.net = net.to(device).eval()
        self.config = config
        self.cameras = net.cameras
        self.image_hw = {c: tuple(image_hw[c]) for c in self.cameras}
        self.class_names = tuple(class_names)
        self.success_index = success_class_index(self.class_names)
        self.threshold = float(threshold)
        self.device = device

    def class_proba(self, images: Mapping[str, np.ndarray]) -> np.ndarray:
        """(B, C) class probabilities."""
        batch = check_images(images, self.cameras, self.image_hw, "success classifier")
        out = np.zeros((batch, len(self.class_names)), dtype=np.float64)
        self.net.eval()
        with torch.inference_mode():
            for start in range(0, batch, INFERENCE_BATCH):
                # np.require copies read-only frames (a camera driver's buffers), which torch cannot wrap.
                chunk = {
                    c: torch.from_numpy(np.require(images[c][start:start + INFERENCE_BATCH], requirements=("C", "W"))).to(self.device)
                    for c in self.cameras
                }
                out[start:start + INFERENCE_BATCH] = class_probabilities(self.net(chunk)).double().cpu().numpy()
        return out

    def predict_proba(self, images: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.class_proba(images)[:, self.success_index]

    def save(self, directory: Path, extra: Mapping[str, Any] | None = None) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "reward_model.json").unlink(missing_ok=True)  # incomplete until rewritten
        safetensors.torch.save_file(cpu_weights(self.net), str(directory / WEIGHTS_FILE))
        write_model_json(
            directory,
            {
                "kind": self.kind, "cameras": list(self.cameras),
                "image_hw": {c: list(hw) for c, hw in self.image_hw.items()},
                "class_names": list(self.class_names), "threshold": self.threshold,
                "classifier": self.config.model_dump(mode="json"), **(dict(extra) if extra else {}),
            },
        )
        return directory

    @classmethod
    def load(cls, directory: Path | str, device: str = "cpu") -> "SuccessClassifierModel":
        directory = Path(directory)
        meta = read_model_json(directory)
        where = directory / "reward_model.json"
        try:
            config = ClassifierConfig.model_validate(meta["classifier"])
            cameras = tuple(meta["cameras"])
            image_hw = {c: tuple(int(v) for v in meta["image_hw"][c]) for c in cameras}
            class_names = tuple(meta["class_names"])
        except (KeyError, TypeError, ValueError) as error:
            raise RewardModelError(f"{where}: not a classifier description: {error}") from None
        # The saved weights hold the trunk too: no pretrained file is read again.
        net = SuccessClassifierNet(cameras, image_hw, config, len(class_names), load_pretrained=False)
        weights = directory / WEIGHTS_FILE
        if not weights.is_file():
            raise RewardModelError(f"{weights}: no such file (the classifier's weights)")
        try:
            tensors = safetensors.torch.load_file(str(weights))
            load_weights_strict(net, tensors, str(weights))
        except (safetensors.SafetensorError, OSError) as error:
            raise RewardModelError(f"{weights}: not a readable safetensors file: {error}") from None
        except WeightsMismatchError as error:
            raise RewardModelError(str(error)) from None
        return cls(net, config, image_hw, class_names, float(meta["threshold"]), device)


# --------------------------------------------------------------------------- training


@dataclass
class TrainedClassifier:
    model: SuccessClassifierModel
    calibration: ThresholdChoice
    train_frames: int
    calibration_frames: int
    train_counts: dict[str, int]
    calibration_counts: dict[str, int]
    history: list[dict[str, float]] = field(default_factory=list)
    wall_time_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        c = self.calibration
        return {
            "train_frames": self.train_frames, "calibration_frames": self.calibration_frames,
            "train_counts": self.train_counts, "calibration_counts": self.calibration_counts,
            "calibration": {
                "threshold": c.threshold, "target_precision": c.target_precision, "target_reached": c.reached,
                "precision": c.precision, "recall": c.recall, "positives": c.positives, "negatives": c.negatives,
            },
            "final_loss": self.history[-1]["loss"] if self.history else None,
            "wall_time_s": round(self.wall_time_s, 1),
        }


def balanced_indices(labels: np.ndarray, size: int, rng: np.random.Generator, balanced: bool) -> np.ndarray:
    """``size`` frame indices; balanced: every present class equally likely, then a frame of it."""
    if not balanced:
        return rng.integers(0, labels.size, size)
    classes = np.unique(labels)
    by_class = [np.flatnonzero(labels == c) for c in classes]
    picks = rng.integers(0, classes.size, size)
    return np.array([by_class[k][rng.integers(by_class[k].size)] for k in picks], dtype=np.int64)


def train_classifier(
    frames: LabelledFrames,
    config: ClassifierConfig,
    cameras: Sequence[str],
    target_precision: float,
    progress: bool = True,
    device: str = "cpu",
) -> TrainedClassifier:
    """Train on part of the episodes, calibrate the threshold on the rest."""
    start = time.perf_counter()
    cameras = tuple(cameras)
    missing = [c for c in cameras if c not in frames.images]
    if missing:
        raise ValueError(f"the frames have cameras {frames.cameras}; the classifier needs {missing} too")
    counts = frames.counts()
    empty = [name for name, n in counts.items() if n == 0]
    if empty and len(frames.class_names) == 2:
        raise ValueError(f"the frames have no '{empty[0]}' frame ({counts}); record episodes of both kinds")
    t = config.training
    train, calibration = frames.split_by_episode(t.calibration_fraction, t.seed)
    if not calibration.is_success.any() or calibration.is_success.all():
        raise ValueError(
            f"the calibration episodes ({calibration.counts()}) need both successes and failures; record more episodes "
            f"(there are {np.unique(frames.episodes).size}) or change training.calibration_fraction"
        )
    torch.manual_seed(t.seed)
    generator = torch.Generator().manual_seed(t.seed)
    rng = np.random.default_rng(t.seed)
    image_hw = {c: tuple(frames.images[c].shape[1:3]) for c in cameras}
    net = SuccessClassifierNet(cameras, image_hw, config, len(frames.class_names)).to(device)
    binary = len(frames.class_names) == 2
    pad = config.encoder.random_crop_pad_px

    def aug(images: np.ndarray) -> torch.Tensor:
        return augment_images(torch.from_numpy(images), pad, t.brightness, t.contrast, generator)

    features: Optional[dict[str, torch.Tensor]] = None
    copies = 1
    if net.frozen_trunk:
        copies = 1 + t.augmented_copies
        features = _trunk_features(net, train, cameras, copies, aug, device, progress)

    parameters = [p for p in net.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(parameters, lr=t.lr, weight_decay=t.weight_decay)
    labels = train.labels
    history: list[dict[str, float]] = []
    bar = tqdm(range(t.steps), desc="train classifier", unit="step", disable=not progress, dynamic_ncols=True)
    net.train()
    for step in bar:
        index = balanced_indices(labels, t.batch_size, rng, t.balanced)
        target = torch.from_numpy(labels[index]).to(device)
        if features is not None:
            copy = rng.integers(0, copies, index.size)
            rows = torch.from_numpy(copy * len(train) + index)
            logits = net.logits_from_features({c: features[c][rows].to(device) for c in cameras})
        else:
            logits = net({c: aug(train.images[c][index]).to(device) for c in cameras})
        if binary:
            loss = F.binary_cross_entropy_with_logits(logits[:, 0], target.float())
            correct = ((logits[:, 0] > 0).long() == target).float().mean()
        else:
            loss = F.cross_entropy(logits, target)
            correct = (logits.argmax(-1) == target).float().mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if step % 10 == 0 or step == t.steps - 1:
            history.append({"step": step, "loss": float(loss.detach()), "batch_accuracy": float(correct)})
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}", acc=f"{float(correct):.2f}")
    bar.close()
    net.eval()

    model = SuccessClassifierModel(net, config, image_hw, frames.class_names, device=device)
    scores = model.predict_proba(calibration.images)
    choice = choose_threshold(scores, calibration.is_success, target_precision)
    model.threshold = choice.threshold
    if not choice.reached:
        log.warning(
            "no threshold reaches precision %.3f on the %d calibration frames; took %.4f (no false success on them)",
            target_precision, len(calibration), choice.threshold,
        )
    return TrainedClassifier(
        model=model, calibration=choice, train_frames=len(train), calibration_frames=len(calibration),
        train_counts=train.counts(), calibration_counts=calibration.counts(), history=history,
        wall_time_s=time.perf_counter() - start,
    )


def _trunk_features(net: SuccessClassifierNet, frames: LabelledFrames, cameras: tuple[str, ...], copies: int, aug,
                    device: str, progress: bool) -> dict[str, torch.Tensor]:
    """Frozen trunk: its feature maps for every frame (copy 0: as recorded; 1..: augmented),
    stored as float16 (the heads read them as float32)."""
    n = len(frames)
    out: dict[str, torch.Tensor] = {}
    total = copies * n * len(cameras)
    bar = tqdm(total=total, desc="trunk features", unit="img", disable=not progress, dynamic_ncols=True)
    with torch.inference_mode():
        for c in cameras:
            chunks = []
            for copy in range(copies):
                for start in range(0, n, INFERENCE_BATCH):
                    images = frames.images[c][start:start + INFERENCE_BATCH]
                    batch = torch.from_numpy(images) if copy == 0 else aug(images)
                    chunks.append(net.encoders[c].trunk_features(batch.to(device)).to("cpu", torch.float16))
                    bar.update(images.shape[0])
            out[c] = torch.cat(chunks)
    bar.close()
    size_mb = sum(t.numel() * 2 for t in out.values()) / 1e6
    log.info("trunk features: %d frames x %d copies x %d cameras, %.0f MB", n, copies, len(cameras), size_mb)
    return out
