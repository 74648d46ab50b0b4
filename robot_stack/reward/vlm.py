"""A vision-language success model: a CLIP- or SigLIP-family model scoring camera images
against success and failure prompts, optionally with a few-shot head on its image embeddings.

The model is loaded with ``transformers`` from a local directory (nothing is downloaded,
only safetensors weights are read). Images are preprocessed here in plain torch, from the
directory's image-processor config. A saved VLM reward model holds ``reward_model.json``
(pointing at the model directory, not copying it) and, with a few-shot head,
``model.safetensors`` holding only the head.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from robot_stack.reward.base import (
    MODEL_FILE,
    WEIGHTS_FILE,
    RewardModelError,
    check_images,
    read_model_json,
    write_model_json,
)

# CLIP's image normalisation, used when the model directory has no image-processor config.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
REDUCTIONS = ("mean", "min", "max")
EMBED_BATCH = 64
# PIL resample codes in image-processor configs.
_PIL_BICUBIC, _PIL_BILINEAR, _PIL_NEAREST = 3, 2, 0


@dataclass(frozen=True)
class ImageTransform:
    """uint8 (B, H, W, 3) -> normalised float (B, 3, S, S) for the vision tower."""

    shortest_edge: int | None  # resize the short side to this (aspect kept) ...
    resize_hw: tuple[int, int] | None  # ... or resize to exactly this
    crop_hw: tuple[int, int] | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    rescale: float
    mode: str

    def __call__(self, images: np.ndarray, device: torch.device) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float()
        h, w = x.shape[-2:]
        if self.shortest_edge is not None:
            short, long = (h, w) if h <= w else (w, h)
            new_short, new_long = self.shortest_edge, int(self.shortest_edge * long / short)
            size = (new_short, new_long) if h <= w else (new_long, new_short)
        else:
            size = self.resize_hw
        if self.crop_hw is not None and (size[0] < self.crop_hw[0] or size[1] < self.crop_hw[1]):
            size = self.crop_hw
        if tuple(size) != (h, w):
            antialias = self.mode in ("bilinear", "bicubic")
            x = F.interpolate(x, size=tuple(size), mode=self.mode, antialias=antialias,
                              **({} if self.mode == "nearest" else {"align_corners": False}))
            x = x.clamp(0.0, 255.0)
        if self.crop_hw is not None:
            ch, cw = self.crop_hw
            top, left = int((size[0] - ch) / 2), int((size[1] - cw) / 2)
            x = x[..., top:top + ch, left:left + cw]
        x = x * self.rescale
        mean = torch.tensor(self.mean, device=device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=device).view(1, 3, 1, 1)
        return (x - mean) / std

    @property
    def output_hw(self) -> tuple[int, int] | None:
        return self.crop_hw or self.resize_hw


def _hw(value: Any, where: str) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, Mapping) and "height" in value and "width" in value:
        return (int(value["height"]), int(value["width"]))
    raise RewardModelError(f"{where}: cannot read an image size from {value!r}")


def _read_processor_config(model_path: Path) -> tuple[dict[str, Any] | None, Path | None]:
    """The image-processor settings: preprocessor_config.json, else the ``image_processor``
    section of processor_config.json; (None, None) when neither exists."""
    for name, section in (("preprocessor_config.json", None), ("processor_config.json", "image_processor")):
        path = model_path / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
        except ValueError as error:
            raise RewardModelError(f"{path}: not valid JSON: {error}") from None
        if section is not None:
            data = data.get(section) if isinstance(data, dict) else None
            if data is None:
                continue
        if not isinstance(data, dict):
            raise RewardModelError(f"{path}: expected a JSON object")
        return data, path
    return None, None


def image_transform(model_path: Path, image_size: int) -> ImageTransform:
    """The preprocessing for a model directory; the output must be ``image_size`` square."""
    config, path = _read_processor_config(model_path)
    if config is None:
        return ImageTransform(None, (image_size, image_size), None, CLIP_MEAN, CLIP_STD, 1.0 / 255.0, "bicubic")
    where = str(path)
    shortest_edge, resize_hw = None, None
    size = config.get("size", image_size)
    if isinstance(size, Mapping) and "shortest_edge" in size:
        shortest_edge = int(size["shortest_edge"])
    else:
        resize_hw = _hw(size, where)
    crop_hw = None
    if config.get("do_center_crop", "crop_size" in config) and config.get("crop_size") is not None:
        crop_hw = _hw(config["crop_size"], where)
    if shortest_edge is not None and crop_hw is None:
        crop_hw = (image_size, image_size)
    if not config.get("do_resize", True):
        shortest_edge, resize_hw = None, (image_size, image_size)
    mean = tuple(float(v) for v in config.get("image_mean", CLIP_MEAN))
    std = tuple(float(v) for v in config.get("image_std", CLIP_STD))
    if not config.get("do_normalize", True):
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0.0:
        raise RewardModelError(f"{where}: image_mean and image_std must have 3 values (std > 0), got {mean} and {std}")
    rescale = float(config.get("rescale_factor", 1.0 / 255.0)) if config.get("do_rescale", True) else 1.0
    resample = config.get("resample", _PIL_BICUBIC)
    mode = {_PIL_BICUBIC: "bicubic", _PIL_BILINEAR: "bilinear", _PIL_NEAREST: "nearest"}.get(resample, "bicubic")
    transform = ImageTransform(shortest_edge, resize_hw, crop_hw, mean, std, rescale, mode)
    if transform.output_hw != (image_size, image_size):
        raise RewardModelError(
            f"{where}: images come out {transform.output_hw} (H, W), the vision model takes {image_size}x{image_size}"
        )
    return transform


def _features(output: Any) -> torch.Tensor:
    """Projected embeddings from get_*_features: a tensor (transformers 4) or an output
    object whose pooler_output holds them (transformers 5)."""
    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if isinstance(pooled, torch.Tensor):
        return pooled
    if isinstance(output, (tuple, list)) and len(output) > 1 and isinstance(output[1], torch.Tensor):
        return output[1]
    raise RewardModelError(f"the model's feature method returned {type(output).__name__}, not embeddings")


class FewShotHead(torch.nn.Module):
    """Logistic regression on standardised, concatenated per-camera image embeddings."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.register_buffer("feature_mean", torch.zeros(features))
        self.register_buffer("feature_std", torch.ones(features))
        self.linear = torch.nn.Linear(features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear((x - self.feature_mean) / self.feature_std).squeeze(-1)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {
            "feature_mean": self.feature_mean, "feature_std": self.feature_std,
            "weight": self.linear.weight.detach(), "bias": self.linear.bias.detach(),
        }

    def load_tensors(self, tensors: Mapping[str, torch.Tensor], where: str) -> None:
        expected = {key: tuple(value.shape) for key, value in self.tensors().items()}
        got = {key: tuple(value.shape) for key, value in tensors.items()}
        if got != expected:
            raise RewardModelError(f"{where}: few-shot head tensors {got}, expected {expected}")
        with torch.no_grad():
            self.feature_mean.copy_(tensors["feature_mean"])
            self.feature_std.copy_(tensors["feature_std"])
            self.linear.weight.copy_(tensors["weight"])
            self.linear.bias.copy_(tensors["bias"])


class VlmSuccessModel:
    """Success probability from a CLIP/SigLIP model: zero-shot against prompts, or from a
    few-shot head once ``fit_few_shot`` has run. Any image size is accepted (images are resized)."""

    kind = "vlm"
    image_hw = None

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        model_path: Path,
        cameras: Sequence[str],
        success_prompts: Sequence[str],
        failure_prompts: Sequence[str],
        camera_reduction: str = "mean",
        threshold: float = 0.5,
        device: str | torch.device = "cpu",
    ) -> None:
        self.model_path = Path(model_path)
        self.cameras = tuple(cameras)
        if not self.cameras:
            raise RewardModelError(f"{self.model_path}: a VLM reward model needs at least one camera")
        self.success_prompts = tuple(success_prompts)
        self.failure_prompts = tuple(failure_prompts)
        if not self.success_prompts or not self.failure_prompts:
            raise RewardModelError("a VLM reward model needs at least one success prompt and one failure prompt")
        if camera_reduction not in REDUCTIONS:
            raise RewardModelError(f"camera_reduction must be one of {REDUCTIONS}, got {camera_reduction!r}")
        self.camera_reduction = camera_reduction
        self.threshold = 0.5
        self.set_threshold(threshold)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.tokenizer = tokenizer
        config = model.config
        self.model_type = str(getattr(config, "model_type", ""))
        self.is_siglip = "siglip" in self.model_type.lower() or getattr(model, "logit_bias", None) is not None
        vision = getattr(config, "vision_config", None)
        image_size = getattr(vision, "image_size", None)
        if not isinstance(image_size, int):
            raise RewardModelError(f"{self.model_path}: the model config has no vision_config.image_size")
        self.transform = image_transform(self.model_path, image_size)
        self.text_embeddings = self._embed_text(self.success_prompts + self.failure_prompts)
        self.embedding_dim = int(self.text_embeddings.shape[1])
        self.head: FewShotHead | None = None

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_pretrained(
        cls,
        model_path: Path | str,
        cameras: Sequence[str],
        success_prompts: Sequence[str],
        failure_prompts: Sequence[str],
        camera_reduction: str = "mean",
        threshold: float = 0.5,
        device: str = "cpu",
    ) -> "VlmSuccessModel":
        """Load the model and tokenizer from a local directory; nothing is downloaded."""
        import transformers

        path = Path(model_path).expanduser()
        if not path.is_dir():
            raise RewardModelError(f"{path}: no such model directory (model_path must be a local directory)")
        try:
            # float32: transformers 5 defaults to the checkpoint's dtype (often float16).
            model = transformers.AutoModel.from_pretrained(
                str(path), local_files_only=True, use_safetensors=True, dtype=torch.float32
            )
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:
            raise RewardModelError(f"{path}: cannot load the model with transformers: {error}") from None
        if not (callable(getattr(model, "get_image_features", None)) and callable(getattr(model, "get_text_features", None))):
            raise RewardModelError(
                f"{path}: {type(model).__name__} is not a CLIP/SigLIP-like model (no get_image_features/get_text_features)"
            )
        model_type = str(getattr(model.config, "model_type", ""))
        if model_type == "siglip2":
            raise RewardModelError(f"{path}: SigLIP 2 models (variable-resolution patches) are not supported; use CLIP or SigLIP")
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError, ImportError) as error:
            raise RewardModelError(f"{path}: cannot load the tokenizer with transformers: {error}") from None
        return cls(model, tokenizer, path.resolve(), cameras, success_prompts, failure_prompts,
                   camera_reduction=camera_reduction, threshold=threshold, device=device)

    @classmethod
    def from_config(cls, config: Any, cameras: Sequence[str] = (), device: str = "cpu") -> "VlmSuccessModel":
        """From a ``VlmConfig``; ``cameras`` (else ``config.cameras``) are the cameras scored."""
        cameras = tuple(cameras) or tuple(config.cameras)
        return cls.from_pretrained(
            config.model_path, cameras, config.success_prompts, config.failure_prompts,
            camera_reduction=config.camera_reduction, device=device,
        )

    @classmethod
    def load(cls, directory: Path | str, device: str = "cpu") -> "VlmSuccessModel":
        directory = Path(directory)
        meta = read_model_json(directory)
        json_path = directory / MODEL_FILE
        if meta["kind"] != "vlm":
            raise RewardModelError(f"{json_path}: kind {meta['kind']!r}, expected 'vlm'")
        for key, kind in (("model_path", str), ("cameras", list), ("success_prompts", list), ("failure_prompts", list)):
            if not isinstance(meta.get(key), kind):
                raise RewardModelError(f"{json_path}: '{key}' missing or not a {kind.__name__}")
        model = cls.from_pretrained(
            meta["model_path"], meta["cameras"], meta["success_prompts"], meta["failure_prompts"],
            camera_reduction=meta.get("camera_reduction", "mean"), threshold=float(meta["threshold"]), device=device,
        )
        if meta.get("embedding_dim") not in (None, model.embedding_dim):
            raise RewardModelError(
                f"{json_path}: saved with embedding size {meta['embedding_dim']}, the model at {model.model_path} has {model.embedding_dim}"
            )
        if meta.get("few_shot"):
            weights = directory / WEIGHTS_FILE
            import safetensors
            import safetensors.torch

            try:
                tensors = safetensors.torch.load_file(str(weights), device="cpu")
            except (safetensors.SafetensorError, OSError, ValueError, RuntimeError) as error:
                raise RewardModelError(f"{weights}: not a readable safetensors file: {error}") from None
            head = FewShotHead(model.embedding_dim * len(model.cameras))
            head.load_tensors(tensors, str(weights))
            model.head = head.to(model.device).eval()
        return model

    def set_threshold(self, value: float) -> None:
        value = float(value)
        if not 0.0 < value < 1.0:
            raise RewardModelError(f"threshold must be in (0, 1), got {value}")
        self.threshold = value

    # ------------------------------------------------------------------ embeddings

    @torch.inference_mode()
    def _embed_text(self, prompts: Sequence[str]) -> torch.Tensor:
        text_config = getattr(self.model.config, "text_config", None)
        max_length = int(getattr(text_config, "max_position_embeddings", 0) or 0) or None
        if self.is_siglip:
            # SigLIP was trained on texts padded to the full length.
            kwargs = {"padding": "max_length", "max_length": max_length or 64}
        else:
            kwargs = {"padding": True, "max_length": max_length}
        try:
            tokens = self.tokenizer(list(prompts), truncation=True, return_tensors="pt", **kwargs)
        except (ValueError, TypeError, KeyError) as error:
            raise RewardModelError(f"{self.model_path}: cannot tokenise the prompts: {error}") from None
        inputs = {"input_ids": tokens["input_ids"].to(self.device)}
        if "attention_mask" in tokens and not self.is_siglip:
            inputs["attention_mask"] = tokens["attention_mask"].to(self.device)
        features = _features(self.model.get_text_features(**inputs)).float()
        return F.normalize(features, dim=-1)

    @torch.inference_mode()
    def _embed_camera(self, images: np.ndarray) -> torch.Tensor:
        parts = []
        for start in range(0, images.shape[0], EMBED_BATCH):
            pixels = self.transform(images[start:start + EMBED_BATCH], self.device)
            parts.append(F.normalize(_features(self.model.get_image_features(pixel_values=pixels)).float(), dim=-1))
        if not parts:
            return torch.zeros(0, self.embedding_dim, device=self.device)
        return torch.cat(parts)

    def _embed(self, images: Mapping[str, np.ndarray], where: str) -> dict[str, torch.Tensor]:
        check_images(images, self.cameras, None, where=where)
        return {camera: self._embed_camera(np.asarray(images[camera])) for camera in self.cameras}

    def embed(self, images: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """L2-normalised image embeddings per camera, float32 (B, D)."""
        embeddings = self._embed(images, where="VLM reward model embed")
        return {camera: e.cpu().numpy() for camera, e in embeddings.items()}

    # ------------------------------------------------------------------ scores

    @torch.inference_mode()
    def zero_shot_proba(self, embeddings: torch.Tensor) -> torch.Tensor:
        """P(success) per row of normalised image embeddings (B, D) for one camera."""
        logits = embeddings @ self.text_embeddings.T * self.model.logit_scale.exp()
        bias = getattr(self.model, "logit_bias", None)
        if bias is not None:
            logits = logits + bias
        # CLIP and SigLIP alike: softmax over all prompts, so the score is the probability
        # that a success prompt beats the failure prompts (not SigLIP's per-prompt sigmoid).
        return logits.softmax(dim=-1)[:, : len(self.success_prompts)].sum(dim=-1)

    @torch.inference_mode()
    def predict_proba(self, images: Mapping[str, np.ndarray]) -> np.ndarray:
        """images[camera] uint8 (B, H, W, 3) -> float64 (B,) success probabilities in [0, 1]."""
        embeddings = self._embed(images, where="VLM reward model")
        if self.head is not None:
            proba = torch.sigmoid(self.head(torch.cat([embeddings[c] for c in self.cameras], dim=-1)))
        else:
            per_camera = torch.stack([self.zero_shot_proba(embeddings[c]) for c in self.cameras])
            if self.camera_reduction == "min":
                proba = per_camera.min(dim=0).values
            elif self.camera_reduction == "max":
                proba = per_camera.max(dim=0).values
            else:
                proba = per_camera.mean(dim=0)
        return np.clip(proba.double().cpu().numpy(), 0.0, 1.0)

    # ------------------------------------------------------------------ few-shot head

    def fit_few_shot(self, frames: Any, steps: int, lr: float, seed: int = 0) -> dict[str, Any]:
        """Train the few-shot head on labelled frames (success vs the rest); the VLM stays frozen.
        Full-batch Adam with class-balanced logistic loss. Returns a training summary."""
        if steps < 1 or not lr > 0.0:
            raise RewardModelError(f"few-shot training needs steps >= 1 and lr > 0, got {steps} and {lr}")
        embeddings = self._embed(frames.images, where="VLM few-shot frames")
        x = torch.cat([embeddings[c] for c in self.cameras], dim=-1).clone()
        y = torch.as_tensor(np.asarray(frames.is_success), dtype=torch.float32, device=self.device)
        positives, negatives = int(y.sum().item()), int(y.numel() - y.sum().item())
        if positives == 0 or negatives == 0:
            raise RewardModelError(
                f"few-shot training needs success and other frames, got {positives} success and {negatives} other"
            )
        generator = torch.Generator().manual_seed(int(seed))
        head = FewShotHead(x.shape[1])
        with torch.no_grad():
            head.feature_mean.copy_(x.mean(dim=0).cpu())
            head.feature_std.copy_(x.std(dim=0, unbiased=False).clamp_min(1e-6).cpu())
            head.linear.weight.copy_(torch.randn(head.linear.weight.shape, generator=generator) * 0.01)
            head.linear.bias.zero_()
        head = head.to(self.device).train()
        loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(negatives / positives, device=self.device))
        optimiser = torch.optim.Adam(head.parameters(), lr=lr)
        loss = torch.tensor(float("nan"))
        with torch.enable_grad():
            for _ in range(int(steps)):
                optimiser.zero_grad(set_to_none=True)
                loss = loss_fn(head(x), y)
                loss.backward()
                optimiser.step()
        head.eval()
        with torch.inference_mode():
            logits = head(x)
            final_loss = float(loss_fn(logits, y).item())
            accuracy = float(((logits > 0).float() == y).float().mean().item())
        self.head = head
        return {"steps": int(steps), "lr": float(lr), "final_loss": final_loss, "train_accuracy": accuracy,
                "frames": int(y.numel()), "success_frames": positives}

    # ------------------------------------------------------------------ saving

    def save(self, directory: Path | str, extra: Mapping[str, Any] | None = None) -> Path:
        """Write the few-shot head (if any) and then reward_model.json; the VLM weights stay in model_path."""
        import safetensors.torch

        from robot_stack.data.files import write_atomic

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / MODEL_FILE).unlink(missing_ok=True)
        weights = directory / WEIGHTS_FILE
        if self.head is not None:
            tensors = {k: v.detach().cpu().contiguous() for k, v in self.head.tensors().items()}
            write_atomic(weights, lambda path: safetensors.torch.save_file(tensors, str(path)))
        else:
            weights.unlink(missing_ok=True)
        write_model_json(directory, {
            "kind": self.kind,
            "cameras": list(self.cameras),
            "threshold": float(self.threshold),
            "model_path": str(self.model_path.resolve()),
            "model_type": self.model_type,
            "success_prompts": list(self.success_prompts),
            "failure_prompts": list(self.failure_prompts),
            "camera_reduction": self.camera_reduction,
            "few_shot": self.head is not None,
            "embedding_dim": self.embedding_dim,
            **(dict(extra) if extra else {}),
        })
        return directory
