"""Observation encoders: what turns a flat observation into the feature vector the actor and
the critics read.

    image (uint8 HxWx3) -> ImageNet normalisation -> ResNet-10 trunk (GroupNorm, frozen by default)
        -> spatial learned embeddings -> dropout -> dense -> LayerNorm -> tanh      (one per camera)
    state (float S)     -> dense -> LayerNorm -> tanh                              (or raw)
    features = concat(cameras in name order, state)

This is HIL-SERL's pixel encoder (serl_launcher ``PreTrainedResNetEncoder`` on a
``resnetv1-10-frozen`` trunk) written in plain torch. The trunk is split from the trainable
head on purpose: with a frozen trunk its feature maps are computed once per image and shared
by the online and the target encoder (the frozen trunk is ~all of the compute).

Random-crop augmentation (DrQ, pad 4 with edge replication) lives here too; the learner's
agent applies it to obs and next_obs at every update, never the actor.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Optional

import safetensors
import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn

from robot_stack.config.schema import AgentConfig, EncoderConfig
from robot_stack.policy.weights import WeightsMismatchError, check_weights, cpu_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# HIL-SERL's ResNet-10 normalises with GroupNorm(4 groups, eps 1e-5) everywhere. Keeping
# 4 groups (not the usual 32) means its published ImageNet weights, converted to this
# layout, reproduce its features; GroupNorm rather than BatchNorm because RL batches are
# small, non-i.i.d. and change distribution as the policy does.
GROUP_NORM_GROUPS = 4
RESNET10_CHANNELS = (64, 128, 256, 512)
STATE_KEY = "state"
IMAGE_PREFIX = "images/"

Observation = Mapping[str, torch.Tensor]


# --------------------------------------------------------------------------- ResNet-10


def _same_padding(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """TF/flax "SAME" padding: total max((ceil(n/s)-1)*s + k - n, 0), the extra pixel at the
    end. The reference ResNet-10 is a flax model: for stride-2 layers on even sizes this puts
    the pad on the bottom/right only, where torch's symmetric padding would shift the grid."""

    def amount(size: int) -> tuple[int, int]:
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        return total // 2, total - total // 2

    top, bottom = amount(x.shape[-2])
    left, right = amount(x.shape[-1])
    return F.pad(x, (left, right, top, bottom), value=value)


class BasicBlock(nn.Module):
    """conv3x3(stride) -> GN -> ReLU -> conv3x3 -> GN, plus a projected shortcut when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1 if stride == 1 else 0, bias=False)
        self.norm1 = nn.GroupNorm(GROUP_NORM_GROUPS, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(GROUP_NORM_GROUPS, out_channels)
        self.projection_conv: Optional[nn.Conv2d] = None
        self.projection_norm: Optional[nn.GroupNorm] = None
        if stride != 1 or in_channels != out_channels:
            self.projection_conv = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)
            self.projection_norm = nn.GroupNorm(GROUP_NORM_GROUPS, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(x if self.stride == 1 else _same_padding(x, 3, self.stride))
        y = self.norm2(self.conv2(F.relu(self.norm1(y))))
        shortcut = x if self.projection_conv is None else self.projection_norm(self.projection_conv(x))
        return F.relu(shortcut + y)


class ResNet10(nn.Module):
    """ResNet-10 trunk: uint8 (B, H, W, 3) -> feature map (B, 512, ceil(H/32), ceil(W/32)).

    conv7x7/2 -> GN -> ReLU -> maxpool3x3/2, then one basic block per stage
    (64, 128, 256, 512 channels; strides 1, 2, 2, 2). No pooling: the spatial embedding
    that follows needs the map.
    """

    out_channels = RESNET10_CHANNELS[-1]

    def __init__(self):
        super().__init__()
        self.stem_conv = nn.Conv2d(3, RESNET10_CHANNELS[0], 7, 2, padding=3, bias=False)
        self.stem_norm = nn.GroupNorm(GROUP_NORM_GROUPS, RESNET10_CHANNELS[0])
        widths = (RESNET10_CHANNELS[0],) + RESNET10_CHANNELS
        self.stages = nn.ModuleList(
            BasicBlock(widths[i], widths[i + 1], stride=1 if i == 0 else 2) for i in range(len(RESNET10_CHANNELS))
        )
        # Not persistent: constants of the model, not weights to ship or load.
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")

    @staticmethod
    def feature_hw(image_hw: tuple[int, int]) -> tuple[int, int]:
        """Spatial size of the output map: every one of the 5 stride-2 layers rounds up."""
        h, w = image_hw
        for _ in range(5):
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        return h, w

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float().div_(255.0)
        x = (x - self.mean) / self.std
        x = F.relu(self.stem_norm(self.stem_conv(x)))
        x = F.max_pool2d(_same_padding(x, 3, 2, value=-math.inf), 3, 2)
        for stage in self.stages:
            x = stage(x)
        return x


def save_trunk_weights(trunk: ResNet10, path: str | Path) -> None:
    """Write a trunk's weights as a safetensors file (the format ``pretrained_path`` takes)."""
    safetensors.torch.save_file(cpu_weights(trunk), str(path))


