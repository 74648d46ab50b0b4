"""Published ImageNet ResNet-10 weights, converted to this project's trunk (``ResNet10``).

Two sources publish the trunk HIL-SERL uses (ResNet-10, one basic block per stage, GroupNorm
with 4 groups and eps 1e-5, ImageNet-normalised input):

  serl     ``resnet10_params.pkl``, SERL's GitHub release, loaded by HIL-SERL's
           ``load_resnet10_params``: a pickled dict of flax parameters. Keys ``conv_init``,
           ``norm_init``, ``ResNetBlock_0..3`` (``Conv_0``, ``Conv_1``, ``MyGroupNorm_0/1``,
           ``conv_proj``, ``norm_proj``), leaves ``kernel`` (HWIO) or ``scale``/``bias``;
           the file also carries an ImageNet ``output_head``, which the trunk does not use.
           Its leaves may be numpy arrays or pickled jax arrays.
  lerobot  ``model.safetensors`` of the ResNet-10 that LeRobot's HIL-SERL port loads
           (``lerobot/resnet10``, earlier ``helper2424/resnet10``), converted from the same flax
           parameters: ``embedder.0`` (stem conv), ``embedder.1`` (stem norm),
           ``encoder.stages.<i>.conv1/conv2/norm1/norm2/shortcut.0/shortcut.1``; convolutions
           may sit under ``.conv`` and norms under ``.group_norm`` (both spellings exist).
           LeRobot normalises images with ImageNet statistics outside the model; this
           project's trunk does it inside, so the converted weights give the same features.

The pickle is read by an unpickler that builds nothing but dicts and plain numeric numpy arrays:
every global the file names must be one of a short list (numpy's array reconstruction, dtype,
ndarray; jax's array reconstruction and flax's FrozenDict, both replaced by numpy/dict
equivalents), anything else is refused before it is called. Never a general unpickler.
"""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import safetensors
import safetensors.torch
import torch

from robot_stack.policy.encoders import ResNet10, save_trunk_weights
from robot_stack.policy.weights_io import check_weights

FORMATS = ("serl", "lerobot")
MAX_PICKLE_BYTES = 256 * 1024 * 1024  # the real file is ~22 MB


class PublishedWeightsError(ValueError):
    """A published weights file that cannot be converted; the message names the file and why."""


# --------------------------------------------------------------------------- the safe unpickler


def _numpy_reconstruct(cls: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy's ``_reconstruct`` for plain ndarrays only (the state comes with BUILD)."""
    if cls is not np.ndarray:
        raise pickle.UnpicklingError(f"refused: array reconstruction of {cls!r}, only numpy.ndarray is allowed")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _numpy_dtype(spec: Any, align: Any = False, copy: Any = True) -> np.dtype:
    dtype = np.dtype(spec)
    if dtype.kind not in "biuf":
        raise pickle.UnpicklingError(f"refused: dtype {dtype} (only numeric arrays are allowed)")
    return dtype


def _jax_array(fun: Callable, args: tuple, array_state: Any, aval_state: Any) -> np.ndarray:
    """jax's ``_reconstruct_array`` without jax: rebuild the numpy array it wraps."""
    array = fun(*args)
    if not isinstance(array, np.ndarray):
        raise pickle.UnpicklingError("refused: a jax array that does not wrap a numpy array")
    array.__setstate__(array_state)
    return array


def _frozen_dict(*args: Any, **kwargs: Any) -> dict:
    return dict(*args, **kwargs)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _numpy_dtype,
    ("jax._src.array", "_reconstruct_array"): _jax_array,
    ("flax.core.frozen_dict", "FrozenDict"): _frozen_dict,
    ("collections", "OrderedDict"): _frozen_dict,
}


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused: the file names {module}.{name}, which is not a plain array or dict") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused: persistent ids")


def load_array_pickle(path: Path) -> dict[str, Any]:
    """A pickled nested dict of numeric numpy arrays, read without running anything else."""
    path = Path(path)
    if not path.is_file():
        raise PublishedWeightsError(f"{path}: no such file")
    if path.stat().st_size > MAX_PICKLE_BYTES:
        raise PublishedWeightsError(f"{path}: {path.stat().st_size} bytes, more than a ResNet-10 parameter file can be")
    try:
        tree = _ArraysOnlyUnpickler(io.BytesIO(path.read_bytes())).load()
    except pickle.UnpicklingError as error:
        raise PublishedWeightsError(f"{path}: {error}") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as error:
        raise PublishedWeightsError(f"{path}: not a readable parameter pickle ({type(error).__name__}: {error})") from None
    _check_tree(tree, str(path))
    return tree


def _check_tree(node: Any, where: str) -> None:
    if isinstance(node, dict):
        for key, child in node.items():
            if not isinstance(key, str):
                raise PublishedWeightsError(f"{where}: key {key!r} is not a string")
            _check_tree(child, f"{where}/{key}")
    elif not isinstance(node, np.ndarray) or node.dtype.kind not in "biuf":
        raise PublishedWeightsError(f"{where}: {type(node).__name__} is neither a dict nor a numeric array")


# --------------------------------------------------------------------------- key layouts


