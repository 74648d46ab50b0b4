"""The generalist policy: one network for every task variant, told which by an instruction.

Built in (``generalist.kind: builtin``): a transformer encoder over

    [instruction word tokens] [state token] [image patch tokens per camera] [chunk query tokens]

whose query tokens read out the next ``chunk`` actions (action chunking, as ACT). Words are
hashed into ``text_buckets`` learned embeddings (no tokenizer or text model to download); the
state is normalised with the training data's mean and std; each camera goes through a small
convolutional stem whose 8x8-downsampled feature map becomes tokens with learned 2-D position
and camera embeddings. Training minimises the L1 error of the chunk, with steps past an
episode's end masked out. At run time the chunks are executed with temporal ensembling (every
chunk that predicted this step votes, weighted exp(-decay * age)) or receding horizon.

Plug-in seam: ``generalist.kind: "package.module:factory"`` names a module whose ``factory``
builds a ``Generalist`` (below) from the config and the dataset's ``PolicyFeatures``; the module
must also have ``load(directory) -> Generalist``. ``finetune`` calls ``fit`` and ``save``,
``eval`` calls ``load``, ``reset`` and ``act``. A LeRobot policy (ACT, diffusion, pi0, ...)
plugs in this way on a machine where LeRobot is installed: the datasets ``collect`` writes are
LeRobotDataset v3, which its own training reads directly.

Checkpoints are ``model.safetensors`` and ``generalist.json`` (kind, config, features,
normalisation, training summary), written last; nothing is pickled.
"""

from __future__ import annotations

import importlib
import json
import math
import re
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Protocol, Sequence

import numpy as np
import torch
from torch import nn

from robot_stack.config.rldg import GeneralistConfig
from robot_stack.data.files import write_atomic, write_json_atomic

CHECKPOINT_FILE = "generalist.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class PolicyFeatures:
    """What the generalist sees and does, from the dataset's features."""

    state_names: tuple[str, ...]
    action_names: tuple[str, ...]
    cameras: tuple[str, ...]
    fps: float

    @property
    def state_dim(self) -> int:
        return len(self.state_names)

    @property
    def action_dim(self) -> int:
        return len(self.action_names)


@dataclass
class TrainingSample:
    """Every frame of the training data, in memory (episodes concatenated)."""

    state: np.ndarray  # (N, S) float32
    action: np.ndarray  # (N, A) float32
    episode_start: np.ndarray  # (N,) int64: index of the frame's episode's first frame
    episode_end: np.ndarray  # (N,) int64: one past its last frame
    instruction: list[str]  # (N,)
    images: dict[str, np.ndarray]  # camera -> (N, H, W, 3) uint8


class Generalist(Protocol):
    features: PolicyFeatures

    def fit(self, data: TrainingSample, out_dir: Path, progress: bool = True) -> dict[str, Any]: ...

    def save(self, directory: Path, summary: Mapping[str, Any]) -> None: ...

    def reset(self) -> None: ...

    def act(self, observation: Mapping[str, Any], instruction: str) -> np.ndarray: ...


# --------------------------------------------------------------------------- text


def instruction_words(text: str, limit: int) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())[:limit]


def hash_words(text: str, buckets: int, limit: int) -> np.ndarray:
    """Word ids in [1, buckets) (0 pads), stable across machines and runs (CRC-32)."""
    ids = np.zeros(limit, np.int64)
    for i, word in enumerate(instruction_words(text, limit)):
        ids[i] = 1 + zlib.crc32(word.encode()) % (buckets - 1)
    return ids


# --------------------------------------------------------------------------- network


class ImageStem(nn.Module):
    """uint8 HxWx3 -> (B, (H/8)*(W/8), d) tokens."""

    def __init__(self, d_model: int, image_size: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 32, 5, stride=2, padding=2), nn.GroupNorm(8, 32), nn.GELU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.GroupNorm(8, 64), nn.GELU(),
            nn.Conv2d(64, d_model, 3, stride=2, padding=1),
        )
        side = math.ceil(image_size / 8)
        self.position = nn.Parameter(torch.randn(side * side, d_model) * 0.02)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        x = self.net(x).flatten(2).transpose(1, 2)
        return x + self.position


