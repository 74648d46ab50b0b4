"""RealSense cameras, tested on recordings played back through the real pyrealsense2 pipeline.

The recordings (realsense_recording.py) are made by a software device, so no camera is
needed: each colour frame k shows four coloured quadrants plus k in every channel, and
carries the timestamp 5.0 s + k / 30 s; depth frame k is 1.00 m + k cm on the left half and
1.50 m + k cm on the right half.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time

import numpy as np
import pytest

pytest.importorskip("pyrealsense2", reason="pyrealsense2 does not import (on Linux it needs Debian's libusb-1.0-0)")

import pyrealsense2 as rs  # noqa: E402
from realsense_recording import QUADRANTS_RGB, counter_of, record  # noqa: E402

from robot_stack.config.schema import CameraConfig  # noqa: E402
from robot_stack.hardware.images import crop_and_resize  # noqa: E402
from robot_stack.hardware.interfaces import Cameras  # noqa: E402
from robot_stack.hardware.realsense import (  # noqa: E402
    CameraUnavailableError,
    RealSenseCameras,
    RealSenseDeviceInfo,
    apply_exposure,
    list_devices,
)

CROP_XYWH = (16, 8, 64, 48)  # of the 96x64 capture; the quadrants meet at (48, 32)
OUTPUT_HW = (24, 32)  # half the crop's size
SIDE_QUADRANTS_RGB = ((0, 100, 0), (0, 0, 100), (100, 0, 0), (0, 100, 100))


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Recordings are made in real time, so all of them are made at once, once."""
    folder = tmp_path_factory.mktemp("realsense")
    specs = {
        "front": dict(n_frames=45),
        "side": dict(n_frames=45, serial="000000000002", quadrants_rgb=SIDE_QUADRANTS_RGB),
        "depth_same_imager": dict(n_frames=45, depth=True),
        "depth_other_imager": dict(n_frames=45, depth=True, colour_focal_scale=1.25, colour_principal_shift_px=8.0),
        "short": dict(n_frames=9),
    }
    made = {}
    threads = [
        threading.Thread(target=lambda name=name, spec=spec: made.__setitem__(name, record(folder / f"{name}.db3", **spec)))
        for name, spec in specs.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(made) == set(specs), "a recording failed"
    return made


@pytest.fixture
def open_cameras():
    opened = []

    def open_(configs: dict[str, CameraConfig], **options) -> RealSenseCameras:
        cameras = RealSenseCameras(configs, tuple(configs), **options)
        opened.append(cameras)
        return cameras

    yield open_
    for cameras in opened:
        cameras.close()


def replay_config(recording, **fields) -> CameraConfig:
    return CameraConfig(
        kind="replay", replay_path=recording.path, resolution_wh=recording.size_wh, fps=recording.fps, **fields
    )


def wait_until(condition, timeout_s: float = 5.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        outcome = condition()
        if outcome:
            return outcome
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def read_error(cameras: RealSenseCameras) -> str | None:
    try:
        cameras.read()
    except CameraUnavailableError as error:
        return str(error)
    return None


def read_frames(cameras: RealSenseCameras):
    try:
        return cameras.read()
    except CameraUnavailableError:
        return None


# ---------------------------------------------------------------------- frames


def test_realsense_cameras_implement_the_cameras_interface(recordings, open_cameras):
    cameras = open_cameras({"front": replay_config(recordings["front"])})
    assert isinstance(cameras, Cameras)
    assert cameras.names == ("front",)


def test_replayed_image_is_the_recorded_frame_cropped_and_resized(recordings, open_cameras):
    recording = recordings["front"]
    config = replay_config(recording, crop_xywh=CROP_XYWH, output_size_hw=OUTPUT_HW)
    cameras = open_cameras({"front": config})

    frames = cameras.read()

    image = frames.images["front"]
    assert image.shape == (24, 32, 3) and image.dtype == np.uint8
    counter = counter_of(image)
    np.testing.assert_array_equal(image, crop_and_resize(recording.image(counter), config))
    # The crop spans 32 px of each quadrant horizontally and 24 px vertically: halved, 16 and 12.
    top_left, top_right, bottom_left, bottom_right = (np.array(rgb) + counter for rgb in QUADRANTS_RGB)
    np.testing.assert_array_equal(image[2, 2], top_left)
    np.testing.assert_array_equal(image[2, 29], top_right)
    np.testing.assert_array_equal(image[21, 2], bottom_left)
    np.testing.assert_array_equal(image[21, 29], bottom_right)
    assert frames.timestamps_s["front"] == pytest.approx(recording.timestamps_s[counter], abs=1e-6)


def test_timestamps_increase_and_are_the_recorded_ones(recordings, open_cameras):
    recording = recordings["front"]
    cameras = open_cameras({"front": replay_config(recording)}, loop_replay=False)

    reads = []
    for _ in range(6):
        reads.append(cameras.read())
        time.sleep(0.1)

    counters = [counter_of(frames.images["front"]) for frames in reads]
    timestamps = [frames.timestamps_s["front"] for frames in reads]
    assert counters == sorted(set(counters)), "each read returns a newer frame"
    assert timestamps == pytest.approx([recording.timestamps_s[k] for k in counters], abs=1e-6)
    assert np.all(np.diff([frames.received_s["front"] for frames in reads]) > 0)


def test_two_cameras_are_read_at_once(recordings, open_cameras):
    front, side = recordings["front"], recordings["side"]
    configs = {"front": replay_config(front, output_size_hw=(32, 48)), "side": replay_config(side, output_size_hw=(16, 16))}
    cameras = open_cameras(configs)

    frames = cameras.read()

    assert set(frames.images) == {"front", "side"}
    assert frames.images["front"].shape == (32, 48, 3) and frames.images["side"].shape == (16, 16, 3)
    for name, recording in (("front", front), ("side", side)):
        counter = counter_of(frames.images[name])
        np.testing.assert_array_equal(frames.images[name], crop_and_resize(recording.image(counter), configs[name]))
        assert frames.timestamps_s[name] == pytest.approx(recording.timestamps_s[counter], abs=1e-6)


def test_status_measures_each_cameras_frame_rate(recordings, open_cameras):
    cameras = open_cameras({"front": replay_config(recordings["front"]), "side": replay_config(recordings["side"])})
    time.sleep(1.0)

    status = cameras.status()

    for name in ("front", "side"):
        assert status[name].connected and status[name].reconnects == 0 and status[name].last_error is None
        assert status[name].frames_received >= 20
        assert 24.0 < status[name].measured_fps < 36.0  # recorded at 30 fps


# ---------------------------------------------------------------------- depth


def test_depth_from_the_colour_imager_is_the_recorded_depth_in_metres(recordings, open_cameras):
    # Depth and colour from one imager (a D405) need no alignment, and get none: aligning
    # them would punch rows and columns of holes into the depth.
    recording = recordings["depth_same_imager"]
    cameras = open_cameras({"wrist": replay_config(recording, output_size_hw=(64, 96), depth=True)})

    reads = []
    for _ in range(5):
        reads.append(cameras.read())
        time.sleep(0.05)

    for frames in reads:
        depth = frames.depth_m["wrist"]
        assert depth.shape == (64, 96) and depth.dtype == np.float32
        k = recording.timestamps_s.index(pytest.approx(frames.depth_timestamps_s["wrist"], abs=1e-6))
        np.testing.assert_allclose(depth, recording.depth_raw(k) * 0.001, atol=1e-6)


def test_depth_from_another_imager_is_aligned_to_the_colour_image_cropped_and_resized(recordings, open_cameras):
    recording = recordings["depth_other_imager"]
    cameras = open_cameras({"wrist": replay_config(recording, crop_xywh=CROP_XYWH, output_size_hw=OUTPUT_HW, depth=True)})

    frames = cameras.read()

    depth = frames.depth_m["wrist"]
    assert depth.shape == (24, 32) and depth.dtype == np.float32
    k = recording.timestamps_s.index(pytest.approx(frames.depth_timestamps_s["wrist"], abs=1e-6))
    # The colour camera's principal point is 8 px right of the depth camera's, so in colour
    # pixels the halves meet at column 56. Nearest neighbour: output column j shows crop
    # column 2j + 1, capture column 2j + 17, so output columns 0-19 are the left half.
    np.testing.assert_allclose(depth[:, :20], 1.00 + 0.01 * k, atol=1e-6)
    np.testing.assert_allclose(depth[:, 20:], 1.50 + 0.01 * k, atol=1e-6)


def test_cameras_without_depth_return_no_depth(recordings, open_cameras):
    cameras = open_cameras({"front": replay_config(recordings["front"])})
    assert cameras.read().depth_m == {}


# ---------------------------------------------------------------------- refused configs


def test_missing_recording_is_refused_naming_camera_and_file(tmp_path, open_cameras):
    config = CameraConfig(kind="replay", replay_path=tmp_path / "nothing.db3")
    with pytest.raises(FileNotFoundError, match=r"camera 'front': recording .*nothing\.db3 does not exist"):
        open_cameras({"front": config})


def test_crop_outside_the_capture_is_refused(recordings, open_cameras):
    # The schema refuses such a crop when it loads a YAML file; a config built around it
    # (model_copy does not validate) is still checked against what the camera streams.
    config = replay_config(recordings["front"]).model_copy(update={"crop_xywh": (40, 0, 64, 64)})
    with pytest.raises(ValueError, match=r"camera 'front': crop_xywh \(40, 0, 64, 64\) does not fit inside the 96x64 capture"):
        open_cameras({"front": config})


def test_stream_the_recording_lacks_is_refused_listing_what_it_has(recordings, open_cameras):
    config = replay_config(recordings["front"]).model_copy(update={"resolution_wh": (640, 480)})
    with pytest.raises(ValueError, match=r"camera 'front' .* could not start colour at 640x480 @ 30 fps.*it offers: color 96x64 @ 30 fps rgb8"):
        open_cameras({"front": config})


def test_unknown_serial_is_refused_listing_the_connected_devices(open_cameras):
    config = CameraConfig(kind="realsense", serial="000000000000")
    with pytest.raises(ValueError, match=r"camera 'wrist': no RealSense with serial 000000000000 is connected \(connected: "):
        open_cameras({"wrist": config})


def test_simulated_camera_is_refused(open_cameras):
    with pytest.raises(ValueError, match="camera 'front' is kind 'sim'"):
        open_cameras({"front": CameraConfig(kind="sim")})


def test_list_devices_describes_every_connected_device():
    devices = list_devices()
    assert all(isinstance(device, RealSenseDeviceInfo) and device.serial for device in devices)


# ---------------------------------------------------------------------- exposure


def software_sensor_with_exposure() -> rs.software_sensor:
    sensor = rs.software_device().add_sensor("Stereo Module")
    for option, low, high, default in ((rs.option.exposure, 1, 165000, 8500), (rs.option.enable_auto_exposure, 0, 1, 1)):
        allowed = rs.option_range()
        allowed.min, allowed.max, allowed.step, allowed.default = low, high, 1, default
        sensor.add_option(option, allowed, True)
    return sensor


def test_exposure_is_fixed_in_microseconds_or_left_to_auto_exposure():
    sensor = software_sensor_with_exposure()

    apply_exposure(sensor, 10500)
    assert sensor.get_option(rs.option.exposure) == 10500
    assert sensor.get_option(rs.option.enable_auto_exposure) == 0

    apply_exposure(sensor, None)
    assert sensor.get_option(rs.option.enable_auto_exposure) == 1


def test_exposure_outside_the_sensors_range_is_refused():
    with pytest.raises(ValueError, match=r"camera 'wrist': exposure_us 180000 is outside .* \(1\.\.165000 us\)"):
        apply_exposure(software_sensor_with_exposure(), 180000, "wrist")


# ---------------------------------------------------------------------- stale and lost cameras


def test_read_reports_a_camera_whose_frames_stopped_as_stale(recordings, open_cameras):
    # The short recording ends after 0.3 s and is not replayed: the camera falls silent.
    cameras = open_cameras(
        {"front": replay_config(recordings["short"])}, loop_replay=False, lost_after_s=30.0, read_timeout_s=0.05
    )
    cameras.read()

    error = wait_until(lambda: read_error(cameras))

    assert "camera 'front' (recording " in error and "short.db3) is stale: its newest frame is" in error
    assert cameras.status()["front"].connected


def test_lost_camera_reads_as_disconnected_until_it_is_back(recordings, open_cameras, tmp_path, caplog):
    # A recording that ends is a camera that stops delivering: after lost_after_s the
    # pipeline is stopped and started again, which fails while the file is away.
    path = tmp_path / "camera.db3"
    shutil.copy(recordings["short"].path, path)
    config = CameraConfig(kind="replay", replay_path=path, resolution_wh=(96, 64), fps=30)
    caplog.set_level(logging.INFO, logger="robot_stack.hardware.realsense")
    cameras = open_cameras(
        {"front": config}, loop_replay=False, lost_after_s=0.2, read_timeout_s=0.05, reconnect_backoff_s=(0.05, 0.2)
    )
    cameras.read()
    path.rename(tmp_path / "away.db3")

    wait_until(lambda: "does not exist" in (cameras.status()["front"].last_error or ""))
    error = read_error(cameras)
    (tmp_path / "away.db3").rename(path)
    frames = wait_until(lambda: read_frames(cameras))

    assert error is not None
    assert f"camera 'front' (recording {path}) is disconnected: reconnecting failed: " in error
    assert "does not exist" in error
    assert counter_of(frames.images["front"]) < 9
    assert cameras.status()["front"].reconnects >= 1
    messages = [record.getMessage() for record in caplog.records]
    assert any("camera 'front'" in m and "lost: no frame for" in m for m in messages)
    assert any("camera 'front'" in m and "reconnected" in m for m in messages)
