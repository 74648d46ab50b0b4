"""Observation encoders: what turns a flat observation into the feature vector the actor and
the critics read.

    image (uint8 HxWx3) -> ImageNet normalisation -> ResNet-10 trunk (GroupNorm, frozen by default)
        [-> projection: a fixed 1x1 map of the 512 channels to fewer, when configured]
        -> spatial learned embeddings -> dropout -> dense -> LayerNorm -> tanh      (one per camera)
    state (float S)     -> dense -> LayerNorm -> tanh                              (or raw)
    features = concat(cameras in name order, state)

This is HIL-SERL's pixel encoder (serl_launcher ``PreTrainedResNetEncoder`` on a
``resnetv1-10-frozen`` trunk) written in plain torch. The trunk is split from the trainable
head on purpose: with a frozen trunk its feature maps ("trunk features": trunk, then the
projection) are a fixed function of the image, so the learner computes them once per stored
frame and trains only the head (``learner/features.py``).

The projection is this project's addition, for CPUs: the head's cost grows with the channels it
reads (spatial embeddings are a per-channel contraction, the dense layer reads channels x
embeddings inputs), and at 512 channels the head alone held a CPU learner to about 15 steps/s
at batch 256 with two cameras. ``robot-stack encoder pretrain`` fits it as the principal
components of the trunk's channels over the lab's own frames and stores it beside the trunk.

Augmentation: random crop (DrQ, pad 4 with edge replication) of the images for an encoder
that runs its trunk at every update; for cached features, crops made when the frame is stored
(several per frame) or a random sub-cell shift of the feature map (``random_feature_shift``).
Only the learner augments, never the actor.
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
from robot_stack.data.files import write_atomic
from robot_stack.data.spec import IMAGE_PREFIX, STATE_KEY
from robot_stack.policy.layers import Dropout, compute_autocast, tanh
from robot_stack.policy.weights_io import WeightsMismatchError, check_weights, cpu_weights

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# HIL-SERL's ResNet-10 normalises with GroupNorm(4 groups, eps 1e-5) everywhere. Keeping
# 4 groups (not the usual 32) means its published ImageNet weights, converted to this
# layout, reproduce its features; GroupNorm rather than BatchNorm because RL batches are
# small, non-i.i.d. and change distribution as the policy does.
GROUP_NORM_GROUPS = 4
RESNET10_CHANNELS = (64, 128, 256, 512)
RESNET10_STRIDE = 32  # pixels per cell of the output map (five stride-2 layers)
PROJECTION_PREFIX = "projection."

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


def save_trunk_weights(trunk: ResNet10, path: str | Path, projection: Optional[nn.Conv2d] = None,
                       metadata: Optional[Mapping[str, str]] = None) -> None:
    """Write a trunk's weights (and a projection's, as ``projection.weight``/``projection.bias``)
    as a safetensors file, atomically: the format ``agent.encoder.pretrained_path`` takes."""
    tensors = cpu_weights(trunk)
    if projection is not None:
        tensors.update({PROJECTION_PREFIX + name: tensor for name, tensor in cpu_weights(projection).items()})
    blob = safetensors.torch.save(tensors, metadata=dict(metadata) if metadata else None)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(Path(path), lambda temporary: temporary.write_bytes(blob))


def read_encoder_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of an encoder weights file (safetensors), or WeightsMismatchError naming the file."""
    path = Path(path)
    source = f"pretrained ResNet-10 weights {path} (agent.encoder.pretrained_path)"
    if not path.is_file():
        raise WeightsMismatchError(
            f"{source}: no such file; make it from your demo frames with `robot-stack encoder pretrain TASK --frames DEMOS`, "
            "or from published ImageNet weights with `robot-stack encoder convert`"
        )
    try:
        return safetensors.torch.load_file(str(path))
    except (safetensors.SafetensorError, OSError) as error:
        raise WeightsMismatchError(f"{source}: not a readable safetensors file: {error}") from None


def load_trunk_weights(trunk: ResNet10, path: str | Path, projection: Optional[nn.Conv2d] = None) -> None:
    """Strictly load an encoder weights file into ``trunk`` (and ``projection``, which the file
    must then carry with the same number of channels); the error names the file, the keys and
    what to do."""
    tensors = read_encoder_weights(path)
    source = f"pretrained ResNet-10 weights {path} (agent.encoder.pretrained_path)"
    projection_tensors = {k[len(PROJECTION_PREFIX) :]: v for k, v in tensors.items() if k.startswith(PROJECTION_PREFIX)}
    trunk_tensors = {k: v for k, v in tensors.items() if not k.startswith(PROJECTION_PREFIX)}
    check_weights(trunk.state_dict(), trunk_tensors, source)
    if projection is not None:
        if not projection_tensors:
            raise WeightsMismatchError(
                f"{source}: the file has no projection, and agent.encoder.projection_channels is "
                f"{projection.out_channels}; add one fitted to your frames with `robot-stack encoder pretrain "
                f"TASK --init {path} --steps 0`, or set projection_channels: null"
            )
        check_weights(projection.state_dict(), projection_tensors, f"{source}, projection")
        projection.load_state_dict(projection_tensors, strict=True)
    elif projection_tensors:
        channels = projection_tensors.get("weight", torch.empty(0)).shape[:1]
        raise WeightsMismatchError(
            f"{source}: the file carries a projection to {list(channels)} channels, and "
            "agent.encoder.projection_channels is null; set it to that number to use the projection"
        )
    trunk.load_state_dict(trunk_tensors, strict=True)


