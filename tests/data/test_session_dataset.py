"""A session's episodes as a LeRobotDataset v3: written from a writer thread, appended to across
restarts, intact after a killed writer, and read back in the transition layout."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from robot_stack.cli import main
from robot_stack.data.lerobot_v3 import DatasetError, decode_video, read_dataset, validate_dataset
from robot_stack.data.session_dataset import EpisodeRecorder, read_episode_transitions
from robot_stack.data.spec import action_spec_of, observation_spec_of

REPO = Path(__file__).resolve().parents[2]
STATE_ONLY = observation_spec_of((5,), {})
TWO_CAMERAS = observation_spec_of((5,), {"front": (32, 32, 3), "wrist": (32, 32, 3)})
ACTIONS = action_spec_of(4)


def make_episode(rng: np.random.Generator, steps: int, observation_spec, terminated: bool) -> dict[str, np.ndarray]:
    """One episode in the transition layout whose observations chain (next = the following one);
    camera frames are smooth moving gradients, which a video codec keeps closely."""
    states = rng.normal(size=(steps + 1, 5)).astype(np.float32)
    episode = {
        "observations/state": states[:-1],
        "next_observations/state": states[1:],
        "actions": rng.uniform(-1, 1, (steps, 4)).astype(np.float32),
        "rewards": rng.normal(size=steps).astype(np.float32),
        "terminated": np.arange(steps) == steps - 1 if terminated else np.zeros(steps, bool),
        "truncated": np.zeros(steps, bool) if terminated else np.arange(steps) == steps - 1,
        "interventions": rng.random(steps) < 0.3,
        "gripper_changed": rng.random(steps) < 0.2,
    }
    y, x = np.mgrid[0:32, 0:32]
    for number, key in enumerate(k for k in observation_spec if k.startswith("images/")):
        shift = rng.integers(0, 60)
        frames = np.asarray([np.stack([(x * 4 + t * 6 + shift) % 256, (y * 4 + t * 3 + 40 * number) % 256, ((x + y) * 3) % 256], -1)
                             for t in range(steps + 1)], np.uint8)
        episode[f"observations/{key}"] = frames[:-1]
        episode[f"next_observations/{key}"] = frames[1:]
    return episode


def detail(number: int, success: bool, **extra) -> dict:
    return {"episode": number, "success": int(success), "label": "detector" if number % 2 else "operator", "deterministic": 0,
            "intervention_steps": 2, "weights_version": 10 + number, "env_steps_total": 100 * number, "return": 1.5 * number,
            "length": 7, **extra}


def recorder(root: Path, observation_spec=STATE_ONLY, **options) -> EpisodeRecorder:
    return EpisodeRecorder(root, "pick the cube", observation_spec, ACTIONS, 10.0, **options)


def test_a_state_only_session_reads_back_exactly_with_each_episodes_outcome(tmp_path):
    rng = np.random.default_rng(0)
    episodes = [(make_episode(rng, steps, STATE_ONLY, terminated=steps != 6), detail(n, steps != 6, true_success=1))
                for n, steps in enumerate((4, 6, 9))]
    with recorder(tmp_path / "dataset", state_names=[f"s{i}" for i in range(5)]) as writer:
        for transitions, outcome in episodes:
            writer.add_episode(transitions, outcome)

    read = list(read_episode_transitions(tmp_path / "dataset"))

    assert [outcome for _, outcome in read] == [outcome for _, outcome in episodes]
    for (written, _), (back, _) in zip(episodes, read):
        assert sorted(back) == sorted(written)
        for key in written:
            np.testing.assert_array_equal(back[key], written[key], err_msg=key)
            assert back[key].dtype == written[key].dtype
    assert validate_dataset(tmp_path / "dataset") == []
    dataset = read_dataset(tmp_path / "dataset")
    assert dataset.features["observation.state"]["names"] == ["s0", "s1", "s2", "s3", "s4"]
    assert [row["outcome/success"] for row in dataset.episodes_meta] == [True, False, True]
    assert [row["outcome/label"] for row in dataset.episodes_meta] == ["operator", "detector", "operator"]
    frames = next(dataset.iter_episodes()).frames
    assert frames["policy_version"].tolist() == [10] * 4 and frames["next.success"].tolist() == [False] * 3 + [True]


def test_a_session_with_two_cameras_reads_back_close_and_validates_as_rldg_validate_checks_it(tmp_path, capsys):
    rng = np.random.default_rng(1)
    terminated, cut_short = make_episode(rng, 8, TWO_CAMERAS, terminated=True), make_episode(rng, 6, TWO_CAMERAS, terminated=False)
    versions = np.array([3, 3, 3, 4, 4, 5], np.int64)
    with recorder(tmp_path / "dataset", TWO_CAMERAS) as writer:
        writer.add_episode(terminated, detail(0, True))
        writer.add_episode({**cut_short, "policy_version": versions}, detail(1, False))

    (first, _), (second, _) = read_episode_transitions(tmp_path / "dataset")

    assert main(["rldg", "validate", str(tmp_path / "dataset")]) == 0
    assert "valid LeRobotDataset v3.0" in capsys.readouterr().out
    # The cut-short episode's last next image was never stored: that transition is dropped.
    assert len(first["actions"]) == 8 and len(second["actions"]) == 5
    for written, back in ((terminated, first), (cut_short, second)):
        steps = len(back["actions"])
        for key, value in back.items():
            if "images/" in key:
                assert value.dtype == np.uint8 and value.shape == written[key][:steps].shape
                if key.startswith("observations/") or written["terminated"][-1] == 0:
                    assert np.abs(value.astype(int) - written[key][:steps]).mean() < 6, key
            else:
                np.testing.assert_array_equal(value, written[key][:steps], err_msg=key)
    np.testing.assert_array_equal(first["next_observations/images/front"][:-1], first["observations/images/front"][1:])
    frames = list(read_dataset(tmp_path / "dataset").iter_episodes(cameras=[]))
    assert frames[1].frames["policy_version"].tolist() == versions.tolist()


def test_a_reopened_dataset_appends_with_contiguous_episodes_and_none_twice(tmp_path):
    rng = np.random.default_rng(2)
    for lifetime in range(2):
        with recorder(tmp_path / "dataset", TWO_CAMERAS, flush_every_episodes=2) as writer:
            for number in range(3):
                writer.add_episode(make_episode(rng, 4 + number, TWO_CAMERAS, terminated=True), detail(3 * lifetime + number, True))

    dataset = read_dataset(tmp_path / "dataset")
    outcomes = [outcome for _, outcome in read_episode_transitions(tmp_path / "dataset")]

    assert validate_dataset(tmp_path / "dataset") == []
    assert [row["episode_index"] for row in dataset.episodes_meta] == list(range(6))
    assert [outcome["episode"] for outcome in outcomes] == list(range(6))
    assert dataset.info["total_frames"] == 2 * (4 + 5 + 6)
    assert [row["dataset_from_index"] for row in dataset.episodes_meta] == [0, 4, 9, 15, 19, 24]


KILLED_WRITER = textwrap.dedent("""
    import sys, time, json
    from pathlib import Path
    import numpy as np
    sys.path.insert(0, sys.argv[2])
    from test_session_dataset import TWO_CAMERAS, detail, make_episode, recorder

    root = Path(sys.argv[1])
    writer = recorder(root, TWO_CAMERAS, flush_every_episodes=2, flush_every_s=1e6)
    rng = np.random.default_rng(3)
    for number in range(5):
        # The fifth is long enough for the encoders to start its video files before any flush.
        writer.add_episode(make_episode(rng, 5 if number < 4 else 100, TWO_CAMERAS, terminated=True), detail(number, True))
    # The fifth episode is being written into files no flush has committed yet.
    def only_the_fifth_unflushed():
        info = root / "meta/info.json"
        return ((root / "videos/observation.images.front/chunk-000/file-002.mp4").exists()
                and info.exists() and json.loads(info.read_text())["total_episodes"] == 4)
    deadline = time.monotonic() + 120
    while not only_the_fifth_unflushed() and time.monotonic() < deadline:
        time.sleep(0.01)
    print("flushed" if only_the_fifth_unflushed() else "the writer did not get there", flush=True)
    time.sleep(600)
