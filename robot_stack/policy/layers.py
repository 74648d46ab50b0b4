"""Small layers every network here is built from, chosen for speed on the learner's hardware.

    tanh(x) = 2 sigmoid(2x) - 1      torch's own CPU tanh is ~3x slower than this form (146 us
                                     against 45 us on a 256x256 tensor, one core, measured here);
                                     with LayerNorm -> tanh after every hidden layer it was a
                                     quarter of a learner step
    dropout                          masks from random bytes (8 per 64-bit draw) instead of one
                                     Bernoulli draw per element: 0.63 ms -> ~0.1 ms on 256 x 512
                                     (one core, measured here); the drop rate is rounded to a
                                     multiple of 1/256 (0.1 -> 26/256)
    bfloat16 compute                 matmuls and convolutions in bfloat16 (float32 accumulation)
                                     where the hardware computes it natively: CUDA, and CPUs with
                                     AVX-512 BF16 or AMX, where a 256x256x256 matmul takes 84 us
                                     against 332 us in float32 (measured here). Weights stay
                                     float32; the output heads (Q-values, action mean and log-std)
                                     run in float32, because a Q-value near 1 / (1 - gamma) = 33
                                     has a bfloat16 resolution of 0.125, coarser than a reward
"""

from __future__ import annotations

import contextlib
import functools
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def tanh(x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(x * 2.0) * 2.0 - 1.0


def affine_tanh(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """tanh(x * weight + bias) for small broadcast ``weight``/``bias`` (the critic ensemble's
    per-member LayerNorm affine): the 2 of 2 sigmoid(2y) - 1 is folded into them and the affine is
    one addcmul, four passes over the activation instead of six. On a (2, 256, 256) ensemble
    activation, forward and backward: 453 us against 609 (one core, measured here). Where the
    affine is one vector, LayerNorm's own affine is faster still (183 us against 229 on 256 x 256),
    so the single MLPs keep nn.LayerNorm -> tanh."""
    return torch.sigmoid(torch.addcmul(bias * 2.0, x, weight * 2.0)) * 2.0 - 1.0


class Tanh(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return tanh(x)


class Dropout(nn.Module):
    """Inverted dropout (training only) whose mask comes from random bytes: an element is kept
    when its byte is >= round(p * 256), and scaled by 256 / (256 - that threshold)."""

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {p}")
        self.p = p
        self.threshold = int(round(p * 256))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.threshold == 0:
            return x
        count = x.numel()
        words = torch.empty((count + 7) // 8, dtype=torch.int64, device=x.device).random_()
        keep = words.view(torch.uint8)[:count].view(x.shape) >= self.threshold
        return x * keep * (256.0 / (256 - self.threshold))

    def extra_repr(self) -> str:
        return f"p={self.p} (applied as {self.threshold}/256)"


class FullPrecisionLinear(nn.Linear):
    """A Linear that computes in float32 inside a bfloat16 autocast region (the same parameter
    names as nn.Linear, so weights files do not change)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return F.linear(x.to(self.weight.dtype), self.weight, self.bias)


@functools.lru_cache(maxsize=None)
def _cpu_has_native_bfloat16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def bfloat16_native(device: torch.device | str) -> bool:
    """Whether ``device`` computes bfloat16 matmuls natively (else bfloat16 is emulated and slower
    than float32)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and _cpu_has_native_bfloat16()


def compute_autocast(device: torch.device | str, mixed_precision: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on ``device`` when ``mixed_precision`` asks for it and the hardware has
    it; otherwise a no-op context.

    Autocast caches the bfloat16 copy of each weight until its outermost region ends, whatever
    happens to the weight meanwhile: a region must end before an optimiser steps the weights it
    read (``learner/sac.py`` opens one per forward pass)."""
    device = torch.device(device)
    enabled = mixed_precision and bfloat16_native(device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled) if enabled else contextlib.nullcontext()


def xavier_linear(in_dim: int, out_dim: int, full_precision: bool = False) -> nn.Linear:
    layer = (FullPrecisionLinear if full_precision else nn.Linear)(in_dim, out_dim)
    nn.init.xavier_uniform_(layer.weight)  # flax/SERL default_init: variance scaling, fan_avg, uniform
    nn.init.zeros_(layer.bias)
    return layer


def layer_norm_mlp(in_dim: int, hidden_dims: Sequence[int]) -> nn.Sequential:
    """Hidden layers only (the caller adds its heads): [Linear, LayerNorm, Tanh] per width."""
    layers: list[nn.Module] = []
    for width in hidden_dims:
        layers += [xavier_linear(in_dim, width), nn.LayerNorm(width), Tanh()]
        in_dim = width
    return nn.Sequential(*layers)