def orthogonal_projection(in_channels: int, out_channels: int) -> nn.Conv2d:
    """A 1x1 map to fewer channels with orthonormal rows (distances between feature vectors
    roughly kept): the projection of an encoder no weights file gave one."""
    projection = nn.Conv2d(in_channels, out_channels, 1)
    with torch.no_grad():
        nn.init.orthogonal_(projection.weight.view(out_channels, in_channels))
        projection.bias.zero_()
    return projection


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
    """Trunk feature map -> pooling -> dropout -> dense -> LayerNorm -> tanh.

    Pooling: HIL-SERL's spatial learned embeddings, or the map flattened as it is (DrQ-v2's
    head), for a map with few channels: a spatial embedding is a contraction per channel,
    which CPUs run as many tiny matmuls (~0.6 ms forward and backward for 64 channels at batch
    256, measured here), where one dense layer over the flattened 64 x 4 x 4 map is one
    matmul. Both keep where things are in the image."""

    def __init__(self, feature_hw: tuple[int, int], config: EncoderConfig):
        super().__init__()
        channels = config.projection_channels or ResNet10.out_channels
        if config.pooling == "spatial_learned_embeddings":
            self.spatial_embedding = SpatialLearnedEmbeddings(*feature_hw, channels, config.spatial_embeddings)
            pooled = channels * config.spatial_embeddings
        else:
            self.spatial_embedding = nn.Flatten()
            pooled = channels * feature_hw[0] * feature_hw[1]
        self.dropout = Dropout(config.dropout)
        self.bottleneck = nn.Linear(pooled, config.bottleneck_dim)
        self.norm = nn.LayerNorm(config.bottleneck_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return tanh(self.norm(self.bottleneck(self.dropout(self.spatial_embedding(features)))))


class ImageEncoder(nn.Module):
    """One camera: uint8 (B, H, W, 3) -> (B, bottleneck_dim).

    ``trunk_features`` (trunk, then the projection if any) is the part a frozen encoder fixes;
    ``head`` is what learns."""

    def __init__(self, image_hw: tuple[int, int], config: EncoderConfig, mixed_precision: bool, load_pretrained: bool = True):
        super().__init__()
        self.trunk = ResNet10()
        self.projection: Optional[nn.Conv2d] = None
        if config.projection_channels is not None:
            self.projection = orthogonal_projection(ResNet10.out_channels, config.projection_channels)
        if load_pretrained and config.pretrained_path is not None:
            load_trunk_weights(self.trunk, config.pretrained_path, self.projection)
        if self.projection is not None:
            self.projection.requires_grad_(False)  # a fixed map, also under a trainable trunk
        self.frozen = config.frozen
        if self.frozen:
            self.trunk.requires_grad_(False)
        self.mixed_precision = mixed_precision
        self.feature_shape = (config.projection_channels or ResNet10.out_channels, *ResNet10.feature_hw(image_hw))
        self.head = ImageHead(ResNet10.feature_hw(image_hw), config)
        self.output_dim = config.bottleneck_dim

    def trunk_features(self, images: torch.Tensor) -> torch.Tensor:
        # bfloat16 where the hardware has it: the trunk is ~all of the FLOPs and GroupNorm is
        # robust to it; the head and the critics decide their own precision. A frozen trunk
        # never builds a graph.
        with compute_autocast(images.device, self.mixed_precision), torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            maps = self.trunk(images)
            if self.projection is not None:
                maps = self.projection(maps)
            return maps.float()

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
        return tanh(self.norm(self.linear(state))) if self.embed else state


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
        # The learner's replay then holds trunk features, not images (learner/features.py).
        self.cache_features = bool(self.cameras) and not self.trunk_trainable and agent.encoder.cache_features

    def feature_spec(self) -> dict[str, tuple[int, ...]]:
        """Shape of one frame's trunk features per "images/<camera>" key."""
        return {IMAGE_PREFIX + name: camera.feature_shape for name, camera in self.cameras.items()}

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


def crop_shifted(images: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Images (B, H, W, C) shifted by ``shifts`` (2, B) pixels (rows, columns) with the edge
    replicated: the crop at offset shift + pad of the edge-padded image.

    Done as one gather: that crop reads source row clamp(r + shift, 0, H - 1), so the padded
    image is never built."""
    batch, height, width = images.shape[:3]
    device = images.device
    rows = (torch.arange(height, device=device) + shifts[0][:, None]).clamp_(0, height - 1)  # (B, H)
    cols = (torch.arange(width, device=device) + shifts[1][:, None]).clamp_(0, width - 1)  # (B, W)
    samples = torch.arange(batch, device=device)[:, None, None]
    return images[samples, rows[:, :, None], cols[:, None, :]]


def random_shifts(batch: int, pad: int, generator: Optional[torch.Generator] = None, device=None) -> torch.Tensor:
    """(2, B) integer shifts drawn uniformly from [-pad, pad]: DrQ's crop offsets."""
    return torch.randint(0, 2 * pad + 1, (2, batch), generator=generator, device=device) - pad


def random_crop(images: torch.Tensor, pad: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """DrQ's augmentation on a batch (B, H, W, C), any dtype: pad every side by ``pad`` pixels
    replicating the edge, crop back to (H, W) at a random offset drawn per sample.
    ``generator`` (if given) must live on the images' device."""
    if pad == 0:
        return images
    return crop_shifted(images, random_shifts(images.shape[0], pad, generator, images.device))


def augment_images(images: torch.Tensor, pad: int, brightness: float, contrast: float, generator: torch.Generator) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, H, W, 3) in [0, 255]: random shift (edge-replicated
    pad, then crop), brightness and contrast scaled by a factor in [1 - x, 1 + x] per image.
    What the reward classifier and encoder pretraining train on."""
    x = random_crop(images, pad, generator).float()
    batch = x.shape[0]
    if brightness > 0:
        x = x * (1.0 + (torch.rand(batch, 1, 1, 1, generator=generator) * 2 - 1) * brightness)
    if contrast > 0:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * (1.0 + (torch.rand(batch, 1, 1, 1, generator=generator) * 2 - 1) * contrast) + mean
    return x.clamp_(0.0, 255.0)


def random_crop_observation(observations: Observation, pad: int, generator: Optional[torch.Generator] = None) -> dict[str, torch.Tensor]:
    """Every image of an observation batch cropped independently; the state untouched."""
    return {
        key: random_crop(value, pad, generator) if key.startswith(IMAGE_PREFIX) else value
        for key, value in observations.items()
    }


def _shift_matrices(shifts: torch.Tensor, size: int) -> torch.Tensor:
    """(B,) shifts of less than one cell -> (B, size, size) matrices that sample a row of
    ``size`` cells at i + shift, bilinearly, the border cell replicated."""
    eye = torch.eye(size, device=shifts.device)
    forward = torch.diag(torch.ones(size - 1, device=shifts.device), 1)
    forward[-1, -1] = 1.0  # reads past the last cell read the last cell
    backward = torch.diag(torch.ones(size - 1, device=shifts.device), -1)
    backward[0, 0] = 1.0
    weight = shifts.abs()[:, None, None]
    neighbour = torch.where(shifts[:, None, None] > 0, forward, backward)
    return (1.0 - weight) * eye + weight * neighbour


def random_feature_shift(maps: torch.Tensor, max_shift_cells: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Feature maps (B, C, h, w) translated by a random sub-cell amount per sample, uniform in
    [-max_shift_cells, max_shift_cells] on each axis (at most one cell), bilinear, the border
    replicated.

    The cached-feature counterpart of the random crop: a crop of +-4 pixels moves the image by
    +-4/32 of a ResNet-10 cell, so ``max_shift_cells`` = pad / 32 moves the map as far (the
    features themselves are not those of the shifted image: the trunk is not shift-equivariant
    below its stride). Done as one batched (h*w x h*w) interpolation matrix per sample, ~3x
    cheaper than grid_sample on 4x4 maps."""
    if max_shift_cells <= 0:
        return maps
    if max_shift_cells > 1:
        raise ValueError(f"a feature shift of {max_shift_cells} cells is more than one cell")
    batch, channels, height, width = maps.shape
    shifts = (torch.rand(batch, 2, generator=generator, device=maps.device) * 2 - 1) * max_shift_cells
    rows, cols = _shift_matrices(shifts[:, 0], height), _shift_matrices(shifts[:, 1], width)
    # out[b, c, i, j] = sum_{k, l} rows[b, i, k] cols[b, j, l] maps[b, c, k, l]
    both = (rows[:, :, None, :, None] * cols[:, None, :, None, :]).reshape(batch, height * width, height * width)
    return torch.bmm(maps.float().reshape(batch, channels, height * width), both.transpose(1, 2)).view(maps.shape)
