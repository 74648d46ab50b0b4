"""Observation encoders: ResNet-10 trunk, pretrained loading, freezing, spatial embeddings,
random crop, and the per-observation encoder."""

import pytest
import torch
import torch.nn.functional as F

from robot_stack.config.schema import AgentConfig, EncoderConfig
from robot_stack.policy.encoders import (
    ImageEncoder,
    ObservationEncoder,
    ResNet10,
    SpatialLearnedEmbeddings,
    load_trunk_weights,
    random_crop,
    random_crop_observation,
    save_trunk_weights,
)
from robot_stack.policy.weights_io import WeightsMismatchError
from robot_stack.data.spec import ArraySpec

torch.set_num_threads(1)


def images(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (batch, height, width, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_resnet10_maps_a_128px_image_to_512_channels_at_one_32nd_resolution():
    trunk = ResNet10()
    with torch.no_grad():
        assert trunk(images(1, 128, 128)).shape == (1, 512, 4, 4)
        assert trunk(images(1, 100, 60)).shape == (1, 512, *ResNet10.feature_hw((100, 60))) == (1, 512, 4, 2)


def test_resnet10_has_one_basic_block_per_stage_and_group_norm_everywhere():
    def conv(cin, cout, k):
        return cin * cout * k * k

    def gn(c):
        return 2 * c

    expected = conv(3, 64, 7) + gn(64)
    expected += 2 * conv(64, 64, 3) + 2 * gn(64)  # stage 1: no projection
    for cin, cout in ((64, 128), (128, 256), (256, 512)):
        expected += conv(cin, cout, 3) + conv(cout, cout, 3) + conv(cin, cout, 1) + 3 * gn(cout)
    trunk = ResNet10()
    assert sum(p.numel() for p in trunk.parameters()) == expected == 4_905_792
    norms = [m for m in trunk.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(norms) == 1 + 2 + 3 * 3 and all(n.num_groups == 4 for n in norms)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in trunk.modules())


def test_pretrained_trunk_round_trips_through_a_safetensors_file(tmp_path):
    source = ResNet10()
    path = tmp_path / "resnet10.safetensors"
    save_trunk_weights(source, path)
    encoder = ImageEncoder((32, 32), EncoderConfig(pretrained_path=path), mixed_precision=False)
    x = images(2, 32, 32)
    with torch.no_grad():
        assert torch.equal(encoder.trunk_features(x), source(x))


def test_a_pretrained_file_that_does_not_fit_names_the_file_and_the_keys(tmp_path):
    tensors = {name: t.clone() for name, t in ResNet10().state_dict().items()}
    del tensors["stem_conv.weight"]
    tensors["stages.1.norm1.weight"] = torch.ones(7)
    tensors["head.extra"] = torch.zeros(1)
    import safetensors.torch

    path = tmp_path / "wrong.safetensors"
    safetensors.torch.save_file(tensors, str(path))
    with pytest.raises(WeightsMismatchError) as error:
        load_trunk_weights(ResNet10(), path)
    message = str(error.value)
    assert str(path) in message
    assert "missing: stem_conv.weight" in message
    assert "unexpected: head.extra" in message
    assert "stages.1.norm1.weight [7] (expected [128])" in message


def test_a_missing_pretrained_file_is_named(tmp_path):
    path = tmp_path / "absent.safetensors"
    with pytest.raises(WeightsMismatchError, match="absent.safetensors.*no such file"):
        ImageEncoder((32, 32), EncoderConfig(pretrained_path=path), mixed_precision=False)


def test_a_frozen_trunk_gets_no_gradient_and_stays_in_eval_mode_while_the_head_learns():
    encoder = ImageEncoder((32, 32), EncoderConfig(frozen=True), mixed_precision=False).train()
    encoder(images(2, 32, 32)).sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in encoder.trunk.parameters())
    assert all(p.grad is not None for p in encoder.head.parameters())
    assert not encoder.trunk.training and encoder.head.training


def test_an_unfrozen_trunk_gets_gradients():
    encoder = ImageEncoder((32, 32), EncoderConfig(frozen=False), mixed_precision=False).train()
    encoder(images(2, 32, 32)).sum().backward()
    assert all(p.grad is not None for p in encoder.trunk.parameters())


def test_spatial_learned_embeddings_weight_every_channel_map_by_each_learned_kernel():
    embed = SpatialLearnedEmbeddings(height=2, width=3, channels=4, num_features=5)
    features = torch.randn(2, 4, 2, 3)
    expected = torch.stack(
        [
            torch.stack([(features[b, c] * embed.kernel[:, :, c, f]).sum() for c in range(4) for f in range(5)])
            for b in range(2)
        ]
    )
    assert torch.allclose(embed(features), expected, atol=1e-6)


def test_random_crop_keeps_shape_and_dtype_and_is_the_identity_without_padding():
    x = images(3, 16, 20)
    cropped = random_crop(x, 4, torch.Generator().manual_seed(0))
    assert cropped.shape == x.shape and cropped.dtype == torch.uint8
    assert torch.equal(random_crop(x, 0, torch.Generator().manual_seed(0)), x)


def test_random_crop_is_an_edge_padded_crop_at_its_own_offset_per_sample():
    pad = 2
    one = images(1, 8, 8)
    batch = one.expand(64, -1, -1, -1).contiguous()
    cropped = random_crop(batch, pad, torch.Generator().manual_seed(0))
    padded = F.pad(one.permute(0, 3, 1, 2).float(), (pad,) * 4, mode="replicate").permute(0, 2, 3, 1)[0]
    references = [padded[dy : dy + 8, dx : dx + 8].to(torch.uint8) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)]
    offsets = []
    for sample in cropped:
        matches = [i for i, reference in enumerate(references) if torch.equal(sample, reference)]
        assert matches, "every crop is the edge-padded image cropped at some offset"
        offsets.append(matches[0])
    assert len(set(offsets)) > 10  # 25 possible offsets, drawn per sample


