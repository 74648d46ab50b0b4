"""Datasets in the LeRobotDataset v3.0 layout: write, read and validate.

A dataset is a folder that LeRobot (``codebase_version: v3.0``) opens directly:

    meta/info.json                                   fps, features, path templates, totals
    meta/stats.json                                  per-feature min/max/mean/std/count/quantiles
    meta/tasks.parquet                               task string (index) -> task_index
    meta/episodes/chunk-000/file-000.parquet         one row per episode: length, tasks, where its
                                                     frames and video segments are, its stats
    data/chunk-000/file-000.parquet                  one row per frame: every non-video feature
    videos/<camera key>/chunk-000/file-000.mp4       the frames of many episodes, one after another

Frames of consecutive episodes share files until a file reaches its size budget, then the file
index goes up (a chunk holds ``chunks_size`` files). A frame's ``timestamp`` is
``frame_index / fps``; an episode's video segment is ``[from_timestamp, to_timestamp)`` in its
file. Images are stored either as video (``dtype: video``, AV1 or H.264 MP4 through PyAV) or
as PNG bytes in the data table (``dtype: image``, the {bytes, path} struct Hugging Face
datasets uses). Camera statistics are per channel over [0, 1], shape (3, 1, 1), as LeRobot's.

``DatasetWriter`` writes (metadata last: a folder without ``meta/info.json`` is not a dataset),
``read_dataset`` reads episodes back as numpy arrays (videos decoded), ``validate_dataset``
checks a folder against the layout and returns every problem it finds.

Writing in steps: ``DatasetWriter.flush()`` closes the open data and video files and rewrites the
metadata, so the folder is a complete dataset after every flush; the episodes that follow go into
new files (an MP4 cannot be appended to once closed). A writer opened with ``append=True`` on an
existing dataset continues it the same way. ``meta/info.json`` is written last and is what counts:
on reopening, episode rows beyond its ``total_episodes`` (a writer killed between two metadata
files) and data or video files no episode row references (a writer killed between two flushes)
are removed, so no episode is ever half there or there twice.

Episode rows may carry extra columns (``add_episode(..., episode_columns=...)``), e.g. how an
RL episode ended; LeRobot keeps columns it does not know in its episodes table.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np

from robot_stack.data.files import write_atomic

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
DATA_FILES_SIZE_MB = 100
VIDEO_FILES_SIZE_MB = 200
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
CHUNK_FILE = "chunk-{chunk_index:03d}/file-{file_index:03d}"
DATA_PATH = "data/" + CHUNK_FILE + ".parquet"
VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE + ".mp4"
EPISODES_PATH = "meta/episodes/" + CHUNK_FILE + ".parquet"
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
STAT_NAMES = ("min", "max", "mean", "std", "count") + tuple(f"q{int(round(q * 100)):02d}" for q in QUANTILES)

DEFAULT_FEATURES: dict[str, dict[str, Any]] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
NUMERIC_DTYPES = ("float32", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")
# Episode-row columns the layout owns; extra episode columns must not use these names.
_LAYOUT_COLUMN_PREFIXES = ("stats/", "videos/", "data/", "meta/")
_LAYOUT_COLUMNS = ("episode_index", "tasks", "length", "dataset_from_index", "dataset_to_index")


class DatasetError(ValueError):
    """A dataset folder that does not follow the layout; the message names the file and field."""


def _require_pyarrow():
    try:
        import pandas  # noqa: F401
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError as error:
        raise ImportError("LeRobot datasets need pyarrow and pandas, dependencies of robot-stack: reinstall it (scripts/setup.sh)") from error
    return pyarrow


def _require_av():
    try:
        import av
    except ImportError as error:
        raise ImportError("video features need PyAV, a dependency of robot-stack: reinstall it (scripts/setup.sh)") from error
    return av


# --------------------------------------------------------------------------- features


def vector_feature(names: Sequence[str], dtype: str = "float32") -> dict[str, Any]:
    return {"dtype": dtype, "shape": [len(names)], "names": list(names)}


def camera_feature(height: int, width: int, fps: float, storage: str, codec: str) -> dict[str, Any]:
    feature: dict[str, Any] = {"dtype": storage, "shape": [height, width, 3], "names": ["height", "width", "channels"]}
    if storage == "video":
        feature["info"] = {
            "video.height": height,
            "video.width": width,
            "video.codec": _codec_name(codec),
            "video.pix_fmt": "yuv420p",
            "video.is_depth_map": False,
            "video.fps": int(fps) if float(fps).is_integer() else fps,
            "video.channels": 3,
            "has_audio": False,
        }
    return feature


def _codec_name(encoder: str) -> str:
    """The codec name as a decoder reports it (what LeRobot writes in info.json)."""
    return {"libsvtav1": "av1", "libx264": "h264", "h264": "h264", "mpeg4": "mpeg4"}.get(encoder, encoder)


def is_camera(feature: Mapping[str, Any]) -> bool:
    return feature.get("dtype") in ("video", "image")


# --------------------------------------------------------------------------- statistics


def _array_stats(values: np.ndarray, camera: bool) -> dict[str, np.ndarray]:
    """Stats over the frame axis; cameras per channel over [0, 1], shaped (3, 1, 1)."""
    if camera:
        flat = values.reshape(-1, 3).astype(np.float64) / 255.0
        shape = (3, 1, 1)
    else:
        flat = values.reshape(values.shape[0], -1).astype(np.float64)
        shape = flat.shape[1:]
    result = {
        "min": flat.min(0), "max": flat.max(0), "mean": flat.mean(0), "std": flat.std(0),
        "count": np.array([values.shape[0]], np.int64),
    }
    quantiles = np.quantile(flat, QUANTILES, axis=0)
    for q, value in zip(QUANTILES, quantiles):
        result[f"q{int(round(q * 100)):02d}"] = value
    return {key: (value.reshape(shape) if key != "count" else value) for key, value in result.items()}


def _merge_stats(parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Dataset stats from per-episode stats: exact min/max/mean/std/count; quantiles as the
    count-weighted mean of the episodes' (what LeRobot's aggregation does too)."""
    counts = np.array([float(p["count"][0]) for p in parts])
    weights = counts / counts.sum()
    means = np.stack([p["mean"] for p in parts])
    mean = np.tensordot(weights, means, axes=1)
    second = np.tensordot(weights, np.stack([p["std"] ** 2 + p["mean"] ** 2 for p in parts]), axes=1)
    merged = {
        "min": np.min(np.stack([p["min"] for p in parts]), 0),
        "max": np.max(np.stack([p["max"] for p in parts]), 0),
        "mean": mean,
        "std": np.sqrt(np.maximum(second - mean**2, 0.0)),
        "count": np.array([int(counts.sum())], np.int64),
    }
    for name in STAT_NAMES:
        if name.startswith("q"):
            merged[name] = np.tensordot(weights, np.stack([p[name] for p in parts]), axes=1)
    return merged


