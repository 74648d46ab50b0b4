"""LeRobotDataset v3.0 layout: write, read back, validate, and find what is wrong."""

import json

import numpy as np
import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("av")

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from robot_stack.data.lerobot_v3 import (  # noqa: E402
    CODEBASE_VERSION,
    DatasetWriter,
    camera_feature,
    read_dataset,
    validate_dataset,
    vector_feature,
)


def _smooth_images(rng, frames, height, width):
    """Camera-like frames (smooth gradients that move), which a video codec keeps closely."""
    y, x = np.mgrid[0:height, 0:width]
    shift = rng.integers(0, 50)
    images = [np.stack([(x * 3 + t * 5 + shift) % 256, (y * 3 + t * 2) % 256, ((x + y) * 2) % 256], -1) for t in range(frames)]
    return np.asarray(images, np.uint8)


def _features(storage="video"):
    return {
        "observation.state": vector_feature(["a", "b", "c"]),
        "action": vector_feature(["dx", "dy", "gripper"]),
        "next.done": {"dtype": "bool", "shape": [1], "names": None},
        "observation.images.front": camera_feature(32, 48, 10, storage, "libx264"),
    }


def _episode(rng, length, storage="video"):
    return {
        "observation.state": rng.normal(size=(length, 3)).astype(np.float32),
        "action": rng.uniform(-1, 1, (length, 3)).astype(np.float32),
        "next.done": np.arange(length) == length - 1,
        "observation.images.front": _smooth_images(rng, length, 32, 48),
    }


def _write(root, episodes, tasks, storage="video", **kwargs):
    writer = DatasetWriter(root, 10, _features(storage), video_codec="libx264", **kwargs)
    for frames, task in zip(episodes, tasks):
        writer.add_episode(frames, task)
    return writer.finish()


@pytest.mark.parametrize("storage", ["video", "image"])
def test_round_trip_and_layout(tmp_path, storage):
    rng = np.random.default_rng(0)
    episodes = [_episode(rng, n, storage) for n in (5, 8, 3)]
    info = _write(tmp_path / "d", episodes, ["lift the red cube", "insert the peg", "lift the red cube"], storage)
    assert info["codebase_version"] == CODEBASE_VERSION == "v3.0"
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, 16, 2)
    assert info["splits"] == {"train": "0:3"}
    assert validate_dataset(tmp_path / "d") == []
    files = sorted(str(p.relative_to(tmp_path / "d")) for p in (tmp_path / "d").rglob("*") if p.is_file())
    expected = ["data/chunk-000/file-000.parquet", "meta/episodes/chunk-000/file-000.parquet", "meta/info.json",
                "meta/stats.json", "meta/tasks.parquet"]
    if storage == "video":
        expected.append("videos/observation.images.front/chunk-000/file-000.mp4")
    assert files == sorted(expected)

    dataset = read_dataset(tmp_path / "d")
    assert dataset.tasks == {0: "lift the red cube", 1: "insert the peg"}
    read = list(dataset.iter_episodes())
    assert [e.task for e in read] == ["lift the red cube", "insert the peg", "lift the red cube"]
    for original, episode in zip(episodes, read):
        np.testing.assert_array_equal(episode.frames["observation.state"], original["observation.state"])
        np.testing.assert_array_equal(episode.frames["next.done"], original["next.done"])
        np.testing.assert_allclose(episode.frames["timestamp"], np.arange(episode.length) / 10, atol=1e-6)
        images = episode.frames["observation.images.front"]
        assert images.shape == original["observation.images.front"].shape and images.dtype == np.uint8
        error = np.abs(images.astype(int) - original["observation.images.front"]).mean()
        assert error == 0 if storage == "image" else error < 12  # lossy video keeps a camera-like picture


