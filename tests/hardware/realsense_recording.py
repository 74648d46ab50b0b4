"""RealSense recordings with known content, made without a camera, for the replay tests.

A ``rs.software_device`` with a colour sensor (and a depth sensor) is recorded by
``rs.recorder`` to a ``.db3`` file. The recorder stores when each frame reached it and
playback reproduces that pacing, so frames are pushed at the recorded frame rate: a
recording takes as long to make as it lasts.

Content: the colour image is four quadrants of distinct colours, and the frame's index
(its counter) is added to every channel, so the counter is the smallest value anywhere in
the image, even after a crop and a resize. Depth: the counter in centimetres plus 1.0 m on
the left half, plus 1.5 m on the right half.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyrealsense2 as rs

# Each colour has a zero channel, so min(pixel) is the counter inside any quadrant.
QUADRANTS_RGB = ((100, 0, 0), (0, 100, 0), (0, 0, 100), (100, 100, 0))  # top-left, top-right, bottom-left, bottom-right
DEPTH_UNITS_M = 0.001


@dataclass(frozen=True)
class Recording:
    path: Path
    size_wh: tuple[int, int]
    fps: int
    timestamps_s: tuple[float, ...]  # of frame k (colour and depth alike)
    quadrants_rgb: tuple[tuple[int, int, int], ...]
    serial: str

    def image(self, counter: int) -> np.ndarray:
        return colour_image(counter, self.size_wh, self.quadrants_rgb)

    def depth_raw(self, counter: int) -> np.ndarray:
        return depth_image(counter, self.size_wh)


def colour_image(counter: int, size_wh: tuple[int, int], quadrants_rgb=QUADRANTS_RGB) -> np.ndarray:
    width, height = size_wh
    image = np.empty((height, width, 3), np.uint8)
    top_left, top_right, bottom_left, bottom_right = quadrants_rgb
    image[: height // 2, : width // 2] = top_left
    image[: height // 2, width // 2 :] = top_right
    image[height // 2 :, : width // 2] = bottom_left
    image[height // 2 :, width // 2 :] = bottom_right
    return image + np.uint8(counter)


def depth_image(counter: int, size_wh: tuple[int, int]) -> np.ndarray:
    """(H, W) uint16 in DEPTH_UNITS_M."""
    width, height = size_wh
    depth = np.empty((height, width), np.uint16)
    depth[:, : width // 2] = 1000 + 10 * counter
    depth[:, width // 2 :] = 1500 + 10 * counter
    return depth


def counter_of(image: np.ndarray) -> int:
    """The counter of a colour frame recorded here, however it was cropped and resized."""
    return int(image.min())


def _video_stream(
    stream: rs.stream, uid: int, size_wh: tuple[int, int], fps: int, fmt: rs.format, bpp: int,
    focal_scale: float = 1.0, principal_shift_px: float = 0.0,
) -> rs.video_stream:
    width, height = size_wh
    intrinsics = rs.intrinsics()
    intrinsics.width, intrinsics.height = width, height
    intrinsics.fx = intrinsics.fy = float(width) * focal_scale
    intrinsics.ppx, intrinsics.ppy = width / 2.0 + principal_shift_px, height / 2.0
    intrinsics.model = rs.distortion.none
    intrinsics.coeffs = [0.0] * 5
    video = rs.video_stream()
    video.type, video.index, video.uid = stream, 0, uid
    video.width, video.height, video.fps = width, height, fps
    video.fmt, video.bpp, video.intrinsics = fmt, bpp, intrinsics
    return video


def _software_frame(pixels: np.ndarray, profile: rs.stream_profile, timestamp_ms: float, number: int) -> rs.software_video_frame:
    frame = rs.software_video_frame()
    frame.pixels = pixels
    frame.bpp = pixels.itemsize * (pixels.shape[2] if pixels.ndim == 3 else 1)
    frame.stride = frame.bpp * pixels.shape[1]
    frame.timestamp = timestamp_ms
    frame.domain = rs.timestamp_domain.hardware_clock
    frame.frame_number = number
    frame.profile = profile.as_video_stream_profile()
    return frame


def record(
    path: Path,
    n_frames: int,
    fps: int = 30,
    size_wh: tuple[int, int] = (96, 64),
    depth: bool = False,
    serial: str = "000000000001",
    quadrants_rgb: tuple[tuple[int, int, int], ...] = QUADRANTS_RGB,
    first_timestamp_ms: float = 5000.0,
    colour_focal_scale: float = 1.0,
    colour_principal_shift_px: float = 0.0,
) -> Recording:
    """Records ``n_frames`` frames at ``fps`` (taking n_frames / fps seconds) to ``path``.

    Depth and colour share one optical centre. By default they also share intrinsics (as on
    a D405); a colour focal length ``colour_focal_scale`` times the depth's and a principal
    point ``colour_principal_shift_px`` to the right make them differ (as on a D435), so that
    colour pixel u sees depth pixel (u - W/2 - shift) / scale + W/2."""
    if n_frames > 155:
        raise ValueError("the counter lives in uint8 pixel values on top of 100: at most 155 frames")
    device = rs.software_device()
    device.register_info(rs.camera_info.name, "Software RealSense")
    device.register_info(rs.camera_info.serial_number, serial)
    device.register_info(rs.camera_info.firmware_version, "0.0.0")
    colour_sensor = device.add_sensor("RGB Camera")
    colour_profile = colour_sensor.add_video_stream(
        _video_stream(rs.stream.color, 0, size_wh, fps, rs.format.rgb8, 3, colour_focal_scale, colour_principal_shift_px)
    )
    sensors = [(colour_sensor, colour_profile)]
    if depth:
        depth_sensor = device.add_sensor("Stereo Module")
        depth_profile = depth_sensor.add_video_stream(_video_stream(rs.stream.depth, 1, size_wh, fps, rs.format.z16, 2))
        depth_sensor.add_read_only_option(rs.option.depth_units, DEPTH_UNITS_M)
        identity = rs.extrinsics()
        identity.rotation = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        identity.translation = [0.0, 0.0, 0.0]
        depth_profile.register_extrinsics_to(colour_profile, identity)
        sensors.append((depth_sensor, depth_profile))

    recorder = rs.recorder(str(path), device)
    queues = []
    for sensor, profile in sensors:
        queues.append(rs.frame_queue(n_frames + 1))
        sensor.open(profile)
        sensor.start(queues[-1])
    timestamps_ms = [first_timestamp_ms + k * 1000.0 / fps for k in range(n_frames)]
    start = time.monotonic()
    for k, timestamp_ms in enumerate(timestamps_ms):
        colour_sensor.on_video_frame(_software_frame(colour_image(k, size_wh, quadrants_rgb), colour_profile, timestamp_ms, k))
        if depth:
            raw = depth_image(k, size_wh)
            frame = _software_frame(raw, depth_profile, timestamp_ms, k)
            frame.depth_units = DEPTH_UNITS_M
            depth_sensor.on_video_frame(frame)
        time.sleep(max(0.0, start + (k + 1) / fps - time.monotonic()))
    for sensor, _ in sensors:
        sensor.stop()
        sensor.close()
    del recorder  # the file is complete once the recorder is destroyed
    return Recording(
        path=Path(path),
        size_wh=size_wh,
        fps=fps,
        timestamps_s=tuple(t / 1000.0 for t in timestamps_ms),
        quadrants_rgb=quadrants_rgb,
        serial=serial,
    )