def _stats_to_json(stats: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, dict[str, Any]]:
    return {feature: {name: np.asarray(value).tolist() for name, value in values.items()} for feature, values in stats.items()}


# --------------------------------------------------------------------------- writing


class _VideoFile:
    def __init__(self, path: Path, fps: float, height: int, width: int, codec: str):
        av = _require_av()
        # SVT-AV1 prints its whole configuration at every file unless told to log errors only.
        os.environ.setdefault("SVT_LOG", "1")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.container = av.open(str(path), mode="w")
        rate = Fraction(fps).limit_denominator(1000)
        options = {"g": "2", "crf": "30"} if codec == "libsvtav1" else {"g": "2", "crf": "23"} if codec in ("libx264", "h264") else {}
        self.stream = self.container.add_stream(codec, rate=rate, options=options)
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv420p"
        self.stream.time_base = Fraction(1, 1) / rate
        self.frames = 0
        self.bytes = 0  # encoded so far (the file on disk lags behind the encoder's buffers)

    def write(self, frames: np.ndarray) -> None:
        av = _require_av()
        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = self.frames
            for packet in self.stream.encode(frame):
                self.bytes += packet.size
                self.container.mux(packet)
            self.frames += 1

    def size_mb(self) -> float:
        return self.bytes / 1e6

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


def _file_location(file_number: int) -> tuple[int, int]:
    return file_number // CHUNKS_SIZE, file_number % CHUNKS_SIZE


