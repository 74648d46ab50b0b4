"""The SpaceMouse teleop device, driven with raw HID report bytes (no HID device needed)."""

from __future__ import annotations

import errno
import math
import os
import queue
import struct
import threading
import time
from functools import partial
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest

from robot_stack.config.schema import TeleopConfig
from robot_stack.control.rotations import matrix_from_rpy
from robot_stack.hardware.interfaces import TeleopDevice
from robot_stack.hardware.spacemouse import (
    HidReport,
    MalformedReportError,
    SpaceMouse,
    SpaceMouseConnection,
    SpaceMouseModel,
    SpaceMouseOpenError,
    TeleopDisconnected,
    command_from_device,
    list_spacemice,
    model_for_ids,
    open_spacemouse,
    parse_report,
)

NAVIGATOR = model_for_ids(0x046D, 0xC626)  # split reports, two buttons
WIRELESS = model_for_ids(0x256F, 0xC62E)  # six-axis report 1, two buttons
PRO = model_for_ids(0x046D, 0xC62B)  # split reports, many buttons


# -- raw reports as the devices send them ---------------------------------------------


def translation_report(x: int, y: int, z: int) -> bytes:
    return struct.pack("<B3h", 1, x, y, z)


def rotation_report(rx: int, ry: int, rz: int) -> bytes:
    return struct.pack("<B3h", 2, rx, ry, rz)


def six_axis_report(x: int, y: int, z: int, rx: int, ry: int, rz: int) -> bytes:
    return struct.pack("<B6h", 1, x, y, z, rx, ry, rz)


def button_report(*pressed: int, mask_bytes: int = 4) -> bytes:
    mask = sum(1 << index for index in pressed)
    return bytes([3]) + mask.to_bytes(mask_bytes, "little")


# -- fakes ------------------------------------------------------------------------------


class FakeReportSource:
    """Hands out pushed reports in order; an unplug raises the OSError a dead hidraw node does."""

    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue()
        self.closed = False

    def push(self, *reports: bytes) -> None:
        for report in reports:
            self._queue.put(report)

    def unplug(self) -> None:
        self._queue.put(OSError(errno.EIO, "Input/output error"))

    def read(self, timeout_s: float) -> Optional[bytes]:
        try:
            item = self._queue.get(timeout=timeout_s)
        except queue.Empty:
            return None
        if isinstance(item, Exception):
            raise item
        return item

    def close(self) -> None:
        self.closed = True


class FakeConnector:
    """``connect`` for SpaceMouse: a new FakeReportSource per successful open, failing while unplugged."""

    def __init__(self, model: SpaceMouseModel = NAVIGATOR) -> None:
        self.model = model
        self.sources: list[FakeReportSource] = []
        self.plugged_in = threading.Event()
        self.plugged_in.set()

    @property
    def source(self) -> FakeReportSource:
        return self.sources[-1]

    def __call__(self) -> SpaceMouseConnection:
        if not self.plugged_in.is_set():
            raise SpaceMouseOpenError("no supported SpaceMouse found among the hidraw devices")
        self.sources.append(FakeReportSource())
        return SpaceMouseConnection(self.sources[-1], self.model, f"/dev/hidraw{len(self.sources) - 1}")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def wait_until(condition: Callable[[], bool], timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.001)


def spacemouse_config(**overrides) -> TeleopConfig:
    return TeleopConfig(kind="spacemouse", **overrides)


@pytest.fixture
def open_device():
    """Builds SpaceMouse devices and closes them after the test."""
    devices: list[SpaceMouse] = []

    def build(config: Optional[TeleopConfig] = None, **kwargs) -> SpaceMouse:
        device = SpaceMouse(config if config is not None else spacemouse_config(), **kwargs)
        devices.append(device)
        return device

    yield build
    for device in devices:
        device.close()


def counts(value: float) -> int:
    return round(value * 350)


# -- parsing ---------------------------------------------------------------------------


def test_split_report_model_sends_translation_in_report_1_and_rotation_in_report_2():
    # HID is z-down with y towards the user; device axes are z-up with y away from the user.
    assert parse_report(translation_report(175, 35, -350)) == HidReport(translation=(0.5, -0.1, 1.0))
    assert parse_report(rotation_report(70, -175, 350)) == HidReport(rotation=(0.2, 0.5, -1.0))


def test_six_axis_model_sends_all_axes_in_a_13_byte_report_1():
    parsed = parse_report(six_axis_report(175, 35, -350, 70, -175, 350))
    assert parsed == HidReport(translation=(0.5, -0.1, 1.0), rotation=(0.2, 0.5, -1.0))