""")


def test_a_killed_writer_leaves_exactly_its_flushed_episodes_and_a_reopen_continues_after_them(tmp_path):
    script = tmp_path / "killed_writer.py"
    script.write_text(KILLED_WRITER)
    root = tmp_path / "dataset"
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, str(script), str(root), str(Path(__file__).parent)],
                               stdout=subprocess.PIPE, text=True, env=environment)
    try:
        assert process.stdout.readline().strip() == "flushed"
        unflushed_video = root / "videos/observation.images.front/chunk-000/file-002.mp4"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    stray_data = root / "data/chunk-000/file-007.parquet"
    stray_data.write_bytes(b"left by a writer killed before its metadata")

    with recorder(root, TWO_CAMERAS) as writer:
        writer.add_episode(make_episode(np.random.default_rng(4), 3, TWO_CAMERAS, terminated=True), detail(5, True))

    assert validate_dataset(root) == []
    assert [outcome["episode"] for _, outcome in read_episode_transitions(root)] == [0, 1, 2, 3, 5]
    assert not stray_data.exists()
    assert sorted(p.name for p in (root / "videos/observation.images.front/chunk-000").iterdir()) == ["file-000.mp4", "file-001.mp4", "file-002.mp4"]
    assert len(decode_video(unflushed_video)) == 3  # the killed writer's file was removed; this is the new episode's


def test_metadata_a_killed_writer_left_half_rewritten_is_made_whole_on_reopen(tmp_path):
    rng = np.random.default_rng(5)
    with recorder(tmp_path / "dataset") as writer:
        for number in range(2):
            writer.add_episode(make_episode(rng, 4, STATE_ONLY, terminated=True), detail(number, True))
    info_path = tmp_path / "dataset/meta/info.json"
    info = json.loads(info_path.read_text())
    # As if killed after meta/episodes was written for episode 2 but before info.json.
    with recorder(tmp_path / "dataset") as writer:
        writer.add_episode(make_episode(rng, 4, STATE_ONLY, terminated=True), detail(2, True))
    info_path.write_text(json.dumps(info))
    assert validate_dataset(tmp_path / "dataset") != []

    recorder(tmp_path / "dataset").close()

    assert validate_dataset(tmp_path / "dataset") == []
    assert [outcome["episode"] for _, outcome in read_episode_transitions(tmp_path / "dataset")] == [0, 1]


def test_appending_episodes_of_another_layout_is_refused_naming_the_folder_and_the_feature(tmp_path):
    with recorder(tmp_path / "dataset") as writer:
        writer.add_episode(make_episode(np.random.default_rng(6), 3, STATE_ONLY, terminated=True), detail(0, True))

    with pytest.raises(DatasetError, match=r"dataset: cannot append: feature 'observation.state' differs: shape \[5\] in the dataset, \[6\] now"):
        EpisodeRecorder(tmp_path / "dataset", "pick the cube", observation_spec_of((6,), {}), ACTIONS, 10.0)
    with pytest.raises(DatasetError, match=r"dataset: cannot append: feature 'observation.images.front' is not in the dataset"):
        recorder(tmp_path / "dataset", TWO_CAMERAS)


def test_an_episode_out_of_the_layout_is_refused_when_added(tmp_path):
    with recorder(tmp_path / "dataset", TWO_CAMERAS) as writer:
        episode = make_episode(np.random.default_rng(7), 4, TWO_CAMERAS, terminated=True)
        with pytest.raises(ValueError, match="'actions' is float32"):
            writer.add_episode({**episode, "actions": episode["actions"][:, :3]}, detail(0, True))
        shuffled = {**episode, "next_observations/images/wrist": episode["next_observations/images/wrist"][::-1]}
        with pytest.raises(ValueError, match="camera 'wrist': next images are not the following observations' images"):
            writer.add_episode(shuffled, detail(0, True))
    assert not (tmp_path / "dataset/meta/info.json").exists()


def test_add_episode_returns_while_the_writer_is_busy_and_waits_with_a_warning_only_when_the_queue_is_full(tmp_path, caplog):
    writer = recorder(tmp_path / "dataset", queue_episodes=2)
    gate, written = threading.Event(), []
    real_add = writer._dataset.add_episode

    def held_add(*args):
        gate.wait()
        written.append(real_add(*args))

    writer._dataset.add_episode = held_add
    rng = np.random.default_rng(8)
    episodes = [make_episode(rng, 3, STATE_ONLY, terminated=True) for _ in range(4)]
    caplog.set_level(logging.WARNING, "robot_stack.data.session_dataset")
    for number in range(3):  # one taken by the held writer, two waiting in the queue
        writer.add_episode(episodes[number], detail(number, True))
        while number == 0 and not writer._queue.empty():
            gate.wait(0.001)  # until the writer has taken the first one
    assert written == [] and writer._queue.full() and not caplog.records

    blocked = threading.Thread(target=writer.add_episode, args=(episodes[3], detail(3, True)))
    blocked.start()
    while not caplog.records:
        blocked.join(0.001)
    assert blocked.is_alive() and "episodes behind; waiting for it" in caplog.records[0].getMessage()
    gate.set()
    blocked.join()
    writer.close()

    assert written == [0, 1, 2, 3] and read_dataset(tmp_path / "dataset").info["total_episodes"] == 4


def test_a_writer_error_is_raised_at_close_and_the_dataset_keeps_its_last_flush(tmp_path):
    writer = recorder(tmp_path / "dataset", flush_every_episodes=1)
    rng = np.random.default_rng(9)
    writer.add_episode(make_episode(rng, 3, STATE_ONLY, terminated=True), detail(0, True))

    def failing_add(*args):
        raise OSError("No space left on device")

    while not (tmp_path / "dataset/meta/info.json").exists():
        threading.Event().wait(0.01)
    writer._dataset.add_episode = failing_add
    writer.add_episode(make_episode(rng, 3, STATE_ONLY, terminated=True), detail(1, True))
    writer.add_episode(make_episode(rng, 3, STATE_ONLY, terminated=True), detail(2, True))

    with pytest.raises(RuntimeError, match=r"dataset: writing the session dataset failed \(No space left on device\).* 1 later episode"):
        writer.close()
    assert validate_dataset(tmp_path / "dataset") == [] and read_dataset(tmp_path / "dataset").info["total_episodes"] == 1
