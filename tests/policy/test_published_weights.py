"""Published ResNet-10 weights: SERL/HIL-SERL's flax pickle and LeRobot's safetensors convert to
our trunk and give the features their own networks compute; the pickle reader builds nothing but
dicts and numeric arrays.

The files are built here in the published layouts (no download): the flax tree with HWIO
kernels, with numpy leaves and with leaves pickled the way jax pickles its arrays, inside a
FrozenDict; LeRobot's state dict in both of its spellings. The reference forward pass is a
numpy implementation of the flax module (SAME padding, GroupNorm(4)), independent of torch's
convolutions, so a wrong transpose or padding shows up as different features."""

import pickle
import sys
import types

import numpy as np
import pytest
import safetensors.torch
import torch

from robot_stack.cli import main as cli_main
from robot_stack.policy.encoders import ResNet10, load_trunk_weights
from robot_stack.policy.published_weights import (
    PublishedWeightsError,
    _flax_names,
    convert_published,
    load_array_pickle,
)

torch.set_num_threads(1)

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def random_trunk(seed: int = 0) -> ResNet10:
    torch.manual_seed(seed)
    trunk = ResNet10()
    with torch.no_grad():  # norms away from (1, 0), so a swapped scale/bias shows
        for name, tensor in trunk.named_parameters():
            if "norm" in name:
                tensor.copy_(torch.randn_like(tensor) * 0.2 + (1.0 if name.endswith("weight") else 0.0))
    return trunk


def flax_tree(trunk: ResNet10) -> dict:
    """The trunk's weights in the flax layout of resnet10_params.pkl (plus an ImageNet head)."""
    tree: dict = {"output_head": {"kernel": np.zeros((512, 1000), np.float32), "bias": np.zeros(1000, np.float32)}}
    state = trunk.state_dict()
    for ours, (path, kind) in _flax_names().items():
        value = state[ours].numpy()
        if kind == "conv":
            value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        node = tree
        *parents, leaf = path.split("/")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = np.ascontiguousarray(value)
    return tree


# --------------------------------------------------------------------------- numpy reference


def same_pad(x: np.ndarray, kernel: int, stride: int, value: float = 0.0) -> np.ndarray:
    pads = []
    for size in x.shape[1:3]:
        total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=value)


def conv(x: np.ndarray, kernel: np.ndarray, stride: int, padding) -> np.ndarray:
    """NHWC x HWIO cross-correlation, flax's nn.Conv without bias."""
    k = kernel.shape[0]
    x = same_pad(x, k, stride) if padding == "SAME" else np.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))[:, ::stride, ::stride]
    return np.einsum("bhwcij,ijco->bhwo", windows, kernel, optimize=True)


def group_norm(x: np.ndarray, params: dict, groups: int = 4, eps: float = 1e-5) -> np.ndarray:
    b, h, w, c = x.shape
    g = x.reshape(b, h, w, groups, c // groups)
    mean = g.mean(axis=(1, 2, 4), keepdims=True)
    var = g.var(axis=(1, 2, 4), keepdims=True)
    return ((g - mean) / np.sqrt(var + eps)).reshape(b, h, w, c) * params["scale"] + params["bias"]


def flax_resnet10(tree: dict, images: np.ndarray) -> np.ndarray:
    """serl_launcher's ResNetEncoder (resnetv1-10, pre-pooling) in numpy: uint8 NHWC -> NHWC maps."""
    x = (images.astype(np.float64) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    x = conv(x, tree["conv_init"]["kernel"], 2, ((3, 3), (3, 3)))
    x = np.maximum(group_norm(x, tree["norm_init"]), 0)
    x = same_pad(x, 3, 2, -np.inf)
    x = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(1, 2))[:, ::2, ::2].max(axis=(-2, -1))
    for i in range(4):
        block = tree[f"ResNetBlock_{i}"]
        stride = 1 if i == 0 else 2
        y = np.maximum(group_norm(conv(x, block["Conv_0"]["kernel"], stride, "SAME"), block["MyGroupNorm_0"]), 0)
        y = group_norm(conv(y, block["Conv_1"]["kernel"], 1, "SAME"), block["MyGroupNorm_1"])
        residual = x if "conv_proj" not in block else group_norm(conv(x, block["conv_proj"]["kernel"], stride, "SAME"), block["norm_proj"])
        x = np.maximum(residual + y, 0)
    return x


def converted_features(path, images: np.ndarray) -> np.ndarray:
    trunk = ResNet10()
    load_trunk_weights(trunk, path)
    with torch.no_grad():
        return trunk(torch.from_numpy(images)).permute(0, 2, 3, 1).double().numpy()


# --------------------------------------------------------------------------- SERL / HIL-SERL


def test_serl_flax_pickle_converts_to_the_features_the_flax_network_computes(tmp_path):
    tree = flax_tree(random_trunk(1))
    source = tmp_path / "resnet10_params.pkl"
    source.write_bytes(pickle.dumps(tree))
    report = convert_published(source, "serl", tmp_path / "resnet10.safetensors")
    assert report["parameters"] == 4_905_792 and report["unused"] == ["output_head"]
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 48, 3), dtype=np.uint8)
    ours = converted_features(tmp_path / "resnet10.safetensors", images)
    reference = flax_resnet10(tree, images)
    assert ours.shape == reference.shape == (2, 2, 2, 512)
    assert np.abs(ours - reference).max() < 1e-3 * max(1.0, np.abs(reference).max())


