"""Frame sets on disk and in memory."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reward_fakes import synthetic_frames
from robot_stack.reward.frame_sets import FRAMES_FILE, FrameSetError, FrameSetWriter, LabelledFrames, concatenate, load_frames


def write_set(directory, frames: LabelledFrames):
    writer = FrameSetWriter(directory, "t", {c: frames.images[c].shape[1:3] for c in frames.cameras}, "ground_truth")
    for e in np.unique(frames.episodes):
        m = frames.episodes == e
        writer.add_episode({c: v[m] for c, v in frames.images.items()}, frames.labels[m], frames.state[m], frames.steps[m], int(e))
    return writer.finish()


def test_round_trip(tmp_path):
    frames = synthetic_frames(4, 6, seed=0)
    meta = write_set(tmp_path / "set", frames)
    assert meta["frames"] == 24 and meta["counts"] == frames.counts()
    loaded = load_frames(tmp_path / "set")
    for c in frames.cameras:
        np.testing.assert_array_equal(loaded.images[c], frames.images[c])
    np.testing.assert_array_equal(loaded.labels, frames.labels)
    np.testing.assert_array_equal(loaded.episodes, frames.episodes)
    np.testing.assert_allclose(loaded.state, frames.state)
    only_front = load_frames(tmp_path / "set", ["front"])
    assert only_front.cameras == ("front",)


def test_incomplete_or_broken_sets_are_named(tmp_path):
    frames = synthetic_frames(2, 3, seed=0)
    write_set(tmp_path / "set", frames)
    with pytest.raises(FrameSetError, match="cameras"):
        load_frames(tmp_path / "set", ["side"])
    (tmp_path / "set" / "episode_001.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(FrameSetError, match="episode_001.safetensors"):
        load_frames(tmp_path / "set")
    (tmp_path / "set" / FRAMES_FILE).unlink()
    with pytest.raises(FrameSetError, match="no frames.json"):
        load_frames(tmp_path / "set")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / FRAMES_FILE).write_text("{not json")
    with pytest.raises(FrameSetError, match="not valid JSON"):
        load_frames(tmp_path / "bad")


def test_rewriting_a_set_drops_the_old_episodes(tmp_path):
    write_set(tmp_path / "set", synthetic_frames(4, 3, seed=0))
    write_set(tmp_path / "set", synthetic_frames(2, 3, seed=1))
    assert len(load_frames(tmp_path / "set")) == 6
    assert len(json.loads((tmp_path / "set" / FRAMES_FILE).read_text())["episodes"]) == 2


def test_bad_frames_are_refused():
    with pytest.raises(FrameSetError, match="uint8"):
        LabelledFrames({"front": np.zeros((2, 8, 8, 3), np.float32)}, np.zeros(2, np.int64), np.zeros(2, np.int64), np.zeros((2, 9)))
    with pytest.raises(FrameSetError, match="labels must index"):
        LabelledFrames({"front": np.zeros((2, 8, 8, 3), np.uint8)}, np.array([0, 2]), np.zeros(2, np.int64), np.zeros((2, 9)))


def test_split_by_episode_keeps_episodes_whole_and_both_kinds_on_each_side():
    frames = synthetic_frames(12, 5, seed=0)
    rest, held = frames.split_by_episode(0.25, seed=3)
    assert set(np.unique(rest.episodes)).isdisjoint(np.unique(held.episodes))
    assert len(rest) + len(held) == len(frames)
    assert 3 <= np.unique(held.episodes).size <= 4  # a quarter of each kind, rounded
    for side in (rest, held):
        assert side.is_success.any() and not side.is_success.all()


def test_concatenate_keeps_episodes_apart():
    a, b = synthetic_frames(2, 3, seed=0), synthetic_frames(3, 3, seed=1)
    both = concatenate([a, b])
    assert len(both) == 15 and np.unique(both.episodes).size == 5