@dataclass
class DatasetWriter:
    """Write episodes into a dataset folder: a new one, or (``append=True``) the one there.

    ``features``: the dataset's own features (e.g. ``observation.state``, ``action``,
    ``observation.images.front``); the default ones (timestamp, indices, task) are added.
    ``add_episode(frames, task)`` takes every feature as an array with a leading frame axis.
    ``flush()`` makes everything added so far a complete dataset on disk; ``finish()`` is the
    last flush. Until the first flush ``meta/info.json`` does not exist.

    ``append=True`` on a folder with a dataset continues it (same fps and features, else
    DatasetError naming the folder and the feature); on an empty or missing folder, or one a
    writer left before its first flush, it starts a new dataset.
    """

    root: Path
    fps: float
    features: dict[str, dict[str, Any]]
    robot_type: str = "franka_fr3"
    video_codec: str = "libsvtav1"
    overwrite: bool = False
    append: bool = False
    data_file_size_mb: float = DATA_FILES_SIZE_MB
    video_file_size_mb: float = VIDEO_FILES_SIZE_MB
    tasks: dict[str, int] = field(default_factory=dict)
    episodes: list[dict[str, Any]] = field(default_factory=list)
    _episode_stats: list[dict[str, dict[str, np.ndarray]]] = field(default_factory=list)
    _rows: list[dict[str, np.ndarray]] = field(default_factory=list)
    _rows_bytes: int = 0
    _data_file: int = 0
    _videos: dict[str, _VideoFile] = field(default_factory=dict)
    _video_file: dict[str, int] = field(default_factory=dict)
    _frames: int = 0
    _flushed_episodes: int = 0
    _info: Optional[dict[str, Any]] = None

    def __post_init__(self) -> None:
        _require_pyarrow()
        self.root = Path(self.root)
        if self.append and self.overwrite:
            raise ValueError(f"{self.root}: append and overwrite exclude each other")
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        for key in DEFAULT_FEATURES:
            if key in self.features:
                raise ValueError(f"feature '{key}' is one of LeRobot's default features; do not pass it")
        for key, feature in self.features.items():
            if feature["dtype"] not in NUMERIC_DTYPES + ("video", "image", "string"):
                raise ValueError(f"feature '{key}': dtype {feature['dtype']!r} is not supported")
        self.features = {**{k: dict(v) for k, v in self.features.items()}, **DEFAULT_FEATURES}
        if any(f["dtype"] == "video" for f in self.features.values()):
            _require_av()
        if self.append and (self.root / INFO_PATH).is_file():
            self._reopen()
            return
        if self.root.exists() and any(self.root.iterdir()):
            if self.append:
                self._start_over_unflushed()
            elif not self.overwrite:
                raise FileExistsError(f"{self.root} is not empty; choose a new folder or overwrite it")
            else:
                shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)

    @property
    def video_keys(self) -> list[str]:
        return [key for key, feature in self.features.items() if feature["dtype"] == "video"]

    def add_episode(self, frames: Mapping[str, np.ndarray], task: str, episode_columns: Optional[Mapping[str, Any]] = None) -> int:
        """Append one episode; returns its index. Every non-default feature is required.
        ``episode_columns``: extra values for the episode's row in ``meta/episodes`` (plain
        Python scalars or strings)."""
        own = [key for key in self.features if key not in DEFAULT_FEATURES]
        missing = sorted(set(own) - set(frames))
        extra = sorted(set(frames) - set(own))
        if missing or extra:
            raise ValueError(f"episode frames: missing features {missing}, unknown features {extra}")
        clashing = [name for name in (episode_columns or {}) if name in _LAYOUT_COLUMNS or name.startswith(_LAYOUT_COLUMN_PREFIXES)]
        if clashing:
            raise ValueError(f"episode columns {clashing} are the layout's own; choose other names")
        length = len(next(iter(frames.values())))
        if length == 0:
            raise ValueError("an episode needs at least one frame")
        arrays: dict[str, np.ndarray] = {}
        for key in own:
            feature = self.features[key]
            value = np.asarray(frames[key])
            if value.shape[0] != length:
                raise ValueError(f"feature '{key}' has {value.shape[0]} frames, '{own[0]}' has {length}")
            expected = tuple(feature["shape"])
            if value.shape[1:] != expected and not (expected == (1,) and value.ndim == 1):
                raise ValueError(f"feature '{key}': frames of shape {value.shape[1:]}, the feature says {expected}")
            if is_camera(feature):
                if value.dtype != np.uint8:
                    raise ValueError(f"camera feature '{key}' must be uint8, got {value.dtype}")
            elif feature["dtype"] != "string":
                value = value.astype(feature["dtype"]).reshape(length, *expected)
                if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
                    raise ValueError(f"feature '{key}' has non-finite values")
            arrays[key] = value
        episode_index = len(self.episodes)
        task_index = self.tasks.setdefault(task, len(self.tasks))
        frame_index = np.arange(length, dtype=np.int64)
        arrays["timestamp"] = (frame_index / self.fps).astype(np.float32)
        arrays["frame_index"] = frame_index
        arrays["episode_index"] = np.full(length, episode_index, np.int64)
        arrays["index"] = np.arange(self._frames, self._frames + length, dtype=np.int64)
        arrays["task_index"] = np.full(length, task_index, np.int64)

        row: dict[str, Any] = {
            "episode_index": episode_index, "tasks": [task], "length": length,
            "dataset_from_index": self._frames, "dataset_to_index": self._frames + length,
        }
        # Video segments first: a file that is full rolls over before this episode goes in.
        for key in self.video_keys:
            video = self._video_for(key)
            start = video.frames
            video.write(arrays[key])
            chunk, file = _file_location(self._video_file[key])
            row.update({
                f"videos/{key}/chunk_index": chunk, f"videos/{key}/file_index": file,
                f"videos/{key}/from_timestamp": start / self.fps, f"videos/{key}/to_timestamp": video.frames / self.fps,
            })
        if self._rows and self._rows_bytes >= self.data_file_size_mb * 1e6:
            self._flush_data()
        chunk, file = _file_location(self._data_file)
        row.update({"data/chunk_index": chunk, "data/file_index": file})
        self._rows.append({key: value for key, value in arrays.items() if self.features[key]["dtype"] != "video"})
        self._rows_bytes += sum(v.nbytes for k, v in arrays.items() if self.features[k]["dtype"] not in ("video", "string"))
        stats = {key: _array_stats(value, is_camera(self.features[key])) for key, value in arrays.items()
                 if self.features[key]["dtype"] != "string"}
        self._episode_stats.append(stats)
        for feature_key, values in stats.items():
            for name, value in values.items():
                row[f"stats/{feature_key}/{name}"] = np.asarray(value).reshape(-1).tolist()
        row.update(episode_columns or {})
        self.episodes.append(row)
        self._frames += length
        return episode_index

    def _video_for(self, key: str) -> _VideoFile:
        video = self._videos.get(key)
        if video is not None and video.frames > 0 and video.size_mb() >= self.video_file_size_mb:
            video.close()
            self._video_file[key] += 1
            video = None
        if video is None:
            number = self._video_file.setdefault(key, 0)
            chunk, file = _file_location(number)
            height, width, _ = self.features[key]["shape"]
            video = _VideoFile(self.root / VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file),
                               self.fps, height, width, self.video_codec)
            self._videos[key] = video
        return video

    def _flush_data(self) -> None:
        if not self._rows:
            return
        pa = _require_pyarrow()
        import pyarrow.parquet as pq

        chunk, file = _file_location(self._data_file)
        columns = {}
        for key, feature in self.features.items():
            if feature["dtype"] == "video":
                continue
            values = np.concatenate([row[key] for row in self._rows])
            columns[key] = _arrow_column(pa, values, feature)
        path = self.root / DATA_PATH.format(chunk_index=chunk, file_index=file)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(columns), path)
        self._rows, self._rows_bytes = [], 0
        self._data_file += 1

    def _close_videos(self) -> None:
        """Close the open video files; the next episodes go into new ones."""
        for key, video in self._videos.items():
            video.close()
            self._video_file[key] += 1
        self._videos.clear()

    def flush(self) -> Optional[dict[str, Any]]:
        """Close the open files and write the metadata (info.json last): the folder is then a
        complete dataset holding every episode added so far. Returns info.json's contents
        (None while the dataset has no episode)."""
        if len(self.episodes) > self._flushed_episodes:
            self._flush_data()
            self._close_videos()
            self._write_metadata()
        return self._info

    def finish(self) -> dict[str, Any]:
        """The last flush; returns info.json's contents."""
        if not self.episodes:
            raise ValueError(f"{self.root}: no episodes were added; an empty dataset is not written")
        info = self.flush()
        assert info is not None
        return info

    def _write_metadata(self) -> None:
        pa = _require_pyarrow()
        import pyarrow.parquet as pq
        import pandas

        # The task string is the table's (pandas) index: LeRobot reads tasks.iloc[task_index].name.
        tasks = sorted(self.tasks.items(), key=lambda item: item[1])
        (self.root / "meta").mkdir(parents=True, exist_ok=True)
        table = pandas.DataFrame({"task_index": [index for _, index in tasks]},
                                 index=pandas.Index([task for task, _ in tasks], name="task"))
        write_atomic(self.root / TASKS_PATH, table.to_parquet)

        for row in self.episodes:
            row["meta/episodes/chunk_index"], row["meta/episodes/file_index"] = 0, 0
        # Rows may differ in their extra columns; every column gets a value (None) in every row.
        names = list(dict.fromkeys(name for row in self.episodes for name in row))
        episodes = pa.table({name: [row.get(name) for row in self.episodes] for name in names})
        episodes_path = self.root / EPISODES_PATH.format(chunk_index=0, file_index=0)
        episodes_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(episodes_path, lambda path: pq.write_table(episodes, path))

        stats = {key: _merge_stats([episode[key] for episode in self._episode_stats]) for key in self._episode_stats[0]}
        write_atomic(self.root / STATS_PATH, lambda path: path.write_text(json.dumps(_stats_to_json(stats), indent=1)))

        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": self.robot_type,
            "total_episodes": len(self.episodes),
            "total_frames": self._frames,
            "total_tasks": len(self.tasks),
            "chunks_size": CHUNKS_SIZE,
            "data_files_size_in_mb": self.data_file_size_mb,
            "video_files_size_in_mb": self.video_file_size_mb,
            "fps": int(self.fps) if float(self.fps).is_integer() else self.fps,
            "splits": {"train": f"0:{len(self.episodes)}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if self.video_keys else None,
            "features": self.features,
        }
        write_atomic(self.root / INFO_PATH, lambda path: path.write_text(json.dumps(info, indent=4)))
        self._info = info
        self._flushed_episodes = len(self.episodes)

    # ----------------------------------------------------------------------- appending

    def _reopen(self) -> None:
        """Continue the dataset in ``root``: its episodes as info.json counts them, new files
        after the ones they use, and nothing on disk that they do not reference."""
        dataset = read_dataset(self.root)
        info = dataset.info
        if float(info["fps"]) != float(self.fps):
            raise DatasetError(f"{self.root}: cannot append at {self.fps:g} fps to a dataset recorded at {info['fps']} fps")
        _check_same_features(self.root, info["features"], self.features)
        total = int(info["total_episodes"])
        rows = dataset.episodes_meta[:total]
        if [row["episode_index"] for row in rows] != list(range(total)):
            raise DatasetError(f"{self.root / 'meta/episodes'}: episode rows are not 0..{total - 1}; the dataset is damaged")
        self.episodes = [dict(row) for row in rows]
        self.tasks = {task: index for index, task in dataset.tasks.items()}
        self.robot_type = info.get("robot_type") or self.robot_type
        self._frames = int(rows[-1]["dataset_to_index"]) if rows else 0
        self._episode_stats = [self._stats_of_row(row) for row in rows]
        data_files = {(row["data/chunk_index"], row["data/file_index"]) for row in rows}
        video_files = {key: {(row[f"videos/{key}/chunk_index"], row[f"videos/{key}/file_index"]) for row in rows}
                       for key in self.video_keys}
        referenced = {self.root / DATA_PATH.format(chunk_index=c, file_index=f) for c, f in data_files}
        referenced |= {self.root / VIDEO_PATH.format(video_key=key, chunk_index=c, file_index=f)
                       for key, files in video_files.items() for c, f in files}
        referenced |= {self.root / EPISODES_PATH.format(chunk_index=0, file_index=0)}
        absent = sorted(str(path.relative_to(self.root)) for path in referenced if not path.is_file())
        if absent:
            raise DatasetError(f"{self.root}: the episodes reference files that are missing: {absent}")
        self._remove_layout_files_except(referenced)
        self._data_file = 1 + max((c * CHUNKS_SIZE + f for c, f in data_files), default=-1)
        self._video_file = {key: 1 + max((c * CHUNKS_SIZE + f for c, f in files), default=-1) for key, files in video_files.items()}
        if rows:
            # Rewritten at once: a writer killed between two metadata files left them disagreeing.
            self._write_metadata()

    def _start_over_unflushed(self) -> None:
        """A folder with files but no info.json: what a writer left before its first flush
        (nothing of it is a dataset yet). Anything else in it is not ours to remove."""
        foreign = sorted(entry.name for entry in self.root.iterdir() if entry.name not in ("data", "videos", "meta"))
        if foreign:
            raise FileExistsError(f"{self.root} holds {foreign} but no {INFO_PATH}: not a dataset folder to append to")
        self._remove_layout_files_except(set())

    def _remove_layout_files_except(self, keep: set[Path]) -> None:
        patterns = ("data/chunk-*/file-*.parquet", "videos/*/chunk-*/file-*.mp4", "meta/episodes/chunk-*/file-*.parquet",
                    "meta/**/.*.tmp", "data/**/.*.tmp")
        for pattern in patterns:
            for path in self.root.glob(pattern):
                if path not in keep and path.is_file():
                    path.unlink()

    def _stats_of_row(self, row: Mapping[str, Any]) -> dict[str, dict[str, np.ndarray]]:
        """An episode's stats as its row in meta/episodes holds them (flattened lists)."""
        stats: dict[str, dict[str, np.ndarray]] = {}
        for key, feature in self.features.items():
            if feature["dtype"] == "string":
                continue
            shape = (3, 1, 1) if is_camera(feature) else tuple(feature["shape"])
            stats[key] = {name: np.asarray(row[f"stats/{key}/{name}"], np.int64 if name == "count" else np.float64)
                          .reshape((1,) if name == "count" else shape) for name in STAT_NAMES}
        return stats