@pytest.fixture
def fake_jax_and_flax(monkeypatch):
    """Modules named as jax and flax name theirs, so objects pickle as jax arrays in a FrozenDict
    do (jax._src.array._reconstruct_array, flax.core.frozen_dict.FrozenDict): the converter must
    read such a file without either installed."""
    array_module = types.ModuleType("jax._src.array")

    def _reconstruct_array(fun, args, arr_state, aval_state):  # pragma: no cover - never called here
        raise AssertionError("the converter must not call the pickled jax function")

    _reconstruct_array.__module__, _reconstruct_array.__qualname__ = "jax._src.array", "_reconstruct_array"
    array_module._reconstruct_array = _reconstruct_array

    class JaxArray:
        def __init__(self, value):
            self.value = value

        def __reduce__(self):
            rebuild, args, state = self.value.__reduce__()
            return _reconstruct_array, (rebuild, args, state, {"weak_type": False})

    frozen_module = types.ModuleType("flax.core.frozen_dict")

    class FrozenDict(dict):
        def __reduce__(self):
            return FrozenDict, (dict(self),)

    FrozenDict.__module__, FrozenDict.__qualname__ = "flax.core.frozen_dict", "FrozenDict"
    frozen_module.FrozenDict = FrozenDict
    for name, module in {"jax": types.ModuleType("jax"), "jax._src": types.ModuleType("jax._src"),
                         "jax._src.array": array_module, "flax": types.ModuleType("flax"),
                         "flax.core": types.ModuleType("flax.core"), "flax.core.frozen_dict": frozen_module}.items():
        monkeypatch.setitem(sys.modules, name, module)
    return JaxArray, FrozenDict


def test_serl_pickle_of_jax_arrays_in_frozen_dicts_converts_without_jax(tmp_path, fake_jax_and_flax):
    JaxArray, FrozenDict = fake_jax_and_flax
    tree = flax_tree(random_trunk(2))

    def wrap(node):
        return FrozenDict({k: wrap(v) for k, v in node.items()}) if isinstance(node, dict) else JaxArray(node)

    source = tmp_path / "resnet10_params.pkl"
    source.write_bytes(pickle.dumps(wrap(tree), protocol=4))
    assert b"jax._src.array" in source.read_bytes() and b"FrozenDict" in source.read_bytes()
    loaded = load_array_pickle(source)
    assert type(loaded) is dict and isinstance(loaded["ResNetBlock_3"]["conv_proj"]["kernel"], np.ndarray)
    convert_published(source, "serl", tmp_path / "out.safetensors")
    images = np.random.default_rng(1).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    assert np.allclose(converted_features(tmp_path / "out.safetensors", images), flax_resnet10(tree, images), atol=1e-3)


class RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_names_anything_but_arrays_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "ran"
    source = tmp_path / "evil.pkl"
    source.write_bytes(pickle.dumps({"conv_init": {"kernel": RunsACommand(marker)}}))
    with pytest.raises(PublishedWeightsError, match="refused: the file names (posix|os).system"):
        convert_published(source, "serl", tmp_path / "out.safetensors")
    assert not marker.exists() and not (tmp_path / "out.safetensors").exists()