def test_episode_table_and_stats(tmp_path):
    rng = np.random.default_rng(1)
    episodes = [_episode(rng, n) for n in (4, 6)]
    _write(tmp_path / "d", episodes, ["a", "b"])
    rows = pq.read_table(tmp_path / "d/meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [(r["episode_index"], r["length"], r["dataset_from_index"], r["dataset_to_index"]) for r in rows] == [(0, 4, 0, 4), (1, 6, 4, 10)]
    assert rows[1]["videos/observation.images.front/from_timestamp"] == pytest.approx(0.4)
    assert rows[1]["videos/observation.images.front/to_timestamp"] == pytest.approx(1.0)
    assert rows[0]["tasks"] == ["a"]
    stats = json.loads((tmp_path / "d/meta/stats.json").read_text())
    states = np.concatenate([e["observation.state"] for e in episodes])
    np.testing.assert_allclose(stats["observation.state"]["mean"], states.mean(0), atol=1e-5)
    np.testing.assert_allclose(stats["observation.state"]["std"], states.std(0), atol=1e-5)
    assert stats["observation.state"]["count"] == [10]
    assert np.shape(stats["observation.images.front"]["mean"]) == (3, 1, 1)
    assert 0.0 <= np.min(stats["observation.images.front"]["min"]) <= np.max(stats["observation.images.front"]["max"]) <= 1.0


def test_files_roll_over_at_their_size_budget(tmp_path):
    rng = np.random.default_rng(2)
    episodes = [_episode(rng, 6) for _ in range(4)]
    _write(tmp_path / "d", episodes, ["t"] * 4, data_file_size_mb=1e-4, video_file_size_mb=1e-4)
    assert len(list((tmp_path / "d/data/chunk-000").glob("file-*.parquet"))) == 4
    assert len(list((tmp_path / "d/videos/observation.images.front/chunk-000").glob("file-*.mp4"))) == 4
    assert validate_dataset(tmp_path / "d") == []
    read = list(read_dataset(tmp_path / "d").iter_episodes())
    for original, episode in zip(episodes, read):
        np.testing.assert_array_equal(episode.frames["action"], original["action"])
        assert episode.frames["observation.images.front"].shape[0] == 6


def test_writer_refuses_bad_input(tmp_path):
    rng = np.random.default_rng(3)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        DatasetWriter(tmp_path / "full", 10, _features())
    assert (tmp_path / "full" / "x").read_text() == "keep me"
    with pytest.raises(ValueError, match="default features"):
        DatasetWriter(tmp_path / "a", 10, {"index": vector_feature(["i"])})
    writer = DatasetWriter(tmp_path / "b", 10, _features(), video_codec="libx264")
    episode = _episode(rng, 4)
    with pytest.raises(ValueError, match="missing features"):
        writer.add_episode({k: v for k, v in episode.items() if k != "action"}, "t")
    bad = dict(episode, action=np.full((4, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="non-finite"):
        writer.add_episode(bad, "t")
    with pytest.raises(ValueError, match="shape"):
        writer.add_episode(dict(episode, action=np.zeros((4, 5), np.float32)), "t")
    with pytest.raises(ValueError, match="no episodes"):
        writer.finish()
    assert not (tmp_path / "b/meta/info.json").exists()


def _dataset(tmp_path):
    rng = np.random.default_rng(4)
    _write(tmp_path / "d", [_episode(rng, 5), _episode(rng, 4)], ["a", "b"])
    return tmp_path / "d"


def _edit_info(root, change):
    info = json.loads((root / "meta/info.json").read_text())
    change(info)
    (root / "meta/info.json").write_text(json.dumps(info))


def test_validator_names_what_is_wrong(tmp_path):
    root = _dataset(tmp_path)
    _edit_info(root, lambda info: info.update(codebase_version="v2.1"))
    assert "codebase_version 'v2.1'" in validate_dataset(root)[0]

    root = _dataset(tmp_path / "2")
    _edit_info(root, lambda info: info.pop("fps"))
    assert any("missing 'fps'" in p for p in validate_dataset(root))

    root = _dataset(tmp_path / "3")
    _edit_info(root, lambda info: info["features"].pop("task_index"))
    assert any("default feature 'task_index'" in p for p in validate_dataset(root))

    root = _dataset(tmp_path / "4")
    (root / "videos/observation.images.front/chunk-000/file-000.mp4").unlink()
    assert any("file-000.mp4: missing" in p for p in validate_dataset(root))

    root = _dataset(tmp_path / "5")
    path = root / "data/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    index = table.column("index").to_numpy().copy()
    index[3] = 99
    pq.write_table(table.set_column(table.column_names.index("index"), "index", pa.array(index)), path)
    assert any("'index' is not contiguous" in p for p in validate_dataset(root))

    root = _dataset(tmp_path / "6")
    stats = json.loads((root / "meta/stats.json").read_text())
    stats["action"]["mean"] = [0.0]
    (root / "meta/stats.json").write_text(json.dumps(stats))
    assert any("'action.mean' has shape (1,)" in p for p in validate_dataset(root))

    root = _dataset(tmp_path / "7")
    (root / "data/chunk-000/file-000.parquet").write_bytes(b"not parquet")
    assert any("unreadable parquet" in p for p in validate_dataset(root))

    assert "no meta/info.json" in validate_dataset(tmp_path / "nothing")[0]
