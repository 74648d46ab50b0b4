"""Strict loading of named tensors into a module, with an error a person can act on.

Weights reach a module from three places (a pretrained ResNet-10 file, the learner's
published policy, a checkpoint) and a silent partial load is the worst outcome of each:
a policy that runs with half its layers at random. So every load compares names and
shapes first and refuses with the source, the missing, the unexpected and the mis-shaped
names.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

MAX_NAMES_SHOWN = 8


class WeightsMismatchError(ValueError):
    """Named tensors that do not fit a module: names or shapes differ."""


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMES_SHOWN])
    return shown + (f" (and {len(names) - MAX_NAMES_SHOWN} more)" if len(names) > MAX_NAMES_SHOWN else "")


def check_weights(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise WeightsMismatchError unless ``given`` has exactly the names and shapes of ``expected``."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    misshaped = sorted(
        f"{name} {list(given[name].shape)} (expected {list(expected[name].shape)})"
        for name in set(expected) & set(given)
        if tuple(given[name].shape) != tuple(expected[name].shape)
    )
    problems = [
        f"{label}: {_names(names)}"
        for label, names in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped))
        if names
    ]
    if problems:
        raise WeightsMismatchError(f"{source}: the weights do not fit the network; " + "; ".join(problems))


def load_weights_strict(module: nn.Module, tensors: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy ``tensors`` into ``module`` (every name, every shape) or raise WeightsMismatchError."""
    check_weights(module.state_dict(), tensors, source)
    module.load_state_dict(dict(tensors), strict=True)


def cpu_weights(module: nn.Module) -> dict[str, torch.Tensor]:
    """A snapshot of ``module``'s tensors: CPU, contiguous, not sharing memory with it, so a
    publisher can serialise it (safetensors) while training goes on."""
    return {name: tensor.detach().to("cpu", copy=True).contiguous() for name, tensor in module.state_dict().items()}
