"""Replay buffers: observations stored once, next observations right at every episode end,
eviction without stale frames, the demo/online mix, files, and input checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from learner.replay import (
    Batch,
    MixedReplay,
    ReplayBuffer,
    ReplayFileError,
    concat,
    naive_bytes_per_transition,
)
from robot_stack.config.schema import TrainingConfig
from robot_stack.data.spec import ArraySpec

torch.set_num_threads(1)

STATE_DIM = 3
ACTION_DIM = 2
SPEC = {"state": ArraySpec("<f4", (STATE_DIM,)), "images/front": ArraySpec("|u1", (2, 2, 3))}


def observation(stream: int, episode: int, step: int) -> dict[str, np.ndarray]:
    """An observation that names where it comes from: state = (stream, episode, step), image = step."""
    return {
        "state": np.array([stream, episode, step], np.float32),
        "images/front": np.full((2, 2, 3), (7 * episode + step) % 256, np.uint8),
    }


def episode(
    length: int, stream: int = 0, episode_id: int = 0, end: str = "terminated", first_step: int = 0, interventions=None
) -> dict[str, np.ndarray]:
    """Transitions of steps first_step..first_step+length-1 of one episode; the last one ends it
    by `end` ("terminated", "truncated" or "none": the episode goes on in a later batch)."""
    steps = range(first_step, first_step + length)
    obs = [observation(stream, episode_id, s) for s in steps]
    nxt = [observation(stream, episode_id, s + 1) for s in steps]
    arrays = {f"observations/{k}": np.stack([o[k] for o in obs]) for k in SPEC}
    arrays.update({f"next_observations/{k}": np.stack([o[k] for o in nxt]) for k in SPEC})
    arrays["actions"] = np.array([[episode_id, s] for s in steps], np.float32)
    arrays["rewards"] = np.array([0.5 * s for s in steps], np.float32)
    for flag in ("terminated", "truncated", "gripper_changed"):
        arrays[flag] = np.zeros(length, bool)
    arrays["interventions"] = np.zeros(length, bool) if interventions is None else np.asarray(interventions, bool)
    if end != "none":
        arrays[end][-1] = True
    return arrays


def sampled_rows(batch: Batch) -> list[dict]:
    return [
        {
            "obs": batch.observations["state"][i].tolist(),
            "obs_image": int(batch.observations["images/front"][i, 0, 0, 0]),
            "next": batch.next_observations["state"][i].tolist(),
            "next_image": int(batch.next_observations["images/front"][i, 0, 0, 0]),
            "action": batch.actions[i].tolist(),
            "terminated": float(batch.terminated[i]),
            "intervention": bool(batch.interventions[i]),
        }
        for i in range(len(batch))
    ]


def sample_all(buffer, size: int = 400, seed: int = 0) -> list[dict]:
    return sampled_rows(buffer.sample(size, np.random.default_rng(seed)))


def test_sample_returns_the_added_transition_exactly():
    buffer = ReplayBuffer(SPEC, ACTION_DIM, capacity=10)
    arrays = episode(1, stream=2, episode_id=3, first_step=4)
    arrays["gripper_changed"][0] = True
    buffer.add(arrays, stream="a")

    batch = buffer.sample(5, np.random.default_rng(0))

    assert len(buffer) == 1
    for key in SPEC:
        assert torch.equal(batch.observations[key], torch.from_numpy(arrays[f"observations/{key}"]).expand(5, *SPEC[key].shape))
        assert torch.equal(batch.next_observations[key], torch.from_numpy(arrays[f"next_observations/{key}"]).expand(5, *SPEC[key].shape))
    assert batch.observations["images/front"].dtype == torch.uint8
    assert batch.actions.tolist() == [[3.0, 4.0]] * 5
    assert batch.rewards.tolist() == [2.0] * 5
    assert batch.terminated.tolist() == [1.0] * 5 and batch.terminated.dtype == torch.float32
    assert batch.gripper_changed.tolist() == [1.0] * 5 and batch.gripper_changed.dtype == torch.float32
    assert batch.interventions.tolist() == [False] * 5 and batch.interventions.dtype == torch.bool


def test_an_episode_stores_each_observation_once():
    buffer = ReplayBuffer(SPEC, ACTION_DIM, capacity=100)

    buffer.add(episode(4, end="none"), stream="a")
    buffer.add(episode(6, first_step=4), stream="a")  # the same episode, in a second batch

    assert len(buffer) == 10
    assert buffer.frames_added == 11  # 10 transitions, 11 distinct observations


@pytest.mark.parametrize("end, terminated", [("terminated", 1.0), ("truncated", 0.0)])
def test_next_observation_at_an_episode_end_is_the_final_observation(end, terminated):
    buffer = ReplayBuffer(SPEC, ACTION_DIM, capacity=100)
    buffer.add(episode(3, episode_id=0, end=end), stream="a")
    buffer.add(episode(3, episode_id=1), stream="a")  # its first observation is not episode 0's end

    rows = sample_all(buffer)

    last = [r for r in rows if r["obs"] == [0, 0, 2]]
    assert last and all(r["next"] == [0, 0, 3] and r["next_image"] == 3 for r in last)
    assert all(r["terminated"] == terminated for r in last)  # a truncation bootstraps
    for r in rows:
        assert r["next"] == [r["obs"][0], r["obs"][1], r["obs"][2] + 1]
        assert r["terminated"] == (terminated if r["obs"] == [0, 0, 2] else 1.0 if r["obs"] == [0, 1, 2] else 0.0)
    assert {tuple(r["obs"]) for r in rows} == {(0, e, s) for e in (0, 1) for s in range(3)}
    assert buffer.frames_added == 8 and buffer.continuity_mismatches == 0  # episode 1 stored its own first frame


def test_interleaved_streams_keep_their_own_continuity():
    buffer = ReplayBuffer(SPEC, ACTION_DIM, capacity=100)
    for first in (0, 2, 4):
        end = "truncated" if first == 4 else "none"
        buffer.add(episode(2, stream=1, first_step=first, end=end), stream="actor-1")
        buffer.add(episode(2, stream=2, first_step=first, end=end), stream="actor-2")

    rows = sample_all(buffer)

    assert len(buffer) == 12 and buffer.frames_added == 14 and buffer.continuity_mismatches == 0
    assert {tuple(r["obs"]) for r in rows} == {(a, 0, s) for a in (1, 2) for s in range(6)}
    for r in rows:
        assert r["next"] == [r["obs"][0], 0, r["obs"][2] + 1]
        assert r["next_image"] == r["obs_image"] + 1


def test_a_stream_that_breaks_continuity_gets_its_observation_stored():
    buffer = ReplayBuffer(SPEC, ACTION_DIM, capacity=100)
    buffer.add(episode(2, end="none"), stream="a")
    buffer.add(episode(2, first_step=5), stream="a")  # claims to continue, but starts elsewhere

    rows = sample_all(buffer)

    assert buffer.continuity_mismatches == 1
    assert {(r["obs"][2], r["next"][2]) for r in rows} == {(0, 1), (1, 2), (5, 6), (6, 7)}


def test_break_continuity_stores_the_next_observation_without_counting_a_mismatch():
    buffer = ReplayBuffer(SPEC, ACTION_DIM, capacity=100)
    buffer.add(episode(2, end="none"), stream="a")

    buffer.break_continuity("a")
    buffer.add(episode(2, first_step=5), stream="a")

    assert buffer.continuity_mismatches == 0 and buffer.frames_added == 6
    assert {(r["obs"][2], r["next"][2]) for r in sample_all(buffer)} == {(0, 1), (1, 2), (5, 6), (6, 7)}


def test_a_full_ring_keeps_the_latest_capacity_transitions():
    buffer = ReplayBuffer(SPEC, ACTION_DIM, capacity=8, frame_capacity=20)
    for episode_id in range(5):
        buffer.add(episode(3, episode_id=episode_id), stream="a")

    rows = sample_all(buffer)

    assert len(buffer) == 8
    kept = {(r["obs"][1], r["obs"][2]) for r in rows}
    assert kept == {(e, s) for e in range(5) for s in range(3)} - {(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0)}


def test_a_stream_whose_last_frame_is_about_to_be_overwritten_stores_its_observation_again():
    buffer = ReplayBuffer(SPEC, ACTION_DIM, capacity=10, frame_capacity=6)
    buffer.add(episode(1, stream=1, end="none"), stream="a")  # frames 0, 1
    buffer.add(episode(3, stream=2, end="none"), stream="b")  # frames 2..5
    buffer.add(episode(1, stream=2, first_step=3, end="none"), stream="b")  # frame 6: a's frame 1 is now the oldest

    buffer.add(episode(1, stream=1, first_step=1, end="none"), stream="a")

    rows = sample_all(buffer)
    assert [1, 0, 1] in [r["obs"] for r in rows]
    assert all(r["next"] == [r["obs"][0], 0, r["obs"][2] + 1] for r in rows)


segments = st.lists(st.tuples(st.integers(1, 4), st.sampled_from(["terminated", "truncated", "none"])), min_size=1, max_size=3)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    capacity=st.integers(1, 12),
    extra_frames=st.integers(0, 6),
    plan=st.lists(st.tuples(st.integers(0, 2), segments), min_size=1, max_size=20),
)
def test_wraparound_never_samples_a_stale_frame(capacity, extra_frames, plan):
    """Random episodes from three interleaved streams into a small ring, one or more episode
    pieces per batch: every sampled (obs, next_obs, action) equals what a naive buffer storing
    both would hold, and only the latest `capacity` transitions appear."""
    buffer = ReplayBuffer(SPEC, ACTION_DIM, capacity=capacity, frame_capacity=2 + extra_frames)
    reference = []  # (stream, episode, step) of every transition added, in order
    progress = {s: [0, 0] for s in range(3)}  # stream -> [episode, next step]
    for stream, pieces in plan:
        parts = []
        for i, (length, end) in enumerate(pieces):
            if end == "none" and i < len(pieces) - 1:
                end = "truncated"  # only a batch's last piece may leave its episode open
            episode_id, first = progress[stream]
            parts.append(episode(length, stream=stream, episode_id=episode_id, first_step=first, end=end))
            reference += [(stream, episode_id, s) for s in range(first, first + length)]
            progress[stream] = [episode_id, first + length] if end == "none" else [episode_id + 1, 0]
        arrays = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
        arrays["actions"][:, 0] = np.arange(len(reference) - len(arrays["rewards"]), len(reference))  # global index
        buffer.add(arrays, stream=f"s{stream}")

    last_add = len(arrays["rewards"])
    assert 1 <= len(buffer) <= min(capacity, len(reference))
    if last_add <= min(capacity, buffer.frame_capacity // 2):  # the last add() fits: all of it is kept
        assert len(buffer) >= last_add
    assert buffer.continuity_mismatches == 0
    for row in sample_all(buffer, size=64):
        index = int(row["action"][0])
        stream, episode_id, step = reference[index]
        assert index > len(reference) - 1 - capacity
        assert row["obs"] == [stream, episode_id, step]
        assert row["next"] == [stream, episode_id, step + 1]
        assert row["obs_image"] == (7 * episode_id + step) % 256
        assert row["next_image"] == (7 * episode_id + step + 1) % 256


def test_mixed_replay_takes_demo_ratio_of_each_batch_from_demos():
    mixed = MixedReplay(ReplayBuffer(SPEC, ACTION_DIM, 100), ReplayBuffer(SPEC, ACTION_DIM, 100), demo_ratio=0.25)
    mixed.add(episode(10, episode_id=0), stream="actor")
    mixed.add_demos(episode(10, episode_id=1))

    batch = mixed.sample(100, np.random.default_rng(0))

    episodes = batch.observations["state"][:, 1]
    assert int((episodes == 1).sum()) == 25 and int((episodes == 0).sum()) == 75


def test_mixed_replay_samples_whichever_buffer_has_data():
    mixed = MixedReplay(ReplayBuffer(SPEC, ACTION_DIM, 100), ReplayBuffer(SPEC, ACTION_DIM, 100), demo_ratio=0.5)
    with pytest.raises(RuntimeError, match="both replay buffers .* are empty"):
        mixed.sample(4, np.random.default_rng(0))

    mixed.add(episode(3), stream="actor")
    assert mixed.sample(8, np.random.default_rng(0)).observations["state"][:, 1].tolist() == [0] * 8

    only_demos = MixedReplay(ReplayBuffer(SPEC, ACTION_DIM, 100), ReplayBuffer(SPEC, ACTION_DIM, 100), demo_ratio=0.5)
    only_demos.add_demos(episode(3, episode_id=4))
    assert only_demos.sample(8, np.random.default_rng(0)).observations["state"][:, 1].tolist() == [4] * 8


def test_interventions_go_to_both_buffers_with_their_own_next_observations():
    mixed = MixedReplay.from_config(TrainingConfig(online_buffer_capacity=100, demo_buffer_capacity=100), SPEC, ACTION_DIM)
    mask = [False, True, True, False, True, True]
    mixed.add(episode(6, end="none", interventions=mask), stream="actor")
    mixed.add(episode(3, first_step=6, interventions=[True, True, False]), stream="actor")

    demo_rows = sample_all(mixed.demo)

    assert len(mixed.online) == 9 and len(mixed.demo) == 6
    assert {(r["obs"][2], r["next"][2]) for r in demo_rows} == {(1, 2), (2, 3), (4, 5), (5, 6), (6, 7), (7, 8)}
    assert all(r["intervention"] and r["next_image"] == r["obs_image"] + 1 for r in demo_rows)
    assert mixed.demo.continuity_mismatches == 0
    assert mixed.demo.frames_added == 8  # runs 1-2 and 4-7 (across the batches): 3 + 5 frames


def test_save_and_load_restore_samples_and_continuity(tmp_path: Path):
    buffer = ReplayBuffer(SPEC, ACTION_DIM, capacity=10, frame_capacity=14)
    for episode_id in range(3):
        buffer.add(episode(4, episode_id=episode_id), stream="a")
    buffer.add(episode(2, episode_id=3, end="none"), stream="a")
    buffer.save(tmp_path / "replay")
    buffer.save(tmp_path / "replay")  # a second save replaces the first

    restored = ReplayBuffer(SPEC, ACTION_DIM, capacity=10, frame_capacity=14)
    restored.load(tmp_path / "replay")

    assert len(list((tmp_path / "replay").glob("*.npy"))) == 2 + 2 + 2 + 4  # frames, ids, actions+rewards, flags
    assert restored.counters() == buffer.counters() and len(restored) == len(buffer)
    assert sample_all(restored, seed=3) == sample_all(buffer, seed=3)
    restored.add(episode(2, episode_id=3, first_step=2), stream="a")
    assert restored.frames_added == buffer.frames_added + 2  # continued the episode: no new first frame
    assert restored.continuity_mismatches == 0


def test_load_names_the_corrupt_file(tmp_path: Path):
    buffer = ReplayBuffer(SPEC, ACTION_DIM, capacity=10)
    buffer.add(episode(5), stream="a")
    buffer.save(tmp_path)
    metadata = json.loads((tmp_path / "replay.json").read_text())
    actions = tmp_path / metadata["arrays"]["actions"]["file"]
    data = bytearray(actions.read_bytes())
    data[-1] ^= 0xFF
    actions.write_bytes(bytes(data))

    fresh = ReplayBuffer(SPEC, ACTION_DIM, capacity=10)
    with pytest.raises(ReplayFileError, match=f"{actions.name}.*CRC32"):
        fresh.load(tmp_path)
    assert len(fresh) == 0

    actions.write_bytes(bytes(data[:-8]))
    with pytest.raises(ReplayFileError, match=f"{actions.name}.*truncated"):
        fresh.load(tmp_path)
    (tmp_path / "replay.json").write_text("{not json")
    with pytest.raises(ReplayFileError, match="replay.json"):
        fresh.load(tmp_path)


def test_load_refuses_a_save_for_another_spec(tmp_path: Path):
    ReplayBuffer(SPEC, ACTION_DIM, capacity=10).save(tmp_path)
    other = {"state": ArraySpec("<f4", (4,)), "images/front": SPEC["images/front"]}

    with pytest.raises(ReplayFileError, match=r"replay.json.*'state' is \['<f4', \[3\]\] in the save, \['<f4', \[4\]\] here"):
        ReplayBuffer(other, ACTION_DIM, capacity=10).load(tmp_path)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.pop("rewards"), r"lacks \['rewards'\]"),
        (lambda a: a.update(actions=np.zeros((2, 3), np.float32)), r"'actions' has shape \(2, 3\), the spec says \(N, 2\)"),
        (
            lambda a: a.update({"observations/images/front": np.zeros((2, 4, 4, 3), np.uint8)}),
            r"'observations/images/front' has shape \(2, 4, 4, 3\), the spec says \(N, 2, 2, 3\)",
        ),
        (lambda a: a.update({"observations/state": a["observations/state"].astype(np.float64)}), "dtype float64, the spec says float32"),
        (lambda a: a["next_observations/state"].__setitem__((1, 2), np.nan), "'next_observations/state' row 1 holds NaN"),
        (lambda a: a["actions"].__setitem__((1, 0), np.inf), "'actions' row 1 holds NaN or inf"),
        (lambda a: a["rewards"].__setitem__(0, np.nan), "'rewards' row 0 holds NaN"),
        (lambda a: a.update(terminated=np.zeros(3, bool)), "'terminated' has 3 transitions"),
    ],
)
def test_a_bad_batch_is_rejected_whole_with_the_key_named(change, message):
    buffer = ReplayBuffer(SPEC, ACTION_DIM, capacity=10)
    arrays = episode(2)
    change(arrays)

    with pytest.raises(ValueError, match=message):
        buffer.add(arrays, stream="a")
    assert len(buffer) == 0 and buffer.frames_added == 0


def test_two_cameras_take_half_the_bytes_of_obs_and_next_obs_and_an_eighth_of_float32():
    spec = {
        "state": ArraySpec("<f4", (13,)),
        "images/front": ArraySpec("|u1", (128, 128, 3)),
        "images/wrist": ArraySpec("|u1", (128, 128, 3)),
    }
    buffer = ReplayBuffer(spec, 7, capacity=160)

    ours = buffer.bytes_per_transition()

    assert buffer.nbytes == sum(a.nbytes for a in buffer.frames.values()) + 160 * (8 + 8 + 4 * 7 + 4 + 4)
    assert 0.5 < ours / naive_bytes_per_transition(spec, 7) < 0.56
    assert 0.12 < ours / naive_bytes_per_transition(spec, 7, observation_dtype=np.float32) < 0.14


def test_concat_and_to_keep_rows_and_dtypes():
    buffer = ReplayBuffer(SPEC, ACTION_DIM, capacity=10)
    buffer.add(episode(3), stream="a")
    first, second = buffer.sample(2, np.random.default_rng(0)), buffer.sample(3, np.random.default_rng(1))

    joined = concat([first, second]).to("cpu")

    assert len(joined) == 5
    assert torch.equal(joined.observations["images/front"][2:], second.observations["images/front"])
    assert joined.observations["images/front"].dtype == torch.uint8 and joined.interventions.dtype == torch.bool
