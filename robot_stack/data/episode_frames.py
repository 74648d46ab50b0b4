"""Write an episode's camera frames to disk: one PNG per frame and camera, plus an
animated GIF per camera for a quick look."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


class EpisodeFrameWriter:
    def __init__(self, directory: Path, fps: float):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.frame_duration_ms = int(round(1000.0 / fps))
        self._frames: dict[str, list[np.ndarray]] = {}

    def add(self, images: dict[str, np.ndarray]) -> None:
        for name, image in images.items():
            frames = self._frames.setdefault(name, [])
            Image.fromarray(image).save(self.directory / f"{name}_{len(frames):04d}.png")
            frames.append(image)

    def finish(self) -> list[Path]:
        written = []
        for name, frames in self._frames.items():
            if not frames:
                continue
            path = self.directory / f"{name}.gif"
            first, *rest = (Image.fromarray(f) for f in frames)
            first.save(path, save_all=True, append_images=rest, duration=self.frame_duration_ms, loop=0)
            written.append(path)
        return written

    @property
    def frame_count(self) -> int:
        return sum(len(f) for f in self._frames.values())