def _flax_names() -> dict[str, tuple[str, str]]:
    """Our trunk's tensor name -> (flax path, kind) with kind "conv" (HWIO kernel) or "norm"."""
    names = {"stem_conv.weight": ("conv_init/kernel", "conv")}
    names["stem_norm.weight"] = ("norm_init/scale", "norm")
    names["stem_norm.bias"] = ("norm_init/bias", "norm")
    for i in range(4):
        block = f"ResNetBlock_{i}"
        ours = f"stages.{i}"
        names[f"{ours}.conv1.weight"] = (f"{block}/Conv_0/kernel", "conv")
        names[f"{ours}.conv2.weight"] = (f"{block}/Conv_1/kernel", "conv")
        for j in (1, 2):
            names[f"{ours}.norm{j}.weight"] = (f"{block}/MyGroupNorm_{j - 1}/scale", "norm")
            names[f"{ours}.norm{j}.bias"] = (f"{block}/MyGroupNorm_{j - 1}/bias", "norm")
        if i > 0:
            names[f"{ours}.projection_conv.weight"] = (f"{block}/conv_proj/kernel", "conv")
            names[f"{ours}.projection_norm.weight"] = (f"{block}/norm_proj/scale", "norm")
            names[f"{ours}.projection_norm.bias"] = (f"{block}/norm_proj/bias", "norm")
    return names


def _lookup(tree: Mapping[str, Any], path: str) -> Any:
    node: Any = tree
    for part in path.split("/"):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def convert_serl(tree: Mapping[str, Any], source: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Flax ResNet-10 parameters -> our trunk's state dict; also the top-level keys left unused."""
    # Where the trunk sits under an encoder's parameters (a params tree saved from an agent).
    if "conv_init" not in tree and isinstance(tree.get("pretrained_encoder"), Mapping):
        tree = tree["pretrained_encoder"]
    tensors, missing = {}, []
    for ours, (path, kind) in _flax_names().items():
        value = _lookup(tree, path)
        if value is None:
            missing.append(path)
            continue
        array = np.asarray(value, dtype=np.float32)
        if kind == "conv":
            if array.ndim != 4:
                raise PublishedWeightsError(f"{source}: {path} has shape {list(array.shape)}; a flax conv kernel is (H, W, in, out)")
            array = array.transpose(3, 2, 0, 1)  # HWIO -> OIHW
        tensors[ours] = torch.from_numpy(np.ascontiguousarray(array))
    if missing:
        raise PublishedWeightsError(f"{source}: not a ResNet-10 parameter tree, missing {missing[:6]}{' ...' if len(missing) > 6 else ''}")
    used = {"conv_init", "norm_init", *(f"ResNetBlock_{i}" for i in range(4))}
    return tensors, sorted(set(tree) - used)


_LEROBOT_PATTERNS = [
    (re.compile(r"^embedder\.0(\.conv)?\.weight$"), "stem_conv.weight"),
    (re.compile(r"^embedder\.1(\.group_norm)?\.(weight|bias)$"), "stem_norm.{2}"),
    (re.compile(r"^encoder\.stages\.(\d)\.conv([12])(\.conv)?\.weight$"), "stages.{1}.conv{2}.weight"),
    (re.compile(r"^encoder\.stages\.(\d)\.norm([12])(\.group_norm)?\.(weight|bias)$"), "stages.{1}.norm{2}.{4}"),
    (re.compile(r"^encoder\.stages\.(\d)\.shortcut\.0(\.conv)?\.weight$"), "stages.{1}.projection_conv.weight"),
    (re.compile(r"^encoder\.stages\.(\d)\.shortcut\.1(\.group_norm)?\.(weight|bias)$"), "stages.{1}.projection_norm.{3}"),
]


def convert_lerobot(tensors: Mapping[str, torch.Tensor], source: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """LeRobot's ResNet-10 state dict (either spelling) -> ours; also the names left unused."""
    converted, unused = {}, []
    for name, tensor in tensors.items():
        name_ = name.removeprefix("model.").removeprefix("resnet.")
        for pattern, template in _LEROBOT_PATTERNS:
            match = pattern.match(name_)
            if match:
                ours = template.format(None, *match.groups())
                if ours in converted:
                    raise PublishedWeightsError(f"{source}: two tensors map to '{ours}' (one is '{name}')")
                converted[ours] = tensor.float().contiguous()
                break
        else:
            unused.append(name)
    return converted, sorted(unused)


def convert_published(source: Path, fmt: str, out: Path) -> dict[str, Any]:
    """Convert a published ResNet-10 file to our trunk, check it fits, write safetensors to
    ``out``; returns what was converted and what was left unused."""
    source = Path(source)
    if fmt == "serl":
        tensors, unused = convert_serl(load_array_pickle(source), str(source))
    elif fmt == "lerobot":
        if not source.is_file():
            raise PublishedWeightsError(f"{source}: no such file")
        try:
            raw = safetensors.torch.load_file(str(source))
        except (safetensors.SafetensorError, OSError) as error:
            raise PublishedWeightsError(f"{source}: not a readable safetensors file: {error}") from None
        tensors, unused = convert_lerobot(raw, str(source))
    else:
        raise PublishedWeightsError(f"unknown format '{fmt}' (one of {', '.join(FORMATS)})")
    trunk = ResNet10()
    try:
        check_weights(trunk.state_dict(), tensors, f"{source} converted from the {fmt} layout")
    except ValueError as error:
        raise PublishedWeightsError(str(error)) from None
    trunk.load_state_dict(tensors, strict=True)
    save_trunk_weights(trunk, out, metadata={"converted_from": str(source), "format": fmt})
    return {"source": str(source), "format": fmt, "out": str(out), "tensors": len(tensors),
            "parameters": int(sum(t.numel() for t in tensors.values())), "unused": unused}