def test_random_crop_of_an_observation_crops_images_only():
    observation = {"state": torch.randn(4, 3), "images/front": images(4, 16, 16)}
    cropped = random_crop_observation(observation, 4, torch.Generator().manual_seed(1))
    assert cropped["state"] is observation["state"]
    assert not torch.equal(cropped["images/front"], observation["images/front"])


def spec(cameras: dict, state_dim: int = 5) -> dict:
    result = {"state": ArraySpec("<f4", (state_dim,))}
    result.update({f"images/{name}": ArraySpec("|u1", (*hw, 3)) for name, hw in cameras.items()})
    return result


def test_observation_encoder_concatenates_one_embedding_per_camera_and_the_state():
    agent = AgentConfig(encoder=EncoderConfig(bottleneck_dim=32, state_embedding_dim=16))
    encoder = ObservationEncoder(agent, spec({"wrist": (32, 32), "front": (32, 48)}))
    assert list(encoder.cameras) == ["front", "wrist"]
    observation = {"state": torch.randn(2, 5), "images/front": images(2, 32, 48), "images/wrist": images(2, 32, 32)}
    with torch.no_grad():
        features = encoder.eval()(observation)
        assert features.shape == (2, 32 + 32 + 16) == (2, encoder.output_dim)
        assert torch.equal(features[:, 64:], encoder.state(observation["state"]))


def test_a_state_only_encoder_has_no_image_trunk_and_can_feed_the_raw_state():
    embedded = ObservationEncoder(AgentConfig(), spec({}))
    assert len(embedded.cameras) == 0 and embedded.output_dim == 64
    raw = ObservationEncoder(AgentConfig(encoder=EncoderConfig(state_embedding_dim=0)), spec({}))
    state = torch.randn(3, 5)
    assert raw.output_dim == 5 and torch.equal(raw({"state": state}), state)
    assert sum(p.numel() for p in raw.parameters()) == 0


def test_observation_encoder_rejects_keys_it_does_not_know():
    with pytest.raises(ValueError, match="depth"):
        ObservationEncoder(AgentConfig(), {"state": ArraySpec("<f4", (3,)), "depth": ArraySpec("<f4", (4, 4))})