def _check_same_features(root: Path, existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> None:
    """DatasetError naming the first feature in which ``existing`` (the dataset's) and ``wanted`` differ."""
    existing = json.loads(json.dumps(existing))
    wanted = json.loads(json.dumps(wanted))
    for key in dict.fromkeys([*existing, *wanted]):
        if key not in existing:
            raise DatasetError(f"{root}: cannot append: feature '{key}' is not in the dataset (it has {sorted(existing)})")
        if key not in wanted:
            raise DatasetError(f"{root}: cannot append: the dataset has feature '{key}', the episodes to add do not")
        if existing[key] != wanted[key]:
            fields = [name for name in dict.fromkeys([*existing[key], *wanted[key]]) if existing[key].get(name) != wanted[key].get(name)]
            described = "; ".join(f"{name} {existing[key].get(name)!r} in the dataset, {wanted[key].get(name)!r} now" for name in fields)
            raise DatasetError(f"{root}: cannot append: feature '{key}' differs: {described}")


def _png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _arrow_column(pa, values: np.ndarray, feature: Mapping[str, Any]):
    dtype = feature["dtype"]
    if dtype == "image":
        struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
        return pa.array([{"bytes": _png_bytes(image), "path": None} for image in values], type=struct)
    if dtype == "string":
        return pa.array([str(v) for v in values], pa.string())
    shape = tuple(feature["shape"])
    arrow_type = pa.from_numpy_dtype(np.dtype(dtype))
    if shape == (1,):
        return pa.array(values.reshape(-1), arrow_type)
    flat = values.reshape(values.shape[0], -1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1), arrow_type), flat.shape[1])