def load_trunk_weights(trunk: ResNet10, path: str | Path) -> None:
    """Strictly load a safetensors file into ``trunk``; the error names the file and the keys."""
    path = Path(path)
    source = f"pretrained ResNet-10 weights {path} (agent.encoder.pretrained_path)"
    if not path.is_file():
        raise WeightsMismatchError(f"{source}: no such file")
    try:
        tensors = safetensors.torch.load_file(str(path))
    except (safetensors.SafetensorError, OSError) as error:
        raise WeightsMismatchError(f"{source}: not a readable safetensors file: {error}") from None
    check_weights(trunk.state_dict(), tensors, source)
    trunk.load_state_dict(tensors, strict=True)


# --------------------------------------------------------------------------- heads


class SpatialLearnedEmbeddings(nn.Module):
    """SERL's pooling: F learned (H, W) weightings of every channel's map, so the encoder keeps
    *where* things are (global average pooling would throw that away).

    out[b, c * F + f] = sum_{h, w} features[b, c, h, w] * kernel[h, w, c, f]
    """

    def __init__(self, height: int, width: int, channels: int, num_features: int):
        super().__init__()
        # LeCun-normal, as flax's default for this kernel: fan-in = H * W * C.
        self.kernel = nn.Parameter(torch.randn(height, width, channels, num_features) / math.sqrt(height * width * channels))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bchw,hwcf->bcf", features, self.kernel).flatten(1)


class ImageHead(nn.Module):
    """Trunk feature map -> spatial embeddings -> dropout -> dense -> LayerNorm -> tanh."""

    def __init__(self, feature_hw: tuple[int, int], config: EncoderConfig):
        super().__init__()
        channels = ResNet10.out_channels
        self.spatial_embedding = SpatialLearnedEmbeddings(*feature_hw, channels, config.spatial_embeddings)
        self.dropout = nn.Dropout(config.dropout)
        self.bottleneck = nn.Linear(channels * config.spatial_embeddings, config.bottleneck_dim)
        self.norm = nn.LayerNorm(config.bottleneck_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.norm(self.bottleneck(self.dropout(self.spatial_embedding(features)))))


class ImageEncoder(nn.Module):
    """One camera: uint8 (B, H, W, 3) -> (B, bottleneck_dim)."""

    def __init__(self, image_hw: tuple[int, int], config: EncoderConfig, mixed_precision: bool, load_pretrained: bool = True):
        super().__init__()
        self.trunk = ResNet10()
        if load_pretrained and config.pretrained_path is not None:
            load_trunk_weights(self.trunk, config.pretrained_path)
        self.frozen = config.frozen
        if self.frozen:
            self.trunk.requires_grad_(False)
        self.mixed_precision = mixed_precision
        self.head = ImageHead(ResNet10.feature_hw(image_hw), config)
        self.output_dim = config.bottleneck_dim

    def trunk_features(self, images: torch.Tensor) -> torch.Tensor:
        # bfloat16 on CUDA: the trunk is ~all of the FLOPs and GroupNorm is robust to it;
        # the head and the critics stay float32. A frozen trunk never builds a graph.
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.mixed_precision and images.is_cuda)
        with autocast, torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            return self.trunk(images).float()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk_features(images))

    def train(self, mode: bool = True) -> "ImageEncoder":
        super().train(mode)
        if self.frozen:
            self.trunk.eval()  # a frozen trunk is a fixed function, in training too
        return self