def test_deflection_beyond_full_scale_is_clipped_to_one():
    assert parse_report(translation_report(420, -32768, 0)).translation == (1.0, 1.0, 0.0)


def test_button_report_bits_are_button_indices_from_byte_1_bit_0():
    assert parse_report(button_report(0, mask_bytes=1)) == HidReport(buttons=0b1)
    # SpaceMouse Pro: BTN_1 is byte 2 bit 4.
    pro_btn_1 = bytes([3, 0x00, 0x10, 0x00, 0x00])
    assert parse_report(pro_btn_1).buttons == 1 << 12
    assert PRO.button_name(12) == "BTN_1"
    assert NAVIGATOR.button_name(0) == "LEFT" and NAVIGATOR.button_name(1) == "RIGHT"
    assert WIRELESS.button_name(1) == "RIGHT"


def test_reports_without_motion_or_buttons_are_ignored():
    battery_status = bytes([0x17, 0x64, 0x00])
    assert parse_report(battery_status) is None


@pytest.mark.parametrize(
    "report",
    [b"", translation_report(1, 2, 3)[:5], rotation_report(1, 2, 3)[:6], bytes([3])],
    ids=["empty", "short-translation", "short-rotation", "buttons-without-mask"],
)
def test_short_reports_are_malformed(report):
    with pytest.raises(MalformedReportError, match="report|empty"):
        parse_report(report)


# -- mapping a device reading to a command --------------------------------------------


def test_axis_signs_flip_device_axes():
    config = spacemouse_config(deadzone=0.0, axis_signs=(1.0, -1.0, 1.0, 1.0, 1.0, -1.0))
    command = command_from_device(np.array([0.5, 0.5, 0.5, 0.2, 0.2, 0.2]), 0, config)
    np.testing.assert_allclose(command.twist, [0.5, -0.5, 0.5, 0.2, 0.2, -0.2])


def test_scales_apply_per_half_and_the_result_is_clipped_to_the_action_box():
    config = spacemouse_config(deadzone=0.0, translation_scale=2.0, rotation_scale=0.5)
    command = command_from_device(np.array([0.3, 0.6, -0.9, 0.4, -1.0, 0.0]), 0, config)
    np.testing.assert_allclose(command.twist, [0.6, 1.0, -1.0, 0.2, -0.5, 0.0])


def test_deadzone_zeroes_small_axes_and_stretches_the_rest_back_to_full_range():
    config = spacemouse_config(deadzone=0.1)
    command = command_from_device(np.array([0.05, -0.1, 0.55, -0.55, 1.0, 0.0]), 0, config)
    np.testing.assert_allclose(command.twist, [0.0, 0.0, 0.5, -0.5, 1.0, 0.0])


def test_motion_beyond_the_deadzone_is_an_intervention_and_within_it_is_not():
    config = spacemouse_config(deadzone=0.001)
    assert not command_from_device(np.array([0.0, 0.0009, 0.0, 0.0, -0.0009, 0.0]), 0, config).intervening
    assert command_from_device(np.array([0.0, 0.0, 0.0, 0.0, 0.002, 0.0]), 0, config).intervening


def test_a_mapped_button_is_an_intervention_and_an_unmapped_one_is_not():
    config = spacemouse_config(button_map={0: "gripper_close", 1: "gripper_open"})
    pressed_mapped = command_from_device(np.zeros(6), 1 << 0, config)
    pressed_unmapped = command_from_device(np.zeros(6), 1 << 5, config)
    assert pressed_mapped.intervening and np.all(pressed_mapped.twist == 0.0)
    assert not pressed_unmapped.intervening and pressed_unmapped.buttons == ()


def test_button_map_closes_and_opens_the_gripper_and_reports_other_actions():
    config = spacemouse_config(button_map={0: "gripper_close", 1: "gripper_open", 12: "success"})
    assert command_from_device(np.zeros(6), 1 << 0, config).gripper == 1.0
    assert command_from_device(np.zeros(6), 1 << 1, config).gripper == -1.0
    assert command_from_device(np.zeros(6), 0, config).gripper is None
    success = command_from_device(np.zeros(6), 1 << 12, config)
    # A command button goes to the operator console; it does not take the robot from the policy.
    assert success.buttons == ("success",) and success.gripper is None and not success.intervening
    both = command_from_device(np.zeros(6), 0b11, config)
    assert both.gripper is None and both.buttons == ("gripper_close", "gripper_open")


