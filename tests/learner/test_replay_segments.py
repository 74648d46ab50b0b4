"""Incremental replay checkpoints: each checkpoint appends only the rows added since the last,
and loading reassembles the buffer exactly, ring wraparound included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from learner.replay import ReplayBuffer, ReplayFileError
from robot_stack.data.spec import ArraySpec
from learner.replay_segments import SegmentLog, remove_unreferenced_segments

from test_replay import ACTION_DIM, SPEC, episode, sample_all

torch.set_num_threads(1)


def live_rows(buffer: ReplayBuffer) -> dict[str, np.ndarray]:
    """Every row a sample can reach, by id (rows not yet written or overwritten excluded)."""
    frames = np.arange(max(0, buffer.frames_added - buffer.frame_capacity), buffer.frames_added) % buffer.frame_capacity
    rows = np.arange(max(0, buffer.total_added - buffer.capacity), buffer.total_added) % buffer.capacity
    live = {f"frames/{key}": array[frames] for key, array in buffer.frames.items()}
    live.update(obs_frame=buffer.obs_frame[rows], next_frame=buffer.next_frame[rows], actions=buffer.actions[rows],
                rewards=buffer.rewards[rows])
    live.update({f"flags/{flag}": values[rows] for flag, values in buffer.flags.items()})
    return live


def assert_same_buffer(restored: ReplayBuffer, original: ReplayBuffer) -> None:
    assert restored.counters() == original.counters() and len(restored) == len(original)
    expected = live_rows(original)
    for name, rows in live_rows(restored).items():
        np.testing.assert_array_equal(rows, expected[name], err_msg=name)
    if len(original):
        assert sample_all(restored, seed=5) == sample_all(original, seed=5)


def small_buffer() -> ReplayBuffer:
    return ReplayBuffer(SPEC, ACTION_DIM, capacity=10, frame_capacity=14)


def test_segments_round_trip_exactly_across_checkpoints_with_ring_wraparound(tmp_path: Path):
    buffer = small_buffer()
    log = SegmentLog(buffer, tmp_path / "store" / "online")
    manifests = []
    # Episodes of 3-5 steps, one stream continuing across batches: the 10-row ring and the
    # 14-frame ring wrap several times over the checkpoints.
    rng = np.random.default_rng(0)
    for checkpoint in range(8):
        for episode_id in range(int(rng.integers(1, 4))):
            length = int(rng.integers(3, 6))
            buffer.add(episode(length, episode_id=10 * checkpoint + episode_id, end="none"), stream="a")
            buffer.add(episode(1, episode_id=10 * checkpoint + episode_id, first_step=length), stream="a")
        manifests.append((log.append(log.position()), {**buffer.counters()}, live_rows(buffer)))

        restored = small_buffer()
        SegmentLog(restored, tmp_path / "store" / "online").load(manifests[-1][0], f"checkpoint {checkpoint}")
        assert_same_buffer(restored, buffer)
    assert buffer.total_added > 3 * buffer.capacity and buffer.frames_added > 3 * buffer.frame_capacity
    # An older checkpoint still loads as it was (its segments are not rewritten by later ones).
    old_manifest, old_counters, old_rows = manifests[-2]
    restored = small_buffer()
    SegmentLog(restored, tmp_path / "store" / "online").load(old_manifest, "an older checkpoint")
    assert restored.counters() == old_counters
    for name, rows in live_rows(restored).items():
        np.testing.assert_array_equal(rows, old_rows[name], err_msg=name)


def test_each_checkpoint_appends_only_the_rows_added_since_the_last(tmp_path: Path):
    buffer = ReplayBuffer(SPEC, ACTION_DIM, capacity=1000)
    log = SegmentLog(buffer, tmp_path / "online")
    for episode_id in range(20):
        buffer.add(episode(10, episode_id=episode_id), stream="a")
    log.append(log.position())
    first = {path.name: path.stat().st_size for path in (tmp_path / "online").iterdir()}
    buffer.add(episode(10, episode_id=99), stream="a")
    manifest = log.append(log.position())
    added = [path for path in (tmp_path / "online").iterdir() if path.name not in first]
    assert len(added) == 1 and len(manifest["segments"]) == 2
    assert added[0].stat().st_size * 15 < sum(first.values())  # 11 frames and 10 rows against 220 and 200
    assert manifest["segments"][-1]["frames"] == [220, 231] and manifest["segments"][-1]["transitions"] == [200, 210]


def test_a_resumed_log_continues_appending_where_the_checkpoint_left_off(tmp_path: Path):
    buffer = small_buffer()
    log = SegmentLog(buffer, tmp_path / "online")
    buffer.add(episode(4, episode_id=0, end="none"), stream="a")
    manifest = log.append(log.position())

    resumed = small_buffer()
    resumed_log = SegmentLog(resumed, tmp_path / "online")
    resumed_log.load(manifest, "checkpoint")
    for target in (buffer, resumed):
        target.add(episode(3, episode_id=0, first_step=4), stream="a")
    second = resumed_log.append(resumed_log.position())

    assert second["segments"][-1]["frames"] == [5, 8] and resumed.continuity_mismatches == 0
    restored = small_buffer()
    SegmentLog(restored, tmp_path / "online").load(second, "second checkpoint")
    assert_same_buffer(restored, buffer)


def test_a_truncated_segment_is_refused_with_its_file_named(tmp_path: Path):
    buffer = small_buffer()
    log = SegmentLog(buffer, tmp_path / "online")
    buffer.add(episode(5), stream="a")
    manifest = log.append(log.position())
    segment = tmp_path / "online" / manifest["segments"][0]["file"]
    segment.write_bytes(segment.read_bytes()[:-3])

    restored = small_buffer()
    with pytest.raises(ReplayFileError, match=segment.name):
        SegmentLog(restored, tmp_path / "online").load(manifest, "checkpoint")
    assert restored.total_added == 0 and len(restored) == 0


def test_a_manifest_missing_a_segment_is_refused(tmp_path: Path):
    buffer = small_buffer()
    log = SegmentLog(buffer, tmp_path / "online")
    buffer.add(episode(3), stream="a")
    log.append(log.position())
    buffer.add(episode(3, episode_id=1), stream="a")
    manifest = log.append(log.position())
    manifest["segments"] = manifest["segments"][1:]

    with pytest.raises(ReplayFileError, match="no segment holds frames 0-4"):
        SegmentLog(small_buffer(), tmp_path / "online").load(manifest, "checkpoint")


def test_a_ring_that_wraps_over_rows_being_written_refuses_the_segment(tmp_path: Path):
    buffer = small_buffer()
    log = SegmentLog(buffer, tmp_path / "online")
    buffer.add(episode(4), stream="a")
    position = log.position()
    # Training went on adding while the writer copied: a full frame ring later, those rows are gone.
    buffer.add(episode(4, episode_id=1), stream="a")
    buffer.add(episode(4, episode_id=2), stream="a")
    buffer.add(episode(4, episode_id=3), stream="a")

    with pytest.raises(RuntimeError, match="wrapped"):
        log.append(position)
    assert list((tmp_path / "online").iterdir()) == []


def test_only_unreferenced_segments_are_removed(tmp_path: Path):
    buffer = small_buffer()
    log = SegmentLog(buffer, tmp_path / "store" / "online")
    buffer.add(episode(3), stream="a")
    first = log.append(log.position())
    for episode_id in range(1, 5):  # 16 rows and 20 frames: the first segment's rows are all overwritten
        buffer.add(episode(4, episode_id=episode_id), stream="a")
    second = log.append(log.position())
    assert [entry["file"] for entry in second["segments"]] != [entry["file"] for entry in first["segments"]]
    (tmp_path / "store" / "online" / "seg-0123456789abcdef.bin.tmp").write_bytes(b"cut short")

    removed = remove_unreferenced_segments(tmp_path / "store", [{"online": second}])

    assert sorted(p.name for p in removed) == sorted([first["segments"][0]["file"], "seg-0123456789abcdef.bin.tmp"])
    assert [p.name for p in (tmp_path / "store" / "online").iterdir()] == [second["segments"][0]["file"]]


class TwoViewFeatures:
    """A frame encoder keeping two float16 views of each image (as stored crops do)."""

    views = 2
    keys = ("images/front",)

    def stored_spec(self, key):
        return ArraySpec("<f2", (2, 3, 2, 2))

    def encode(self, key, frames):
        base = frames[:, :2, :2, :].transpose(0, 3, 1, 2).astype(np.float16)
        return np.stack([base, base + 0.5], axis=1)


def test_cached_feature_frames_with_several_views_round_trip_exactly(tmp_path: Path):
    buffer = ReplayBuffer(SPEC, ACTION_DIM, capacity=10, frame_capacity=14, frame_encoder=TwoViewFeatures())
    log = SegmentLog(buffer, tmp_path / "online")
    for checkpoint in range(4):
        buffer.add(episode(4, episode_id=checkpoint), stream="a")
        manifest = log.append(log.position())

    restored = ReplayBuffer(SPEC, ACTION_DIM, capacity=10, frame_capacity=14, frame_encoder=TwoViewFeatures())
    SegmentLog(restored, tmp_path / "online").load(manifest, "checkpoint")

    assert restored.counters() == buffer.counters()
    np.testing.assert_array_equal(restored.frames["images/front"], buffer.frames["images/front"])