class ChunkTransformer(nn.Module):
    def __init__(self, config: GeneralistConfig, features: PolicyFeatures):
        super().__init__()
        d = config.d_model
        self.config, self.features = config, features
        self.words = nn.Embedding(config.text_buckets, d, padding_idx=0)
        self.word_position = nn.Parameter(torch.randn(config.max_instruction_words, d) * 0.02)
        self.state = nn.Linear(features.state_dim, d)
        self.cameras = nn.ModuleDict({name: ImageStem(d, config.image_size) for name in features.cameras})
        self.camera_embedding = nn.Parameter(torch.randn(max(1, len(features.cameras)), d) * 0.02)
        self.kind = nn.Parameter(torch.randn(3, d) * 0.02)  # word, state, query
        self.queries = nn.Parameter(torch.randn(config.chunk, d) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d, config.heads, config.feedforward, config.dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, features.action_dim)

    def forward(self, words: torch.Tensor, state: torch.Tensor, images: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """words (B, W) int64, state (B, S) normalised, images camera -> (B, H, W, 3) uint8;
        returns the action chunk (B, chunk, A)."""
        batch = state.shape[0]
        tokens = [self.words(words) + self.word_position + self.kind[0], (self.state(state) + self.kind[1])[:, None]]
        for i, name in enumerate(self.features.cameras):
            tokens.append(self.cameras[name](images[name]) + self.camera_embedding[i])
        tokens.append((self.queries + self.kind[2]).expand(batch, -1, -1))
        x = torch.cat(tokens, dim=1)
        pad = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device)
        pad[:, : words.shape[1]] = words == 0
        x = self.encoder(x, src_key_padding_mask=pad)
        return self.head(self.norm(x[:, -self.config.chunk :]))


# --------------------------------------------------------------------------- chunk execution