def test_frame_base_moves_the_gripper_along_the_push_direction_in_the_base_frame():
    yaw_pi = (0.0, 0.0, math.pi)  # operator across the table from the robot
    config = spacemouse_config(deadzone=0.0, frame="base", base_from_device_rpy_rad=yaw_pi)
    base_from_tcp = matrix_from_rpy([math.pi, 0.0, math.pi / 2])  # gripper pointing down, turned 90 deg
    device_axes = np.array([0.4, 0.0, 0.2, 0.0, 0.0, 0.3])  # push right and up, twist anticlockwise
    command = command_from_device(device_axes, 0, config, base_from_tcp)
    # The env moves the TCP by base_R_tcp @ twist (its step()): that must be the push in the base frame.
    base_from_device = matrix_from_rpy(yaw_pi)
    np.testing.assert_allclose(base_from_tcp @ command.twist[:3], base_from_device @ device_axes[:3], atol=1e-12)
    np.testing.assert_allclose(base_from_tcp @ command.twist[3:], base_from_device @ device_axes[3:], atol=1e-12)
    np.testing.assert_allclose(base_from_device @ device_axes[:3], [-0.4, 0.0, 0.2], atol=1e-12)


def test_frame_end_effector_passes_device_axes_through():
    command = command_from_device(np.array([0.4, 0.0, 0.2, 0.0, 0.0, 0.3]), 0, spacemouse_config(deadzone=0.0))
    np.testing.assert_allclose(command.twist, [0.4, 0.0, 0.2, 0.0, 0.0, 0.3])


# -- the device ------------------------------------------------------------------------


def test_frame_base_without_a_tcp_rotation_is_refused():
    with pytest.raises(ValueError, match="tcp_rotation"):
        SpaceMouse(spacemouse_config(frame="base"), connect=FakeConnector())


def test_a_config_of_another_kind_is_refused():
    with pytest.raises(ValueError, match="kind 'spacemouse'"):
        SpaceMouse(TeleopConfig(kind="scripted"), connect=FakeConnector())


def test_a_spacemouse_is_a_teleop_device_and_reads_idle_before_any_report(open_device):
    device = open_device(connect=FakeConnector())
    command = device.read()
    assert isinstance(device, TeleopDevice)
    assert not command.intervening and command.gripper is None and np.all(command.twist == 0.0)


def test_split_reports_combine_into_one_reading_with_the_gripper_button(open_device):
    connector = FakeConnector(NAVIGATOR)
    device = open_device(spacemouse_config(deadzone=0.0), connect=connector)
    connector.source.push(translation_report(175, 0, 0), rotation_report(0, 0, -70), button_report(0, mask_bytes=1))
    wait_until(lambda: device.report_count == 3)
    command = device.read()
    np.testing.assert_allclose(command.twist, [0.5, 0.0, 0.0, 0.0, 0.0, 0.2])
    assert command.intervening and command.gripper == 1.0 and command.buttons == ("gripper_close",)


def test_the_reader_keeps_only_the_newest_state(open_device):
    connector = FakeConnector(WIRELESS)
    device = open_device(spacemouse_config(deadzone=0.0), connect=connector)
    connector.source.push(*(six_axis_report(i, 0, 0, 0, 0, 0) for i in range(1, 301)))
    wait_until(lambda: device.report_count == 300)
    assert counts(device.read().twist[0]) == 300


def test_read_keeps_up_with_a_device_reporting_faster_than_125_hz(open_device):
    """A device streams whether or not anyone reads; the reader drains it as it comes, so
    read() at the policy rate sees the latest report, not one queued long ago."""
    connector = FakeConnector(WIRELESS)
    device = open_device(spacemouse_config(deadzone=0.0), connect=connector)
    emitted, stop = [0], threading.Event()

    def stream_at_1_khz() -> None:  # 8x a real SpaceMouse
        while not stop.is_set():
            emitted[0] += 1
            # The report's number in x (low part) and y (high part), each within full scale.
            low, high = emitted[0] % 300, emitted[0] // 300
            connector.source.push(six_axis_report(low, -high, 0, 0, 0, 0))
            time.sleep(0.001)

    streamer = threading.Thread(target=stream_at_1_khz)
    streamer.start()
    try:
        lags = []
        for _ in range(25):
            time.sleep(0.02)  # a 50 Hz caller
            newest_before = emitted[0]
            twist = device.read().twist
            lags.append(newest_before - (counts(twist[0]) + 300 * counts(twist[1])))
        rate_hz = device.measured_report_rate_hz
    finally:
        stop.set()
        streamer.join()
    # A reader that fell behind would drift further back every read; this one stays at the head.
    assert max(lags) <= 10, f"read() lagged the device by up to {max(lags)} reports: {lags}"
    assert rate_hz > 125.0


