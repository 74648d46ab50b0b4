"""Synthetic labelled frames for reward tests: a success frame has a bright square high in
the image, a failure frame has it low (or none), on a noisy background."""

from __future__ import annotations

import numpy as np

from robot_stack.reward.frame_sets import STATE_QUANTITIES, LabelledFrames


def square_images(success: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    n = success.size
    images = rng.integers(0, 60, (n, size, size, 3)).astype(np.uint8)
    side = size // 4
    for i in range(n):
        col = int(rng.integers(0, size - side))
        row = int(rng.integers(0, size // 3 - side // 2)) if success[i] else int(rng.integers(size // 2, size - side))
        images[i, row:row + side, col:col + side] = (230, 60, 40)
    return images


def synthetic_frames(episodes: int, frames_per_episode: int, seed: int, size: int = 32,
                     cameras: tuple[str, ...] = ("front", "wrist"), classes: tuple[str, ...] = ("failure", "success")) -> LabelledFrames:
    """Half the episodes end in success (the last third of their frames)."""
    rng = np.random.default_rng(seed)
    labels, episode_ids = [], []
    for e in range(episodes):
        label = np.zeros(frames_per_episode, dtype=np.int64)
        if e % 2 == 0:
            label[frames_per_episode * 2 // 3:] = classes.index("success")
        elif len(classes) > 2:
            label[frames_per_episode // 2:] = 1  # an intermediate class
        labels.append(label)
        episode_ids.append(np.full(frames_per_episode, e, dtype=np.int64))
    labels = np.concatenate(labels)
    success = labels == classes.index("success")
    images = {c: square_images(success, size, rng) for c in cameras}
    state = rng.normal(size=(labels.size, len(STATE_QUANTITIES))).astype(np.float32)
    state[:, 2] = np.where(success, 0.2, 0.05)  # tcp_z_m
    return LabelledFrames(images, labels, np.concatenate(episode_ids), state, classes,
                          steps=np.tile(np.arange(frames_per_episode), episodes))