# --------------------------------------------------------------------------- reading


@dataclass
class Episode:
    index: int
    task: str
    frames: dict[str, np.ndarray]  # feature -> (T, ...); cameras decoded to uint8 (T, H, W, 3)

    @property
    def length(self) -> int:
        return len(self.frames["frame_index"])


@dataclass
class Dataset:
    root: Path
    info: dict[str, Any]
    stats: dict[str, Any]
    tasks: dict[int, str]
    episodes_meta: list[dict[str, Any]]

    @property
    def features(self) -> dict[str, dict[str, Any]]:
        return self.info["features"]

    @property
    def fps(self) -> float:
        return float(self.info["fps"])

    def camera_keys(self) -> list[str]:
        return [key for key, feature in self.features.items() if is_camera(feature)]

    def iter_episodes(self, cameras: Optional[Sequence[str]] = None) -> Iterator[Episode]:
        """Episodes in order; ``cameras`` limits which camera features are decoded (None: all)."""
        _require_pyarrow()
        import pyarrow.parquet as pq

        wanted_cameras = self.camera_keys() if cameras is None else list(cameras)
        tables: dict[str, Any] = {}
        videos: dict[tuple[str, str], np.ndarray] = {}
        for meta in self.episodes_meta:
            data_file = self.root / self.info["data_path"].format(chunk_index=meta["data/chunk_index"], file_index=meta["data/file_index"])
            if str(data_file) not in tables:
                tables = {str(data_file): pq.read_table(data_file)}
            table = tables[str(data_file)]
            first = int(table.column("index")[0].as_py())
            rows = table.slice(int(meta["dataset_from_index"]) - first, int(meta["length"]))
            frames: dict[str, np.ndarray] = {}
            for key, feature in self.features.items():
                if feature["dtype"] == "video" or (is_camera(feature) and key not in wanted_cameras):
                    continue
                frames[key] = _column_to_numpy(rows.column(key), feature)
            for key in wanted_cameras:
                if self.features[key]["dtype"] != "video":
                    continue
                path = self.root / self.info["video_path"].format(
                    video_key=key, chunk_index=meta[f"videos/{key}/chunk_index"], file_index=meta[f"videos/{key}/file_index"])
                if (key, str(path)) not in videos:
                    videos = {k: v for k, v in videos.items() if k[0] != key}
                    videos[(key, str(path))] = decode_video(path)
                decoded = videos[(key, str(path))]
                start = int(round(meta[f"videos/{key}/from_timestamp"] * self.fps))
                frames[key] = decoded[start : start + int(meta["length"])]
                if len(frames[key]) != meta["length"]:
                    raise DatasetError(f"{path}: episode {meta['episode_index']} needs frames {start}..{start + meta['length'] - 1}, the file has {len(decoded)}")
            task_index = int(frames["task_index"][0])
            yield Episode(int(meta["episode_index"]), self.tasks[task_index], frames)