def test_read_returns_at_once_while_the_device_is_silent(open_device):
    connector = FakeConnector(NAVIGATOR)
    device = open_device(connect=connector)
    durations = []
    for _ in range(20):
        started = time.perf_counter()
        device.read()
        durations.append(time.perf_counter() - started)
    assert sorted(durations)[10] < 0.005  # the reader waits up to 50 ms per poll; read() must not


def test_a_disconnect_ends_the_intervention_raises_and_the_device_comes_back(open_device):
    connector = FakeConnector(NAVIGATOR)
    device = open_device(connect=connector, reconnect_backoff_s=(0.01, 0.05))
    connector.source.push(translation_report(200, 0, 0), button_report(0, mask_bytes=1))
    wait_until(lambda: device.report_count == 2)
    assert device.read().intervening

    connector.plugged_in.clear()
    connector.source.unplug()
    wait_until(lambda: not device.connected)
    with pytest.raises(TeleopDisconnected, match="SpaceNavigator") as raised:
        device.read()
    message = str(raised.value)
    assert "/dev/hidraw0" in message and "cable" in message and "udev" in message
    assert "intervention has ended" in message
    time.sleep(0.1)  # several failed reopen attempts
    assert not device.connected and connector.sources[0].closed

    connector.plugged_in.set()
    wait_until(lambda: device.connected)
    after = device.read()
    assert not after.intervening and after.gripper is None and np.all(after.twist == 0.0)  # nothing replays
    connector.source.push(translation_report(0, 0, -350))
    wait_until(lambda: device.report_count == 3)
    assert device.read().twist[2] == 1.0 and device.path == "/dev/hidraw1"


def test_a_report_stream_that_stops_while_displaced_reads_as_released(open_device):
    clock = FakeClock()
    connector = FakeConnector(NAVIGATOR)
    device = open_device(spacemouse_config(disconnect_timeout_s=0.5), connect=connector, clock=clock)
    connector.source.push(translation_report(200, 0, 0), button_report(0, mask_bytes=1))
    wait_until(lambda: device.report_count == 2)
    clock.now += 0.4
    assert device.read().twist[0] > 0.5

    clock.now += 0.2  # 0.6 s without a motion report
    stale = device.read()
    assert np.all(stale.twist == 0.0)
    assert stale.intervening and stale.gripper == 1.0  # a held button sends no stream; it stays held

    connector.source.push(translation_report(100, 0, 0))
    wait_until(lambda: device.report_count == 3)
    assert device.read().twist[0] > 0.2 and device.connected


def test_silence_at_rest_is_not_stale(open_device):
    clock = FakeClock()
    connector = FakeConnector(NAVIGATOR)
    device = open_device(connect=connector, clock=clock)
    connector.source.push(translation_report(0, 0, 0), rotation_report(0, 0, 0))
    wait_until(lambda: device.report_count == 2)
    clock.now += 60.0
    command = device.read()
    assert not command.intervening and device.connected


def test_malformed_reports_are_counted_and_skipped_without_stopping_the_reader(open_device):
    connector = FakeConnector(NAVIGATOR)
    device = open_device(spacemouse_config(deadzone=0.0), connect=connector)
    connector.source.push(b"", translation_report(1, 2, 3)[:4], bytes([3]), translation_report(70, 0, 0))
    wait_until(lambda: device.report_count == 1)
    assert device.malformed_report_count == 3
    assert device.read().twist[0] == pytest.approx(0.2) and device.connected


def test_a_reader_bug_stops_the_reader_loudly_rather_than_hanging(open_device):
    connector = FakeConnector(NAVIGATOR)
    device = open_device(connect=connector)
    connector.source.push(12345)  # not bytes: parse_report fails with a TypeError
    wait_until(lambda: not device.connected)
    with pytest.raises(TeleopDisconnected, match="reader thread stopped.*TypeError"):
        device.read()


def test_measured_report_rate_counts_reports_over_the_last_second(open_device):
    clock = FakeClock()
    connector = FakeConnector(NAVIGATOR)
    device = open_device(connect=connector, clock=clock)
    connector.source.push(*(translation_report(10, 0, 0) for _ in range(125)))
    wait_until(lambda: device.report_count == 125)
    assert device.measured_report_rate_hz == 125.0
    clock.now += 1.5
    assert device.measured_report_rate_hz == 0.0