class ChunkExecutor:
    """Turns the chunk predicted at every step into the action executed now."""

    def __init__(self, config: GeneralistConfig):
        self.config = config
        self.reset()

    def reset(self) -> None:
        self.step = 0
        self.chunks: list[tuple[int, np.ndarray]] = []  # (step predicted at, chunk)

    def needs_prediction(self) -> bool:
        if self.config.execution == "ensemble":
            return True
        return not self.chunks or self.step - self.chunks[-1][0] >= self.config.execute_steps

    def add(self, chunk: np.ndarray) -> None:
        self.chunks.append((self.step, chunk))
        horizon = self.config.chunk
        self.chunks = [(start, c) for start, c in self.chunks if self.step - start < horizon]

    def next_action(self) -> np.ndarray:
        if self.config.execution == "receding":
            start, chunk = self.chunks[-1]
            action = chunk[self.step - start]
        else:
            ages = np.array([self.step - start for start, _ in self.chunks], np.float64)
            votes = np.stack([chunk[self.step - start] for start, chunk in self.chunks])
            # The oldest prediction weighs most, as ACT's temporal ensemble.
            weights = np.exp(-self.config.ensemble_decay * (ages.max() - ages))
            action = (weights[:, None] * votes).sum(0) / weights.sum()
        self.step += 1
        return np.clip(action, -1.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------- the built-in generalist


class BuiltinGeneralist:
    kind = "builtin"

    def __init__(self, config: GeneralistConfig, features: PolicyFeatures,
                 state_mean: Optional[np.ndarray] = None, state_std: Optional[np.ndarray] = None):
        self.config, self.features = config, features
        torch.manual_seed(config.seed)
        self.network = ChunkTransformer(config, features)
        self.state_mean = np.zeros(features.state_dim, np.float32) if state_mean is None else np.asarray(state_mean, np.float32)
        self.state_std = np.ones(features.state_dim, np.float32) if state_std is None else np.asarray(state_std, np.float32)
        self.executor = ChunkExecutor(config)
        self._words_cache: dict[str, torch.Tensor] = {}

    # ---- training

    def fit(self, data: TrainingSample, out_dir: Path, progress: bool = True) -> dict[str, Any]:
        from tqdm import tqdm

        c = self.config
        torch.set_num_threads(c.torch_threads)
        if c.init is None:
            # Normalisation from this data; an initialised network keeps the statistics it was trained with.
            self.state_mean = data.state.mean(0).astype(np.float32)
            self.state_std = np.maximum(data.state.std(0), 1e-3).astype(np.float32)
        frames = data.state.shape[0]
        state = torch.from_numpy((data.state - self.state_mean) / self.state_std)
        actions = torch.from_numpy(data.action.astype(np.float32))
        offsets = torch.arange(c.chunk)
        targets_index = torch.from_numpy(np.arange(frames))[:, None] + offsets  # (N, chunk)
        valid = targets_index < torch.from_numpy(data.episode_end)[:, None]
        targets_index = torch.minimum(targets_index, torch.from_numpy(data.episode_end - 1)[:, None])
        words = torch.from_numpy(np.stack([self._hashed(text) for text in data.instruction]))
        images = {name: torch.from_numpy(_resize_batch(data.images[name], c.image_size)) for name in self.features.cameras}

        generator = torch.Generator().manual_seed(c.seed)
        optimiser = torch.optim.AdamW(self.network.parameters(), lr=c.learning_rate, weight_decay=c.weight_decay)

        def rate(step: int) -> float:
            if step < c.warmup_steps:
                return (step + 1) / c.warmup_steps
            progress_ = (step - c.warmup_steps) / max(1, c.steps - c.warmup_steps)
            return 0.5 * (1.0 + math.cos(math.pi * progress_))

        schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, rate)
        self.network.train()
        losses: list[float] = []
        bar = tqdm(range(c.steps), desc="finetune", unit="step", disable=not progress, dynamic_ncols=True)
        for step in bar:
            batch = torch.randint(0, frames, (min(c.batch_size, frames),), generator=generator)
            predicted = self.network(words[batch], state[batch], {name: images[name][batch] for name in images})
            target = actions[targets_index[batch]]
            mask = valid[batch].unsqueeze(-1).float()
            loss = (torch.abs(predicted - target) * mask).sum() / (mask.sum() * self.features.action_dim)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.network.parameters(), 1.0)
            optimiser.step()
            schedule.step()
            losses.append(float(loss.detach()))
            if step % 25 == 0 or step == c.steps - 1:
                bar.set_postfix(loss=f"{np.mean(losses[-25:]):.4f}")
        bar.close()
        self.network.eval()
        return {"steps": c.steps, "frames": frames, "final_loss": float(np.mean(losses[-50:])), "losses": losses}

    def _hashed(self, text: str) -> np.ndarray:
        return hash_words(text, self.config.text_buckets, self.config.max_instruction_words)

    # ---- running

    def reset(self) -> None:
        self.executor.reset()

    def act(self, observation: Mapping[str, Any], instruction: str) -> np.ndarray:
        if self.executor.needs_prediction():
            self.executor.add(self.predict_chunk(observation, instruction))
        return self.executor.next_action()

    def predict_chunk(self, observation: Mapping[str, Any], instruction: str) -> np.ndarray:
        state = np.asarray(observation["state"], np.float32)
        if state.shape != (self.features.state_dim,):
            raise ValueError(f"observation state has shape {state.shape}; the generalist was trained on {self.features.state_dim} values")
        images = {}
        for name in self.features.cameras:
            frame = observation.get("images", {}).get(name)
            if frame is None:
                raise KeyError(f"the generalist needs camera '{name}'; the observation has {sorted(observation.get('images', {}))}")
            images[name] = torch.from_numpy(_resize_batch(np.asarray(frame)[None], self.config.image_size))
        words = self._words_cache.get(instruction)
        if words is None:
            words = self._words_cache[instruction] = torch.from_numpy(self._hashed(instruction))[None]
        with torch.inference_mode():
            normalised = torch.from_numpy((state - self.state_mean) / self.state_std)[None]
            return self.network(words, normalised, images)[0].numpy()

    # ---- files

    def save(self, directory: Path, summary: Mapping[str, Any]) -> None:
        import safetensors.torch

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CHECKPOINT_FILE).unlink(missing_ok=True)
        tensors = {key: value.detach().contiguous() for key, value in self.network.state_dict().items()}
        write_atomic(directory / WEIGHTS_FILE, lambda path: safetensors.torch.save_file(tensors, str(path)))
        write_json_atomic(directory / CHECKPOINT_FILE, {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "config": json.loads(self.config.model_dump_json()),
            "features": asdict(self.features),
            "state_mean": self.state_mean.tolist(),
            "state_std": self.state_std.tolist(),
            "training": dict(summary),
        })

    @classmethod
    def load(cls, directory: Path, config: Optional[GeneralistConfig] = None) -> "BuiltinGeneralist":
        """A saved generalist; ``config`` (same architecture) replaces the saved run-time and
        training settings, as ``finetune --init`` and ``eval`` with another execution mode do."""
        import safetensors.torch

        meta = read_checkpoint(directory)
        saved = GeneralistConfig.model_validate(meta["config"])
        features = PolicyFeatures(**{key: tuple(value) if isinstance(value, list) else value for key, value in meta["features"].items()})
        if config is not None:
            _check_same_architecture(saved, config, directory)
        model = cls(config or saved, features, np.asarray(meta["state_mean"]), np.asarray(meta["state_std"]))
        tensors = safetensors.torch.load_file(str(Path(directory) / WEIGHTS_FILE))
        missing, unexpected = model.network.load_state_dict(tensors, strict=False)
        if missing or unexpected:
            raise ValueError(f"{directory}: weights do not fit the network (missing {missing[:5]}, unexpected {unexpected[:5]})")
        model.network.eval()
        return model