def _column_to_numpy(column, feature: Mapping[str, Any]) -> np.ndarray:
    dtype = feature["dtype"]
    if dtype == "image":
        from PIL import Image

        return np.stack([np.asarray(Image.open(io.BytesIO(item["bytes"])).convert("RGB")) for item in column.to_pylist()])
    if dtype == "string":
        return np.array(column.to_pylist(), dtype=object)
    shape = tuple(feature["shape"])
    if shape == (1,):
        return column.to_numpy(zero_copy_only=False).astype(dtype)
    flat = np.asarray(column.combine_chunks().flatten().to_numpy(zero_copy_only=False), dtype=dtype)
    return flat.reshape(len(column), *shape)


def decode_video(path: Path) -> np.ndarray:
    av = _require_av()
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def read_dataset(root: Path) -> Dataset:
    """Open a dataset folder (metadata only; ``iter_episodes`` reads frames). Raises DatasetError."""
    _require_pyarrow()
    import pyarrow.parquet as pq

    root = Path(root)
    info_path = root / INFO_PATH
    if not info_path.is_file():
        raise DatasetError(f"{root}: no {INFO_PATH}: not a LeRobot dataset, or its writing did not finish")
    try:
        info = json.loads(info_path.read_text())
    except ValueError as error:
        raise DatasetError(f"{info_path}: not valid JSON: {error}") from None
    if info.get("codebase_version") != CODEBASE_VERSION:
        raise DatasetError(f"{info_path}: codebase_version {info.get('codebase_version')!r}; this reader reads {CODEBASE_VERSION!r}")
    tasks_table = pq.read_table(root / TASKS_PATH)
    task_column = "task" if "task" in tasks_table.column_names else "__index_level_0__"
    tasks = {int(i): str(t) for i, t in zip(tasks_table.column("task_index").to_pylist(), tasks_table.column(task_column).to_pylist())}
    episodes: list[dict[str, Any]] = []
    for path in sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet")):
        episodes.extend(pq.read_table(path).to_pylist())
    episodes.sort(key=lambda row: row["episode_index"])
    stats = json.loads((root / STATS_PATH).read_text()) if (root / STATS_PATH).is_file() else {}
    return Dataset(root, info, stats, tasks, episodes)


# --------------------------------------------------------------------------- validation

_INFO_KEYS = {
    "codebase_version": str, "robot_type": (str, type(None)), "total_episodes": int, "total_frames": int, "total_tasks": int,
    "chunks_size": int, "data_files_size_in_mb": (int, float), "video_files_size_in_mb": (int, float), "fps": (int, float),
    "splits": dict, "data_path": str, "video_path": (str, type(None)), "features": dict,
}
_EPISODE_COLUMNS = ("episode_index", "tasks", "length", "data/chunk_index", "data/file_index", "dataset_from_index",
                    "dataset_to_index", "meta/episodes/chunk_index", "meta/episodes/file_index")