def test_close_stops_the_reader_and_closes_the_source():
    connector = FakeConnector(NAVIGATOR)
    device = SpaceMouse(spacemouse_config(), connect=connector)
    device.close()
    assert connector.source.closed
    with pytest.raises(RuntimeError, match="after close"):
        device.read()
    device.close()


# -- the real hidraw path, with a FIFO standing in for /dev/hidrawN --------------------


def fake_hidraw_tree(root: Path, nodes: dict[str, tuple[str, str]]) -> tuple[Path, Path]:
    """A sysfs /sys/class/hidraw and /dev with one FIFO per node: name -> (HID_ID, HID_NAME)."""
    sysfs, dev = root / "sys", root / "dev"
    dev.mkdir()
    for node, (hid_id, hid_name) in nodes.items():
        (sysfs / node / "device").mkdir(parents=True)
        (sysfs / node / "device" / "uevent").write_text(
            f"DRIVER=hid-generic\nHID_ID={hid_id}\nHID_NAME={hid_name}\nHID_UNIQ=\n"
        )
        os.mkfifo(dev / node)
    return sysfs, dev


KEYBOARD = ("0003:0000046D:0000C31C", "Logitech USB Keyboard")
COMPACT = ("0003:0000256F:0000C635", "3Dconnexion SpaceMouse Compact")


def test_list_spacemice_names_path_model_and_ids(tmp_path):
    sysfs, dev = fake_hidraw_tree(tmp_path, {"hidraw0": KEYBOARD, "hidraw2": COMPACT})
    (found,) = list_spacemice(sysfs, dev)
    assert found.path == str(dev / "hidraw2") and found.name == "3Dconnexion SpaceMouse Compact"
    assert (found.vendor_id, found.product_id) == (0x256F, 0xC635) and found.model.name == "SpaceMouseCompact"


def test_opening_with_no_spacemouse_lists_what_was_found_and_points_at_udev(tmp_path):
    sysfs, dev = fake_hidraw_tree(tmp_path, {"hidraw0": KEYBOARD})
    with pytest.raises(SpaceMouseOpenError, match="no supported SpaceMouse") as raised:
        open_spacemouse(None, sysfs, dev)
    assert "Logitech USB Keyboard" in str(raised.value) and "udev" in str(raised.value)


def test_opening_a_device_path_that_is_not_a_spacemouse_is_refused(tmp_path):
    sysfs, dev = fake_hidraw_tree(tmp_path, {"hidraw0": KEYBOARD})
    with pytest.raises(SpaceMouseOpenError, match="not a supported SpaceMouse.*SpaceMouseCompact"):
        open_spacemouse(str(dev / "hidraw0"), sysfs, dev)
    with pytest.raises(SpaceMouseOpenError, match="does not exist"):
        open_spacemouse(str(dev / "hidraw7"), sysfs, dev)


def test_the_hidraw_reader_reads_a_node_and_reconnects_after_it_hangs_up(tmp_path, open_device):
    sysfs, dev = fake_hidraw_tree(tmp_path, {"hidraw0": KEYBOARD, "hidraw1": COMPACT})
    node = dev / "hidraw1"
    config = spacemouse_config(deadzone=0.0)
    device = open_device(config, connect=partial(open_spacemouse, None, sysfs, dev), reconnect_backoff_s=(0.01, 0.05))
    assert device.model.name == "SpaceMouseCompact" and device.path == str(node)

    writer = os.open(node, os.O_WRONLY)  # the "kernel" side; one report per write, read before the next
    os.write(writer, translation_report(175, 0, 0))
    wait_until(lambda: device.report_count == 1)
    os.write(writer, button_report(1, mask_bytes=1))
    wait_until(lambda: device.report_count == 2)
    command = device.read()
    assert command.twist[0] == 0.5 and command.gripper == -1.0

    node.unlink()  # unplugged: the node hangs up and disappears
    os.close(writer)
    wait_until(lambda: not device.connected)
    with pytest.raises(TeleopDisconnected, match="SpaceMouseCompact"):
        device.read()

    os.mkfifo(node)  # plugged back in
    wait_until(lambda: device.connected)
    writer = os.open(node, os.O_WRONLY)
    try:
        os.write(writer, rotation_report(0, -350, 0))
        wait_until(lambda: device.report_count == 3)
        assert device.read().twist[4] == 1.0
    finally:
        os.close(writer)