class StateEncoder(nn.Module):
    """Proprioception: dense -> LayerNorm -> tanh, or the raw vector when embedding_dim is 0."""

    def __init__(self, state_dim: int, embedding_dim: int):
        super().__init__()
        self.embed = embedding_dim > 0
        self.output_dim = embedding_dim if self.embed else state_dim
        if self.embed:
            self.linear = nn.Linear(state_dim, embedding_dim)
            self.norm = nn.LayerNorm(embedding_dim)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.norm(self.linear(state))) if self.embed else state


# --------------------------------------------------------------------------- observation


class ObservationEncoder(nn.Module):
    """All of an observation: one ImageEncoder per "images/<camera>" key, the StateEncoder
    for "state"; output the concatenation (cameras in name order, then state).

    Two halves so a frozen trunk runs once per image: ``trunk_features`` (images -> trunk
    maps; state passes through) and ``embed`` (everything that learns).
    ``forward(obs) == embed(trunk_features(obs))``. A state-only spec has no trunk at all.
    """

    def __init__(self, agent: AgentConfig, observation_spec: Mapping, load_pretrained: bool = True):
        super().__init__()
        unknown = [key for key in observation_spec if key != STATE_KEY and not key.startswith(IMAGE_PREFIX)]
        if unknown:
            raise ValueError(f"observation spec has keys {unknown}; expected 'state' and 'images/<camera>'")
        self.cameras = nn.ModuleDict()
        for key in sorted(k for k in observation_spec if k.startswith(IMAGE_PREFIX)):
            shape = tuple(observation_spec[key].shape)
            if len(shape) != 3 or shape[2] != 3:
                raise ValueError(f"observation '{key}' has shape {shape}; an image must be (H, W, 3) uint8")
            self.cameras[key[len(IMAGE_PREFIX) :]] = ImageEncoder(
                shape[:2], agent.encoder, agent.mixed_precision, load_pretrained
            )
        self.state: Optional[StateEncoder] = None
        if STATE_KEY in observation_spec:
            (state_dim,) = observation_spec[STATE_KEY].shape
            self.state = StateEncoder(state_dim, agent.encoder.state_embedding_dim)
        if not self.cameras and self.state is None:
            raise ValueError("observation spec is empty: nothing to encode")
        self.output_dim = sum(c.output_dim for c in self.cameras.values()) + (self.state.output_dim if self.state else 0)
        # True when some trunk learns: then online and target trunks differ and cannot share maps.
        self.trunk_trainable = any(not c.frozen for c in self.cameras.values())

    def trunk_features(self, observations: Observation) -> dict[str, torch.Tensor]:
        features = {IMAGE_PREFIX + name: camera.trunk_features(observations[IMAGE_PREFIX + name]) for name, camera in self.cameras.items()}
        if self.state is not None:
            features[STATE_KEY] = observations[STATE_KEY]
        return features

    def embed(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        parts = [camera.head(features[IMAGE_PREFIX + name]) for name, camera in self.cameras.items()]
        if self.state is not None:
            parts.append(self.state(features[STATE_KEY]))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def forward(self, observations: Observation) -> torch.Tensor:
        return self.embed(self.trunk_features(observations))


# --------------------------------------------------------------------------- augmentation


def random_crop(images: torch.Tensor, pad: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """DrQ's augmentation on a batch (B, H, W, C), any dtype: pad every side by ``pad`` pixels
    replicating the edge, crop back to (H, W) at a random offset drawn per sample.

    Done as one gather: the crop at offset o of the edge-padded image reads source row
    clamp(r + o - pad, 0, H - 1), so the padded image is never built. ``generator`` (if
    given) must live on the images' device.
    """
    if pad == 0:
        return images
    batch, height, width = images.shape[:3]
    device = images.device
    shifts = torch.randint(0, 2 * pad + 1, (2, batch, 1), generator=generator, device=device) - pad
    rows = (torch.arange(height, device=device) + shifts[0]).clamp_(0, height - 1)  # (B, H)
    cols = (torch.arange(width, device=device) + shifts[1]).clamp_(0, width - 1)  # (B, W)
    samples = torch.arange(batch, device=device)[:, None, None]
    return images[samples, rows[:, :, None], cols[:, None, :]]


def random_crop_observation(observations: Observation, pad: int, generator: Optional[torch.Generator] = None) -> dict[str, torch.Tensor]:
    """Every image of an observation batch cropped independently; the state untouched."""
    return {
        key: random_crop(value, pad, generator) if key.startswith(IMAGE_PREFIX) else value
        for key, value in observations.items()
    }