def validate_dataset(root: Path, decode_videos: bool = True) -> list[str]:
    """Every way ``root`` departs from the LeRobotDataset v3.0 layout (empty: it validates).

    Checks info.json's keys, types, version and path templates; the default features; every
    data file's columns, types and shapes against the features; contiguous global and
    per-episode indices and timestamps = frame_index / fps; tasks; the episodes table's
    columns, lengths and ranges against the data; video files (present, frame size, enough
    frames for every episode's segment); stats for every feature with the right shapes.
    """
    problems: list[str] = []
    root = Path(root)
    try:
        dataset = read_dataset(root)
    except (DatasetError, OSError, ValueError) as error:
        return [str(error)]
    except Exception as error:  # a corrupt parquet file raises pyarrow's own errors
        return [f"{root}: unreadable metadata: {type(error).__name__}: {error}"]
    info, features = dataset.info, dataset.info.get("features", {})
    for key, kinds in _INFO_KEYS.items():
        if key not in info:
            problems.append(f"{INFO_PATH}: missing '{key}'")
        elif not isinstance(info[key], kinds) or isinstance(info[key], bool):
            problems.append(f"{INFO_PATH}: '{key}' has type {type(info[key]).__name__}")
    if problems:
        return problems
    if info["data_path"] != DATA_PATH:
        problems.append(f"{INFO_PATH}: data_path {info['data_path']!r}, the layout's is {DATA_PATH!r}")
    has_video = any(f.get("dtype") == "video" for f in features.values())
    if has_video and info["video_path"] != VIDEO_PATH:
        problems.append(f"{INFO_PATH}: video_path {info['video_path']!r}, the layout's is {VIDEO_PATH!r}")
    for key, default in DEFAULT_FEATURES.items():
        feature = features.get(key)
        if feature is None or feature.get("dtype") != default["dtype"] or list(feature.get("shape", [])) != default["shape"]:
            problems.append(f"{INFO_PATH}: default feature '{key}' missing or not {default['dtype']} {default['shape']}")
    for key, feature in features.items():
        if not isinstance(feature, dict) or "dtype" not in feature or "shape" not in feature or "names" not in feature:
            problems.append(f"{INFO_PATH}: feature '{key}' needs dtype, shape and names")
            continue
        if feature["dtype"] == "video":
            missing = [k for k in ("video.height", "video.width", "video.codec", "video.pix_fmt", "video.fps", "video.channels")
                       if k not in feature.get("info", {})]
            if missing:
                problems.append(f"{INFO_PATH}: video feature '{key}' info lacks {missing}")
        names = feature["names"]
        if isinstance(names, list) and feature["dtype"] not in ("video", "image") and len(feature["shape"]) == 1 and len(names) != feature["shape"][0]:
            problems.append(f"{INFO_PATH}: feature '{key}' has {len(names)} names for shape {feature['shape']}")
    if problems:
        return problems

    split = info["splits"].get("train")
    if split != f"0:{info['total_episodes']}":
        problems.append(f"{INFO_PATH}: splits.train is {split!r}, expected '0:{info['total_episodes']}'")
    if len(dataset.tasks) != info["total_tasks"]:
        problems.append(f"{TASKS_PATH}: {len(dataset.tasks)} tasks, info.json says {info['total_tasks']}")
    if sorted(dataset.tasks) != list(range(len(dataset.tasks))):
        problems.append(f"{TASKS_PATH}: task_index values {sorted(dataset.tasks)} are not 0..{len(dataset.tasks) - 1}")
    episodes = dataset.episodes_meta
    if len(episodes) != info["total_episodes"]:
        problems.append(f"meta/episodes: {len(episodes)} episodes, info.json says {info['total_episodes']}")
    video_keys = [k for k, f in features.items() if f["dtype"] == "video"]
    columns = set(_EPISODE_COLUMNS) | {f"videos/{k}/{c}" for k in video_keys for c in ("chunk_index", "file_index", "from_timestamp", "to_timestamp")}
    expected_next = 0
    for position, meta in enumerate(episodes):
        missing = sorted(columns - set(meta))
        if missing:
            problems.append(f"meta/episodes: episode row {position} lacks columns {missing}")
            return problems
        if meta["episode_index"] != position:
            problems.append(f"meta/episodes: row {position} has episode_index {meta['episode_index']}")
        if meta["dataset_from_index"] != expected_next or meta["dataset_to_index"] - meta["dataset_from_index"] != meta["length"]:
            problems.append(f"meta/episodes: episode {position} spans [{meta['dataset_from_index']}, {meta['dataset_to_index']}) "
                            f"with length {meta['length']}, expected to start at {expected_next}")
        expected_next = meta["dataset_to_index"]
        for task in meta["tasks"]:
            if task not in dataset.tasks.values():
                problems.append(f"meta/episodes: episode {position} names task {task!r}, which is not in {TASKS_PATH}")
        for key in video_keys:
            span = (meta[f"videos/{key}/to_timestamp"] - meta[f"videos/{key}/from_timestamp"]) * dataset.fps
            if abs(span - meta["length"]) > 1e-3 * max(1, meta["length"]):
                problems.append(f"meta/episodes: episode {position} video '{key}' segment holds {span:.2f} frames for length {meta['length']}")
    if expected_next != info["total_frames"]:
        problems.append(f"meta/episodes: episodes end at frame {expected_next}, info.json says total_frames {info['total_frames']}")
    problems += _validate_data_files(dataset)
    if decode_videos and not problems:
        problems += _validate_videos(dataset)
    problems += _validate_stats(dataset)
    return problems