_ARCHITECTURE_FIELDS = ("cameras", "image_size", "d_model", "layers", "heads", "feedforward", "chunk", "text_buckets", "max_instruction_words")


def _check_same_architecture(saved: GeneralistConfig, wanted: GeneralistConfig, directory: Path) -> None:
    different = [f"{name}: {getattr(saved, name)!r} saved, {getattr(wanted, name)!r} asked for"
                 for name in _ARCHITECTURE_FIELDS if getattr(saved, name) != getattr(wanted, name)]
    if different:
        raise ValueError(f"{directory}: the saved generalist has another architecture ({'; '.join(different)})")


def _resize_batch(images: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, size, size, 3) uint8, nearest-neighbour (cheap, deterministic)."""
    n, height, width, _ = images.shape
    if (height, width) == (size, size):
        return np.ascontiguousarray(images)
    rows = (np.arange(size) * height // size).astype(np.int64)
    cols = (np.arange(size) * width // size).astype(np.int64)
    return np.ascontiguousarray(images[:, rows][:, :, cols])


# --------------------------------------------------------------------------- kinds


def read_checkpoint(directory: Path) -> dict[str, Any]:
    from robot_stack.data.files import read_json_object

    path = Path(directory) / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory} holds no generalist ({CHECKPOINT_FILE} is missing: not trained, or its training was cut off)")
    meta = read_json_object(path, ValueError, "it is not a generalist checkpoint")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format version {meta.get('format_version')!r}, this version reads {FORMAT_VERSION}")
    return meta


def _plugin(kind: str):
    from robot_stack.config.code_references import load_code_reference

    if ":" not in kind:
        raise ValueError(f"generalist kind {kind!r}: expected 'builtin' or 'package.module:factory'")
    factory = load_code_reference(kind, "generalist kind")
    module = importlib.import_module(kind.partition(":")[0])  # imported already by the reference
    if not callable(factory) or not callable(getattr(module, "load", None)):
        raise ValueError(f"generalist kind {kind!r}: {module.__name__} must define {kind.partition(':')[2]}(config, features) "
                         "and load(directory)")
    return module, factory


def build_generalist(config: GeneralistConfig, features: PolicyFeatures) -> Generalist:
    if config.init is not None:
        return load_generalist(config.init, config)
    if config.kind == "builtin":
        return BuiltinGeneralist(config, features)
    _, factory = _plugin(config.kind)
    return factory(config, features)


def load_generalist(directory: Path, config: Optional[GeneralistConfig] = None) -> Generalist:
    meta = read_checkpoint(directory)
    kind = meta.get("kind", "builtin")
    if kind == "builtin":
        return BuiltinGeneralist.load(directory, config)
    module, _ = _plugin(kind)
    return module.load(Path(directory))


def features_from_names(state_names: Sequence[str], action_names: Sequence[str], cameras: Sequence[str], fps: float) -> PolicyFeatures:
    return PolicyFeatures(tuple(state_names), tuple(action_names), tuple(cameras), float(fps))