def test_object_arrays_and_non_array_leaves_are_refused(tmp_path):
    objects = tmp_path / "objects.pkl"
    objects.write_bytes(pickle.dumps({"a": np.array([1, "x"], dtype=object)}))
    with pytest.raises(PublishedWeightsError, match="refused"):
        load_array_pickle(objects)
    strings = tmp_path / "strings.pkl"
    strings.write_bytes(pickle.dumps({"a": "text"}))
    with pytest.raises(PublishedWeightsError, match="strings.pkl/a: str is neither a dict nor a numeric array"):
        load_array_pickle(strings)


def test_a_parameter_tree_without_the_trunk_names_what_is_missing(tmp_path):
    tree = flax_tree(random_trunk())
    del tree["ResNetBlock_2"]
    source = tmp_path / "partial.pkl"
    source.write_bytes(pickle.dumps(tree))
    with pytest.raises(PublishedWeightsError, match="missing .*ResNetBlock_2/Conv_0/kernel"):
        convert_published(source, "serl", tmp_path / "out.safetensors")


# --------------------------------------------------------------------------- LeRobot


def lerobot_state_dict(trunk: ResNet10, nested: bool) -> dict[str, torch.Tensor]:
    """The trunk under LeRobot's names: with nested=True as its current modeling_resnet.py
    (Conv2dJax's ``.conv``, the norm's ``.group_norm``), else the earlier bare modules."""
    conv, norm = (".conv", ".group_norm") if nested else ("", "")
    out = {}
    for name, tensor in trunk.state_dict().items():
        parts = name.split(".")
        if parts[0] == "stem_conv":
            key = "embedder.0.weight"
        elif parts[0] == "stem_norm":
            key = f"embedder.1{norm}.{parts[1]}"
        else:
            stage, layer, leaf = parts[1], parts[2], parts[3]
            if layer.startswith("conv"):
                key = f"encoder.stages.{stage}.{layer}{conv}.{leaf}"
            elif layer.startswith("norm"):
                key = f"encoder.stages.{stage}.{layer}{norm}.{leaf}"
            elif layer == "projection_conv":
                key = f"encoder.stages.{stage}.shortcut.0{conv}.{leaf}"
            else:
                key = f"encoder.stages.{stage}.shortcut.1{norm}.{leaf}"
        out[key] = tensor.clone()
    return out


@pytest.mark.parametrize("nested", [True, False], ids=["current-names", "earlier-names"])
def test_lerobot_resnet10_safetensors_converts_to_the_same_trunk(tmp_path, nested):
    trunk = random_trunk(3)
    source = tmp_path / "model.safetensors"
    safetensors.torch.save_file(lerobot_state_dict(trunk, nested), str(source))
    report = convert_published(source, "lerobot", tmp_path / "resnet10.safetensors")
    assert report["tensors"] == 36 and report["unused"] == []
    converted = ResNet10()
    load_trunk_weights(converted, tmp_path / "resnet10.safetensors")
    for name, tensor in trunk.state_dict().items():
        assert torch.equal(converted.state_dict()[name], tensor), name


def test_a_lerobot_file_of_another_network_is_refused_with_the_names(tmp_path):
    source = tmp_path / "model.safetensors"
    state = lerobot_state_dict(random_trunk(), nested=True)
    state["encoder.stages.3.conv2.conv.weight"] = torch.zeros(512, 512, 5, 5)
    safetensors.torch.save_file(state, str(source))
    with pytest.raises(PublishedWeightsError, match=r"mis-shaped: stages.3.conv2.weight \[512, 512, 5, 5\]"):
        convert_published(source, "lerobot", tmp_path / "out.safetensors")


def test_encoder_convert_command_writes_weights_a_task_can_name(tmp_path, capsys):
    source = tmp_path / "resnet10_params.pkl"
    source.write_bytes(pickle.dumps(flax_tree(random_trunk(4))))
    out = tmp_path / "weights" / "resnet10_imagenet.safetensors"
    assert cli_main(["encoder", "convert", str(source), "--from", "serl", "--out", str(out)]) == 0
    assert "4,905,792 parameters" in capsys.readouterr().out
    load_trunk_weights(ResNet10(), out)
