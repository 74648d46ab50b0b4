"""VlmSuccessModel on a tiny randomly initialised CLIP saved to a temporary directory."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from robot_stack.config.schema import VlmConfig
from robot_stack.reward.base import MODEL_FILE, WEIGHTS_FILE, RewardModelError, SuccessModel
from robot_stack.reward.detector import load_reward_model
from robot_stack.reward.frame_sets import STATE_QUANTITIES, LabelledFrames
from robot_stack.reward.vlm import VlmSuccessModel

SUCCESS = ("the cube is lifted in the gripper",)
FAILURE = ("the cube is on the table", "the gripper is empty")
CAMERAS = ("front", "wrist")
WORDS = sorted({w for text in SUCCESS + FAILURE for w in text.split()} | {"a", "photo", "of", "robot"})


def _no_network(*args, **kwargs):
    raise AssertionError("a test tried to open a network connection")


@pytest.fixture(scope="module", autouse=True)
def offline():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("TRANSFORMERS_OFFLINE", "1")
        patch.setattr(socket.socket, "connect", _no_network)
        patch.setattr(socket, "create_connection", _no_network)
        yield


def _save_tokenizer(directory: Path) -> int:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<|startoftext|>", "<|endoftext|>", "[UNK]"]
    vocab = {token: i for i, token in enumerate(specials + WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>", special_tokens=[("<|startoftext|>", 0), ("<|endoftext|>", 1)]
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<|startoftext|>", eos_token="<|endoftext|>", unk_token="[UNK]",
        pad_token="<|endoftext|>", model_max_length=16,
    )
    wrapped.save_pretrained(str(directory))
    return len(vocab)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory, offline) -> Path:
    from transformers import CLIPConfig, CLIPModel

    directory = tmp_path_factory.mktemp("tiny_clip")
    vocab_size = _save_tokenizer(directory)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1,
        ),
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8,
        ),
        projection_dim=16,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = CLIPModel(config)
    model.save_pretrained(str(directory))
    (directory / "preprocessor_config.json").write_text(json.dumps({
        "do_resize": True, "size": {"shortest_edge": 32}, "do_center_crop": True, "crop_size": {"height": 32, "width": 32},
        "do_normalize": True, "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "rescale_factor": 1 / 255,
    }))
    return directory


@pytest.fixture(scope="module")
def vlm(clip_dir) -> VlmSuccessModel:
    config = VlmConfig(model_path=clip_dir, success_prompts=SUCCESS, failure_prompts=FAILURE)
    return VlmSuccessModel.from_config(config, CAMERAS)


def _variant(base: VlmSuccessModel, cameras=CAMERAS, success=SUCCESS, failure=FAILURE, reduction="mean") -> VlmSuccessModel:
    return VlmSuccessModel(base.model, base.tokenizer, base.model_path, cameras, success, failure, camera_reduction=reduction)


def _images(n: int, seed: int, hw=(48, 64)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {camera: rng.integers(0, 256, (n, *hw, 3), dtype=np.uint8) for camera in CAMERAS}


def _bright_dark_frames(n: int = 40, seed: int = 1) -> LabelledFrames:
    rng = np.random.default_rng(seed)
    success = np.arange(n) % 2 == 1
    images = {}
    for camera, hw in zip(CAMERAS, ((32, 32), (64, 64))):
        low = np.where(success, 150, 0)[:, None, None, None]
        images[camera] = (low + rng.integers(0, 100, (n, *hw, 3))).astype(np.uint8)
    return LabelledFrames(
        images=images, labels=success.astype(np.int64), episodes=np.arange(n, dtype=np.int64) // 10,
        state=np.zeros((n, len(STATE_QUANTITIES)), dtype=np.float32),
    )


def test_zero_shot_probabilities(vlm):
    assert isinstance(vlm, SuccessModel)
    assert vlm.kind == "vlm" and vlm.cameras == CAMERAS and vlm.threshold == 0.5 and vlm.image_hw is None
    images = _images(5, seed=0)
    p = vlm.predict_proba(images)
    assert p.shape == (5,) and p.dtype == np.float64
    assert np.all((p >= 0.0) & (p <= 1.0))
    np.testing.assert_array_equal(p, vlm.predict_proba(images))
    empty = vlm.predict_proba({c: np.zeros((0, 20, 30, 3), np.uint8) for c in CAMERAS})
    assert empty.shape == (0,) and empty.dtype == np.float64
    embeddings = vlm.embed(images)
    assert set(embeddings) == set(CAMERAS) and embeddings["front"].shape == (5, vlm.embedding_dim)
    np.testing.assert_allclose(np.linalg.norm(embeddings["wrist"], axis=1), 1.0, atol=1e-5)


def test_swapping_prompts_gives_complement(vlm):
    images = _images(6, seed=2)
    one = _variant(vlm, cameras=("front",), success=SUCCESS, failure=FAILURE[:1])
    swapped = _variant(vlm, cameras=("front",), success=FAILURE[:1], failure=SUCCESS)
    p = one.predict_proba(images)
    np.testing.assert_allclose(swapped.predict_proba(images), 1.0 - p, atol=1e-6)
    assert not np.allclose(p, 0.5)


def test_camera_reduction(vlm):
    images = _images(7, seed=3)
    per_camera = np.stack([_variant(vlm, cameras=(c,)).predict_proba(images) for c in CAMERAS])
    for reduction, expected in (("mean", per_camera.mean(0)), ("min", per_camera.min(0)), ("max", per_camera.max(0))):
        np.testing.assert_allclose(_variant(vlm, reduction=reduction).predict_proba(images), expected, atol=1e-6)
    with pytest.raises(RewardModelError, match="camera_reduction"):
        _variant(vlm, reduction="median")


def test_bad_images_name_the_camera(vlm):
    images = _images(2, seed=4)
    with pytest.raises(RewardModelError, match="wrist"):
        vlm.predict_proba({"front": images["front"]})
    with pytest.raises(RewardModelError, match="wrist"):
        vlm.predict_proba({"front": images["front"], "wrist": images["wrist"].astype(np.float32)})


def test_missing_or_wrong_model_directory(tmp_path, clip_dir):
    missing = tmp_path / "no_such_model"
    config = VlmConfig(model_path=missing, success_prompts=SUCCESS, failure_prompts=FAILURE)
    with pytest.raises(RewardModelError, match="no_such_model"):
        VlmSuccessModel.from_config(config, CAMERAS)

    from transformers import BertConfig, BertModel

    bert_dir = tmp_path / "bert"
    BertModel(BertConfig(vocab_size=16, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                         intermediate_size=8)).save_pretrained(str(bert_dir))
    with pytest.raises(RewardModelError, match="not a CLIP/SigLIP-like model") as error:
        VlmSuccessModel.from_pretrained(bert_dir, CAMERAS, SUCCESS, FAILURE)
    assert str(bert_dir) in str(error.value)


def test_few_shot_learns_bright_vs_dark(vlm):
    model = _variant(vlm)
    frames = _bright_dark_frames()
    summary = model.fit_few_shot(frames, steps=200, lr=0.05)
    assert summary["steps"] == 200 and summary["train_accuracy"] >= 0.95
    test = _bright_dark_frames(n=20, seed=7)
    p = model.predict_proba(test.images)
    assert p[test.is_success].min() > p[~test.is_success].max()


def test_save_load_round_trip(vlm, tmp_path):
    images = _images(4, seed=5)
    zero_shot = _variant(vlm, reduction="min")
    zero_shot.set_threshold(0.7)
    directory = zero_shot.save(tmp_path / "zero", extra={"note": "test"})
    meta = json.loads((directory / MODEL_FILE).read_text())
    assert meta["few_shot"] is False and meta["note"] == "test" and Path(meta["model_path"]).is_absolute()
    assert not (directory / WEIGHTS_FILE).exists()
    loaded = load_reward_model(directory)
    assert isinstance(loaded, VlmSuccessModel) and loaded.threshold == 0.7 and loaded.camera_reduction == "min"
    np.testing.assert_array_equal(loaded.predict_proba(images), zero_shot.predict_proba(images))

    few_shot = _variant(vlm)
    few_shot.fit_few_shot(_bright_dark_frames(), steps=50, lr=0.05)
    directory = few_shot.save(tmp_path / "few")
    loaded = VlmSuccessModel.load(directory)
    assert loaded.head is not None and loaded.threshold == 0.5
    np.testing.assert_array_equal(loaded.predict_proba(images), few_shot.predict_proba(images))


def test_bad_head_weights_name_the_file(vlm, tmp_path):
    import safetensors.torch

    model = _variant(vlm)
    model.fit_few_shot(_bright_dark_frames(n=10), steps=5, lr=0.05)
    directory = model.save(tmp_path / "model")
    weights = directory / WEIGHTS_FILE
    weights.write_bytes(b"not a safetensors file")
    with pytest.raises(RewardModelError, match=WEIGHTS_FILE):
        VlmSuccessModel.load(directory)
    safetensors.torch.save_file({"weight": torch.zeros(1, 3)}, str(weights))
    with pytest.raises(RewardModelError, match=WEIGHTS_FILE):
        VlmSuccessModel.load(directory)
    weights.unlink()
    with pytest.raises(RewardModelError, match=WEIGHTS_FILE):
        VlmSuccessModel.load(directory)


def test_siglip_with_processor_config(tmp_path, clip_dir):
    from transformers import SiglipConfig, SiglipModel

    directory = tmp_path / "tiny_siglip"
    vocab_size = _save_tokenizer(directory)
    config = SiglipConfig(
        text_config=dict(
            vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
            max_position_embeddings=16, pad_token_id=1, bos_token_id=0, eos_token_id=1,
        ),
        vision_config=dict(
            hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=16, patch_size=8,
        ),
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        SiglipModel(config).save_pretrained(str(directory))
    (directory / "processor_config.json").write_text(json.dumps({"image_processor": {
        "size": {"height": 16, "width": 16}, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2,
    }}))
    model = VlmSuccessModel.from_pretrained(directory, ("front",), SUCCESS, FAILURE[:1])
    swapped = VlmSuccessModel.from_pretrained(directory, ("front",), FAILURE[:1], SUCCESS)
    assert model.is_siglip and model.transform.resize_hw == (16, 16) and model.transform.mode == "bilinear"
    images = _images(3, seed=6)
    p = model.predict_proba(images)
    assert p.shape == (3,) and np.all((p >= 0.0) & (p <= 1.0))
    np.testing.assert_allclose(swapped.predict_proba(images), 1.0 - p, atol=1e-6)


def test_vlm_reward_train_eval_and_detector(clip_dir, tmp_path, repo_root):
    """The task-level workflow with a VLM source: few-shot head trained and the threshold
    calibrated on held-out episodes (reward train), checked (reward eval), then served."""
    from robot_stack.config import load_task_config
    from robot_stack.reward.detector import SuccessDetector
    from robot_stack.reward.frame_sets import FrameSetWriter
    from robot_stack.reward.workflow import evaluate_reward_model, train_reward_model

    frames = _bright_dark_frames(n=80, seed=5)
    writer = FrameSetWriter(tmp_path / "frames", "t", {c: frames.images[c].shape[1:3] for c in CAMERAS}, "ground_truth")
    for e in np.unique(frames.episodes):
        m = frames.episodes == e
        writer.add_episode({c: v[m] for c, v in frames.images.items()}, frames.labels[m], frames.state[m],
                           np.arange(int(m.sum())), int(e))
    writer.finish()
    config = load_task_config(repo_root / "hardware_configs" / "tasks" / "sim_pick_cube_state.yaml")
    vlm_config = VlmConfig(model_path=clip_dir, cameras=CAMERAS, success_prompts=SUCCESS, failure_prompts=FAILURE,
                           few_shot=True, few_shot_steps=200)
    reward = config.task.reward.model_copy(update={"source": "vlm", "vlm": vlm_config, "classifier_path": tmp_path / "model",
                                                   "target_precision": 0.95})
    config = config.model_copy(update={"task": config.task.model_copy(update={"reward": reward})})

    report = train_reward_model(config, [tmp_path / "frames"], progress=False)
    assert report.kind == "vlm" and report.summary["few_shot"]["train_accuracy"] >= 0.95
    meta = json.loads((tmp_path / "model" / MODEL_FILE).read_text())
    assert meta["few_shot"] is True and meta["threshold"] == report.threshold
    evaluation = evaluate_reward_model(config, [tmp_path / "frames"], tmp_path / "eval")
    assert evaluation.precision >= 0.95 and evaluation.recall >= 0.9, evaluation.summary()
    assert (tmp_path / "eval" / "pr_curve.png").is_file()
    detector = SuccessDetector.from_task(config.task, config.cameras)
    assert detector.model.kind == "vlm" and detector.threshold == report.threshold
    answer = detector.query({c: frames.images[c][1] for c in CAMERAS})
    assert answer.success and answer.probability >= report.threshold