def _validate_data_files(dataset: Dataset) -> list[str]:
    import pyarrow.parquet as pq

    problems: list[str] = []
    features = dataset.features
    table_columns = [k for k, f in features.items() if f["dtype"] != "video"]
    files = sorted({(m["data/chunk_index"], m["data/file_index"]) for m in dataset.episodes_meta})
    index = 0
    for chunk, file in files:
        relative = dataset.info["data_path"].format(chunk_index=chunk, file_index=file)
        path = dataset.root / relative
        if not path.is_file():
            problems.append(f"{relative}: missing")
            continue
        try:
            table = pq.read_table(path)
        except Exception as error:
            problems.append(f"{relative}: unreadable parquet ({type(error).__name__}: {error})")
            continue
        absent = sorted(set(table_columns) - set(table.column_names))
        unknown = sorted(set(table.column_names) - set(table_columns) - {"__index_level_0__"})
        if absent or unknown:
            problems.append(f"{relative}: columns missing {absent}, not in features {unknown}")
            continue
        for key in table_columns:
            try:
                values = _column_to_numpy(table.column(key), features[key]) if features[key]["dtype"] != "image" else None
            except Exception as error:
                problems.append(f"{relative}: column '{key}' does not match its feature {features[key]['dtype']} {features[key]['shape']}: {error}")
                continue
            if values is not None and features[key]["dtype"] not in ("string",) and values.dtype != np.dtype(features[key]["dtype"]):
                problems.append(f"{relative}: column '{key}' is {values.dtype}, the feature says {features[key]['dtype']}")
        global_index = table.column("index").to_numpy()
        if not np.array_equal(global_index, np.arange(index, index + len(global_index))):
            problems.append(f"{relative}: 'index' is not contiguous from {index}")
        index += len(global_index)
        episode = table.column("episode_index").to_numpy()
        frame = table.column("frame_index").to_numpy()
        timestamp = table.column("timestamp").to_numpy()
        for e in np.unique(episode):
            rows = episode == e
            if not np.array_equal(frame[rows], np.arange(rows.sum())):
                problems.append(f"{relative}: episode {e}: frame_index is not 0..{rows.sum() - 1}")
            if not np.allclose(timestamp[rows], frame[rows] / dataset.fps, atol=1e-4):
                problems.append(f"{relative}: episode {e}: timestamp is not frame_index / fps")
            if int(e) < len(dataset.episodes_meta) and dataset.episodes_meta[int(e)]["length"] != rows.sum():
                problems.append(f"{relative}: episode {e} has {rows.sum()} frames, meta/episodes says {dataset.episodes_meta[int(e)]['length']}")
        task_index = set(table.column("task_index").to_numpy().tolist())
        if not task_index <= set(dataset.tasks):
            problems.append(f"{relative}: task_index values {sorted(task_index - set(dataset.tasks))} are not in {TASKS_PATH}")
    if index != dataset.info["total_frames"]:
        problems.append(f"data: {index} frames, info.json says total_frames {dataset.info['total_frames']}")
    return problems


def _validate_videos(dataset: Dataset) -> list[str]:
    problems: list[str] = []
    for key, feature in dataset.features.items():
        if feature["dtype"] != "video":
            continue
        by_file: dict[tuple[int, int], list[dict[str, Any]]] = {}
        for meta in dataset.episodes_meta:
            by_file.setdefault((meta[f"videos/{key}/chunk_index"], meta[f"videos/{key}/file_index"]), []).append(meta)
        for (chunk, file), metas in sorted(by_file.items()):
            relative = dataset.info["video_path"].format(video_key=key, chunk_index=chunk, file_index=file)
            path = dataset.root / relative
            if not path.is_file():
                problems.append(f"{relative}: missing")
                continue
            try:
                frames = decode_video(path)
            except Exception as error:
                problems.append(f"{relative}: cannot be decoded ({type(error).__name__}: {error})")
                continue
            height, width = feature["shape"][0], feature["shape"][1]
            if frames.shape[1:3] != (height, width):
                problems.append(f"{relative}: frames are {frames.shape[1]}x{frames.shape[2]}, the feature says {height}x{width}")
            last = max(int(round(m[f"videos/{key}/to_timestamp"] * dataset.fps)) for m in metas)
            if last > len(frames):
                problems.append(f"{relative}: the episodes need {last} frames, the file has {len(frames)}")
    return problems


def _validate_stats(dataset: Dataset) -> list[str]:
    problems: list[str] = []
    for key, feature in dataset.features.items():
        if feature["dtype"] == "string":
            continue
        stats = dataset.stats.get(key)
        if stats is None:
            problems.append(f"{STATS_PATH}: no stats for feature '{key}'")
            continue
        for name in ("min", "max", "mean", "std", "count"):
            if name not in stats:
                problems.append(f"{STATS_PATH}: feature '{key}' lacks '{name}'")
                continue
            shape = np.shape(stats[name])
            expected = (1,) if name == "count" else (3, 1, 1) if is_camera(feature) else tuple(feature["shape"])
            if shape != expected:
                problems.append(f"{STATS_PATH}: '{key}.{name}' has shape {shape}, expected {expected}")
        if "count" in stats and np.ravel(stats["count"])[0] != dataset.info["total_frames"]:
            problems.append(f"{STATS_PATH}: '{key}.count' is {np.ravel(stats['count'])[0]}, the dataset has {dataset.info['total_frames']} frames")
        for name in ("min", "max", "mean", "std"):
            if name in stats and not np.all(np.isfinite(np.asarray(stats[name], float))):
                problems.append(f"{STATS_PATH}: '{key}.{name}' is not finite")
    return problems

