"""Intel RealSense cameras (D400 series) behind the Cameras interface, live or from a recording.

Each camera has its own ``pyrealsense2`` pipeline and capture thread. The thread keeps
only the newest frame (copied out of librealsense's frame pool) with its device timestamp
and the host's ``time.monotonic()`` at arrival, so ``read()`` returns at once with the
newest frame of every camera instead of waiting on a device.

A ``kind: replay`` camera plays a file recorded by librealsense (``rs.recorder``, the
RealSense Viewer; ``.db3`` since librealsense 2.59) through the same pipeline code as a live camera:
only the device the pipeline opens differs (``enable_device_from_file`` instead of
``enable_device``), and exposure is left as recorded. Playback runs in real time (frames
come at the pace they were recorded, as from a camera) and starts over at the end of the
file unless ``loop_replay=False``; a looping replay's timestamps restart with each loop.
The config's ``resolution_wh`` and ``fps`` must match a colour stream of the recording.

Freshness and reconnection:

- A frame is stale when it arrived more than ``max(STALE_AFTER_FRAME_PERIODS / fps,
  MIN_STALE_AGE_S)`` ago (100 ms at 30 fps): three frame periods absorb a late frame and
  the scheduling jitter of a busy host, while an observation older than that would show
  the policy a scene from before its last action. ``read()`` waits at most
  ``read_timeout_s`` for a camera whose newest frame is stale, then raises
  ``CameraUnavailableError`` naming the camera, its serial or file, and the frame's age.
- With no frame for ``lost_after_s`` (``first_frame_timeout_s`` right after a start), or
  when the pipeline raises (USB unplugged, device error), the capture thread logs it,
  stops the pipeline and starts it again, waiting 0.5 s, 1 s, 2 s ... (at most
  ``reconnect_backoff_s[1]``) between failed attempts. Meanwhile ``read()`` raises at once
  that the camera is disconnected, with the reason. Every start runs the same checks as
  the first (serial connected, streams available, exposure set), so a camera that comes
  back after a replug gets its exposure again.

Depth (``depth: true``) is streamed at the colour resolution and rate, brought into the
colour image's pixels, cropped and resized like the image (nearest neighbour, so no depth
is invented at edges) and returned in metres in ``RealSenseFrames.depth_m``; 0 means no
depth measured there. Where depth and colour come from different imagers (D415, D435,
D455) librealsense's ``rs.align`` reprojects the depth. Where they share one imager and one
set of intrinsics (D405) the depth already is in colour pixels and is used as it is:
aligning identical cameras at the same resolution only punches rows and columns of holes
into the depth (each depth pixel lands on exactly one colour pixel, and rounding drops some).

pyrealsense2 carries its own DDS: a process that imports it before rclpy crashes at exit
(SIGSEGV), while rclpy first is fine. The ROS nodes import rclpy first; any other process
that uses both must do the same.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import pyrealsense2 as rs

from robot_stack.config.schema import CameraConfig
from robot_stack.hardware.images import crop_and_resize
from robot_stack.hardware.interfaces import CameraFrames

log = logging.getLogger(__name__)

STALE_AFTER_FRAME_PERIODS = 3
MIN_STALE_AGE_S = 0.05
# The dedicated RGB sensor of a D415/D435/D455 counts exposure in units of 100 us; the
# stereo module (which also streams colour on a D405) counts in microseconds.
RGB_SENSOR_EXPOSURE_UNIT_US = 100.0
_FPS_WINDOW_S = 2.0
_POLL_S = 0.1  # how often a waiting capture thread looks at its stop flag


class CameraUnavailableError(RuntimeError):
    """A camera has no fresh frame: none yet, its newest is stale, or it is disconnected."""


@dataclass(frozen=True)
class RealSenseDeviceInfo:
    serial: str
    name: str  # e.g. "Intel RealSense D405"
    firmware: str
    usb: str  # USB type the device enumerated as, e.g. "3.2"; "" if it does not say


@dataclass(frozen=True)
class RealSenseFrames(CameraFrames):
    """``CameraFrames`` (``timestamps_s``: the device's timestamp of each image, in seconds)
    plus what only a RealSense gives."""

    received_s: dict[str, float] = field(default_factory=dict)  # host time.monotonic() at arrival
    frame_numbers: dict[str, int] = field(default_factory=dict)
    # Only cameras with depth enabled: (H, W) float32 metres, aligned to the colour image and
    # cropped and resized like it; 0 where the camera measured no depth.
    depth_m: dict[str, np.ndarray] = field(default_factory=dict)
    depth_timestamps_s: dict[str, float] = field(default_factory=dict)  # device time of each depth image


@dataclass(frozen=True)
class CameraStatus:
    """How a camera is doing, for a bring-up tool or a health check."""

    name: str
    source: str  # "serial 130322274175" or "recording /path/to/file.db3"
    connected: bool
    frames_received: int
    measured_fps: float  # colour frames received per second over the last 2 s
    reconnects: int
    newest_frame_age_s: Optional[float]  # None before the first frame
    last_error: Optional[str]


def list_devices() -> list[RealSenseDeviceInfo]:
    """The RealSense devices connected to this host."""
    return [_device_info(device) for device in rs.context().query_devices()]


def _device_info(device: rs.device) -> RealSenseDeviceInfo:
    def info(key: rs.camera_info) -> str:
        return device.get_info(key) if device.supports(key) else ""

    return RealSenseDeviceInfo(
        serial=info(rs.camera_info.serial_number),
        name=info(rs.camera_info.name),
        firmware=info(rs.camera_info.firmware_version),
        usb=info(rs.camera_info.usb_type_descriptor),
    )


def describe_devices(devices: list[RealSenseDeviceInfo]) -> str:
    if not devices:
        return "none"
    return "; ".join(f"{d.serial} ({d.name}, firmware {d.firmware or '?'})" for d in devices)


def apply_exposure(sensor: rs.sensor, exposure_us: Optional[int], camera: str = "") -> None:
    """Fixed exposure of ``exposure_us`` microseconds (auto exposure off), or auto exposure
    when ``exposure_us`` is None, on the sensor that streams colour."""
    label = f"camera '{camera}': " if camera else ""
    if exposure_us is None:
        if sensor.supports(rs.option.enable_auto_exposure):
            sensor.set_option(rs.option.enable_auto_exposure, 1)
        return
    for option in (rs.option.enable_auto_exposure, rs.option.exposure):
        if not sensor.supports(option):
            raise ValueError(f"{label}the colour sensor '{sensor.name}' has no {option} option; remove exposure_us")
    unit_us = RGB_SENSOR_EXPOSURE_UNIT_US if sensor.is_color_sensor() else 1.0
    value = round(exposure_us / unit_us)
    allowed = sensor.get_option_range(rs.option.exposure)
    if not allowed.min <= value <= allowed.max:
        raise ValueError(
            f"{label}exposure_us {exposure_us} is outside what the colour sensor '{sensor.name}' allows "
            f"({allowed.min * unit_us:g}..{allowed.max * unit_us:g} us)"
        )
    sensor.set_option(rs.option.enable_auto_exposure, 0)
    sensor.set_option(rs.option.exposure, float(value))


def depth_needs_alignment(profile: rs.pipeline_profile) -> bool:
    """False when the depth stream already is in the colour stream's pixels: the same
    intrinsics and an identity transform between the two."""
    colour = profile.get_stream(rs.stream.color).as_video_stream_profile()
    depth = profile.get_stream(rs.stream.depth).as_video_stream_profile()
    a, b = colour.get_intrinsics(), depth.get_intrinsics()
    same_intrinsics = (
        (a.width, a.height, a.model) == (b.width, b.height, b.model)
        and np.allclose([a.fx, a.fy, a.ppx, a.ppy], [b.fx, b.fy, b.ppx, b.ppy], rtol=0.0, atol=1e-3)
        and np.allclose(a.coeffs, b.coeffs, rtol=0.0, atol=1e-6)
    )
    extrinsics = depth.get_extrinsics_to(colour)
    identity = np.allclose(extrinsics.rotation, np.eye(3).ravel(), rtol=0.0, atol=1e-6) and np.allclose(
        extrinsics.translation, 0.0, rtol=0.0, atol=1e-6
    )
    return not (same_intrinsics and identity)


def crop_and_resize_depth(depth: np.ndarray, units_m: float, config: CameraConfig) -> np.ndarray:
    """Crop (in capture pixels) and resize a raw depth image like ``crop_and_resize`` does
    the colour image, by nearest neighbour; returns float32 metres."""
    if config.crop_xywh is not None:
        x, y, w, h = config.crop_xywh
        depth = depth[y : y + h, x : x + w]
    out_h, out_w = config.output_size_hw
    in_h, in_w = depth.shape
    rows = np.minimum(((np.arange(out_h) + 0.5) * in_h / out_h).astype(np.intp), in_h - 1)
    cols = np.minimum(((np.arange(out_w) + 0.5) * in_w / out_w).astype(np.intp), in_w - 1)
    return depth[rows[:, None], cols[None, :]].astype(np.float32) * np.float32(units_m)


@dataclass(frozen=True)
class _Frame:
    image: np.ndarray  # full capture, (H, W, 3) uint8
    timestamp_s: float
    frame_number: int
    received_s: float
    depth: Optional[np.ndarray] = None  # full capture, (H, W) uint16 in depth units
    depth_units_m: float = 0.0
    depth_timestamp_s: float = 0.0


class _Capture:
    """One camera: its pipeline, the thread that reads it, and the newest frame."""

    def __init__(
        self,
        name: str,
        config: CameraConfig,
        loop_replay: bool,
        lost_after_s: float,
        first_frame_timeout_s: float,
        reconnect_backoff_s: tuple[float, float],
    ):
        self.name = name
        self.config = config
        self.loop_replay = loop_replay
        self.lost_after_s = lost_after_s
        self.first_frame_timeout_s = first_frame_timeout_s
        self.reconnect_backoff_s = reconnect_backoff_s
        self.stale_after_s = max(STALE_AFTER_FRAME_PERIODS / config.fps, MIN_STALE_AGE_S)
        if config.kind == "realsense":
            self.source = f"serial {config.serial}"
        else:
            self.source = f"recording {config.replay_path}"
        self._condition = threading.Condition()
        self._newest: Optional[_Frame] = None
        self._connected = False
        self._last_error: Optional[str] = None
        self._frames_received = 0
        self._reconnects = 0
        self._arrivals: deque[float] = deque()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.intrinsics: Optional[tuple[float, float, float, float]] = None  # fx, fy, ppx, ppy (capture px)

    # ------------------------------------------------------------------ starting

    def start_pipeline(self) -> rs.pipeline:
        """Opens the camera (or the recording) and starts streaming; raises what is wrong."""
        config = self.config
        stream_config = rs.config()
        if config.kind == "realsense":
            connected = list_devices()
            if config.serial not in {device.serial for device in connected}:
                raise ValueError(
                    f"camera '{self.name}': no RealSense with serial {config.serial} is connected "
                    f"(connected: {describe_devices(connected)})"
                )
            stream_config.enable_device(config.serial)
        elif config.kind == "replay":
            if not Path(config.replay_path).is_file():
                raise FileNotFoundError(f"camera '{self.name}': recording {config.replay_path} does not exist")
            stream_config.enable_device_from_file(str(config.replay_path), repeat_playback=self.loop_replay)
        else:
            raise ValueError(f"camera '{self.name}' is kind '{config.kind}'; RealSenseCameras opens realsense and replay cameras")
        width, height = config.resolution_wh
        stream_config.enable_stream(rs.stream.color, width, height, rs.format.rgb8, config.fps)
        if config.depth:
            stream_config.enable_stream(rs.stream.depth, width, height, rs.format.z16, config.fps)

        pipeline = rs.pipeline()
        try:
            profile = pipeline.start(stream_config)
        except RuntimeError as error:
            raise ValueError(
                f"camera '{self.name}' ({self.source}) could not start colour{' and depth' if config.depth else ''} "
                f"at {width}x{height} @ {config.fps} fps: {error}; it offers: {self._offered_streams()}"
            ) from error
        try:
            self._check_started(profile)
        except Exception:
            _stop_quietly(pipeline)
            raise
        return pipeline

    def _check_started(self, profile: rs.pipeline_profile) -> None:
        colour = profile.get_stream(rs.stream.color).as_video_stream_profile()
        capture_w, capture_h = colour.width(), colour.height()
        k = colour.get_intrinsics()
        self.intrinsics = (float(k.fx), float(k.fy), float(k.ppx), float(k.ppy))
        if self.config.crop_xywh is not None:
            x, y, w, h = self.config.crop_xywh
            if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > capture_w or y + h > capture_h:
                raise ValueError(
                    f"camera '{self.name}': crop_xywh {self.config.crop_xywh} does not fit inside the "
                    f"{capture_w}x{capture_h} capture"
                )
        device = profile.get_device()
        if device.is_playback():
            # Frames come at the pace they were recorded, as from a camera.
            device.as_playback().set_real_time(True)
            return
        colour_sensors = [
            sensor for sensor in device.query_sensors()
            if any(p.stream_type() == rs.stream.color for p in sensor.get_stream_profiles())
        ]
        apply_exposure(colour_sensors[0], self.config.exposure_us, self.name)

    def _offered_streams(self) -> str:
        """The colour and depth streams the camera or recording has, for an error message."""
        context = rs.context()
        try:
            if self.config.kind == "replay":
                device = context.load_device(str(self.config.replay_path))
            else:
                device = next(d for d in context.query_devices() if d.get_info(rs.camera_info.serial_number) == self.config.serial)
            offered = sorted({
                f"{p.stream_type().name} {p.as_video_stream_profile().width()}x{p.as_video_stream_profile().height()} "
                f"@ {p.fps()} fps {p.format().name}"
                for sensor in device.query_sensors()
                for p in sensor.get_stream_profiles()
                if p.stream_type() in (rs.stream.color, rs.stream.depth) and p.is_video_stream_profile()
            })
        except Exception as error:  # the description is a courtesy; the start error is what matters
            return f"(could not list its streams: {error})"
        finally:
            if self.config.kind == "replay":
                try:
                    context.unload_device(str(self.config.replay_path))
                except RuntimeError:
                    pass
        return ", ".join(offered) or "no colour or depth streams"

    def run_in_thread(self, pipeline: rs.pipeline) -> None:
        with self._condition:
            self._connected = True
        self._thread = threading.Thread(target=self._run, args=(pipeline,), name=f"realsense-{self.name}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ the capture thread

    def _run(self, pipeline: Optional[rs.pipeline]) -> None:
        first_delay_s, max_delay_s = self.reconnect_backoff_s
        delay_s = first_delay_s
        while not self._stop.is_set():
            if pipeline is None:
                try:
                    pipeline = self.start_pipeline()
                except Exception as error:
                    self._set_disconnected(f"reconnecting failed: {error}")
                    log.warning("camera '%s' (%s): reconnecting failed, next try in %.1f s: %s", self.name, self.source, delay_s, error)
                    self._stop.wait(delay_s)
                    delay_s = min(2.0 * delay_s, max_delay_s)
                    continue
                delay_s = first_delay_s
                with self._condition:
                    self._connected = True
                    self._reconnects += 1
                log.info("camera '%s' (%s) reconnected", self.name, self.source)
            try:
                self._stream(pipeline)
            except Exception as error:
                self._set_disconnected(str(error))
                log.warning("camera '%s' (%s) lost: %s; restarting its pipeline", self.name, self.source, error)
            finally:
                _stop_quietly(pipeline)
                pipeline = None

    def _stream(self, pipeline: rs.pipeline) -> None:
        """Keeps the newest frame until stopped; raises when the camera stops delivering."""
        align = None
        if self.config.depth and depth_needs_alignment(pipeline.get_active_profile()):
            align = rs.align(rs.stream.color)
        last_arrival = time.monotonic()
        allowed_gap_s = self.first_frame_timeout_s
        while not self._stop.is_set():
            ok, frames = pipeline.try_wait_for_frames(int(_POLL_S * 1000))
            now = time.monotonic()
            if not ok:
                if now - last_arrival > allowed_gap_s:
                    raise CameraUnavailableError(f"no frame for {now - last_arrival:.1f} s")
                continue
            if align is not None:
                frames = align.process(frames)
            self._keep(frames, now)
            last_arrival = now
            allowed_gap_s = self.lost_after_s

    def _keep(self, frames: rs.composite_frame, received_s: float) -> None:
        colour = frames.get_color_frame()
        if not colour:
            return
        timestamp_s = colour.get_timestamp() / 1000.0
        frame_number = colour.get_frame_number()
        depth = frames.get_depth_frame() if self.config.depth else None
        depth_timestamp_s = depth.get_timestamp() / 1000.0 if depth else 0.0
        newest = self._newest  # only this thread replaces it
        same_colour = newest is not None and (newest.timestamp_s, newest.frame_number) == (timestamp_s, frame_number)
        if same_colour:
            # The pipeline's syncer can hand out one colour frame twice, with the depth frame
            # before it and then with its match: keep the depth closest in time to the image.
            if not depth or newest.depth is not None and (
                abs(depth_timestamp_s - timestamp_s) >= abs(newest.depth_timestamp_s - timestamp_s)
            ):
                return
        frame = _Frame(
            image=newest.image if same_colour else np.asanyarray(colour.get_data()).copy(),
            timestamp_s=timestamp_s,
            frame_number=frame_number,
            received_s=newest.received_s if same_colour else received_s,
            depth=np.asanyarray(depth.get_data()).copy() if depth else None,
            depth_units_m=depth.get_units() if depth else 0.0,
            depth_timestamp_s=depth_timestamp_s,
        )
        with self._condition:
            self._newest = frame
            if not same_colour:
                self._frames_received += 1
                self._arrivals.append(received_s)
                while self._arrivals[0] < received_s - _FPS_WINDOW_S:
                    self._arrivals.popleft()
            self._condition.notify_all()

    def _set_disconnected(self, reason: str) -> None:
        with self._condition:
            self._connected = False
            self._last_error = reason
            self._condition.notify_all()

    # ------------------------------------------------------------------ for the caller

    def fresh_frame(self, deadline_s: float) -> _Frame:
        """The newest frame once it is fresh, waiting until ``deadline_s`` (monotonic) at most."""
        with self._condition:
            while True:
                if not self._connected:
                    raise CameraUnavailableError(
                        f"camera '{self.name}' ({self.source}) is disconnected: {self._last_error}; reconnecting"
                    )
                now = time.monotonic()
                newest = self._newest
                if newest is not None and now - newest.received_s <= self.stale_after_s:
                    return newest
                if now >= deadline_s:
                    if newest is None:
                        raise CameraUnavailableError(f"camera '{self.name}' ({self.source}) has delivered no frame yet")
                    raise CameraUnavailableError(
                        f"camera '{self.name}' ({self.source}) is stale: its newest frame is {now - newest.received_s:.3f} s "
                        f"old (allowed: {self.stale_after_s:.3f} s at {self.config.fps} fps)"
                    )
                self._condition.wait(deadline_s - now)

    def wait_first_frame(self, deadline_s: float) -> bool:
        with self._condition:
            return self._condition.wait_for(lambda: self._newest is not None, max(0.0, deadline_s - time.monotonic()))

    def status(self) -> CameraStatus:
        with self._condition:
            now = time.monotonic()
            arrivals = [t for t in self._arrivals if t >= now - _FPS_WINDOW_S]
            span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
            return CameraStatus(
                name=self.name,
                source=self.source,
                connected=self._connected,
                frames_received=self._frames_received,
                measured_fps=(len(arrivals) - 1) / span if span > 0 else 0.0,
                reconnects=self._reconnects,
                newest_frame_age_s=None if self._newest is None else now - self._newest.received_s,
                last_error=self._last_error,
            )

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def _stop_quietly(pipeline: rs.pipeline) -> None:
    try:
        device = pipeline.get_active_profile().get_device()
        if device.is_playback():
            # Stopping a playback while it hands out a frame can abort the process ("pure
            # virtual method called"; about one stop in a few hundred here): pausing first
            # waits for the frames in flight and stops reading the file.
            device.as_playback().pause()
    except RuntimeError as error:  # not started, or the device is gone
        log.debug("pausing a RealSense playback: %s", error)
    try:
        pipeline.stop()
    except RuntimeError as error:  # already stopped, or the device is gone
        log.debug("stopping a RealSense pipeline: %s", error)


class RealSenseCameras:
    """RealSense cameras (live or replayed), each read on its own thread.

    Construction opens every camera, checks its config against what it streams and waits
    for a first frame of each (``first_frame_timeout_s``); any problem raises naming the
    camera. ``read()`` returns the newest frame of every camera as ``RealSenseFrames``.
    """

    def __init__(
        self,
        cameras: Mapping[str, CameraConfig],
        names: tuple[str, ...],
        read_timeout_s: float = 0.5,
        lost_after_s: float = 1.0,
        first_frame_timeout_s: float = 5.0,
        reconnect_backoff_s: tuple[float, float] = (0.5, 8.0),
        loop_replay: bool = True,
    ):
        self.names = tuple(names)
        self.read_timeout_s = read_timeout_s
        self._closed = False
        missing = [name for name in self.names if name not in cameras]
        if missing:
            raise ValueError(f"cameras {missing} are not configured (configured: {sorted(cameras)})")
        self._captures = {
            name: _Capture(name, cameras[name], loop_replay, lost_after_s, first_frame_timeout_s, reconnect_backoff_s)
            for name in self.names
        }
        started: list[rs.pipeline] = []
        try:
            for capture in self._captures.values():
                started.append(capture.start_pipeline())
        except Exception:
            for pipeline in started:
                _stop_quietly(pipeline)
            raise
        for capture, pipeline in zip(self._captures.values(), started):
            capture.run_in_thread(pipeline)
        deadline_s = time.monotonic() + first_frame_timeout_s
        silent = [capture for capture in self._captures.values() if not capture.wait_first_frame(deadline_s)]
        if silent:
            self.close()
            raise CameraUnavailableError(
                f"no frame within {first_frame_timeout_s} s from: "
                + ", ".join(f"camera '{c.name}' ({c.source})" for c in silent)
            )

    def read(self) -> RealSenseFrames:
        """The newest frame of every camera, cropped and resized to its output size.

        Raises ``CameraUnavailableError`` (naming the camera) if a camera is disconnected,
        or has no fresh frame within ``read_timeout_s``."""
        if self._closed:
            raise RuntimeError(f"cameras {list(self.names)} are closed")
        deadline_s = time.monotonic() + self.read_timeout_s
        newest = {name: capture.fresh_frame(deadline_s) for name, capture in self._captures.items()}
        images, depth_m, depth_timestamps_s = {}, {}, {}
        for name, frame in newest.items():
            config = self._captures[name].config
            images[name] = crop_and_resize(frame.image, config)
            if frame.depth is not None:
                depth_m[name] = crop_and_resize_depth(frame.depth, frame.depth_units_m, config)
                depth_timestamps_s[name] = frame.depth_timestamp_s
        return RealSenseFrames(
            images=images,
            timestamps_s={name: frame.timestamp_s for name, frame in newest.items()},
            received_s={name: frame.received_s for name, frame in newest.items()},
            frame_numbers={name: frame.frame_number for name, frame in newest.items()},
            depth_m=depth_m,
            depth_timestamps_s=depth_timestamps_s,
        )

    def status(self) -> dict[str, CameraStatus]:
        """Per camera: connected, frames received, measured frame rate, reconnects, last error."""
        return {name: capture.status() for name, capture in self._captures.items()}

    def intrinsics(self, name: str) -> tuple[float, float, float, float]:
        """The colour stream's pinhole intrinsics (fx, fy, ppx, ppy) in capture pixels, from the
        device's calibration (or the recording's), before the crop and the resize."""
        if name not in self._captures:
            raise KeyError(f"camera '{name}' is not one of {list(self._captures)}")
        intrinsics = self._captures[name].intrinsics
        if intrinsics is None:
            raise RuntimeError(f"camera '{name}' has not started yet: no intrinsics")
        return intrinsics

    def close(self) -> None:
        self._closed = True
        for capture in self._captures.values():
            capture.stop()
