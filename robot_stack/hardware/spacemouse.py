"""A 3Dconnexion SpaceMouse as a ``TeleopDevice``: raw HID reports -> end-effector twist.

Data flow: the hidraw node -> a reader thread (one report per kernel read, newest state
kept) -> ``SpaceMouse.read()`` (pure mapping to policy action units, never blocks).

HID reports (Linux hidraw hands over one whole report per read, first byte = report id;
facts from the device specifications shipped with pyspacemouse 2.1.0, ``devices.toml``):

- id 1, 7 bytes: translation, three little-endian int16 at bytes 1-2, 3-4, 5-6 (HID x, y, z).
- id 1, 13 bytes (SpaceMouse Wireless, Pro Wireless, Enterprise, Universal Receiver):
  translation as above plus rotation at bytes 7-8, 9-10, 11-12 (HID Rx, Ry, Rz).
- id 2, 7 bytes (the older split-report models): rotation, int16 at bytes 1-2, 3-4, 5-6.
- id 3: buttons, a bitmask from byte 1 on (byte 1 bit 0 = button index 0, byte 1 bit 7
  = 7, byte 2 bit 0 = 8, ...). ``TeleopConfig.button_map`` keys are these bit indices.
- Full deflection is about 350 counts on every supported model; counts / 350 is clipped
  to [-1, 1]. Other report ids (LED, battery status) carry no motion and are ignored.

The report's own length decides between the 7- and 13-byte layouts, so a firmware that
reports differently from the table below is still read correctly.

Device axes (what ``axis_signs`` flips and ``base_from_device_rpy_rad`` turns) are
right-handed with z up: x to the operator's right, y away from the operator, z up,
rotations right-handed about those axes. HID itself is right-handed with z down (x right,
y towards the user, USB HID Usage Tables 4.2), so y, z, Ry and Rz change sign.

Deadzone: per axis, in normalised device units, before the scales. An axis within
``deadzone`` of zero reads 0; beyond it the value is shifted towards zero by the deadzone
and stretched back to [-1, 1] (``sign(v) (|v| - dz) / (1 - dz)``), so the command has no
jump at the edge. Per axis rather than on the norm so that the small cross-talk of a
push into the rotation axes (and a resting hand's jitter) does not leak into the command.
The device is moving when any axis is beyond the deadzone (HIL-SERL: |twist| > 0.001).

Intervention: moving, or a gripper button of ``button_map`` pressed. The other mapped
buttons are operator commands (success, pause, ...: actor/console.py) and leave the policy
acting; unmapped buttons are ignored, so a stray press of a menu key does not stop it.

Disconnect: a read error (cable out, receiver gone) zeroes the state, ``read()`` raises
``TeleopDisconnected`` naming the device and what to check, and the reader reopens the
device with exponential backoff; ``read()`` works again once it is back. A report stream
that stops while the device was displaced (a wireless dropout) for ``disconnect_timeout_s``
reads as zero twist: the device reports continuously (~125 Hz) only while displaced, and
sends a final zero report when released, so silence at rest is normal but silence while
displaced is not.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import select
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Optional, Protocol

import numpy as np

from robot_stack.config.schema import TeleopConfig
from robot_stack.control.rotations import matrix_from_rpy
from robot_stack.hardware.interfaces import TeleopCommand, TeleopDisconnected

log = logging.getLogger(__name__)

FULL_SCALE_COUNTS = 350.0
TRANSLATION_REPORT_ID = 1
ROTATION_REPORT_ID = 2
BUTTON_REPORT_ID = 3
_SPLIT_REPORT_BYTES = 7  # report id + three int16
_SIX_AXIS_REPORT_BYTES = 13  # report id + six int16
# HID -> device axes (right-handed, z up): see the module docstring.
_HID_TO_DEVICE_SIGNS = (1.0, -1.0, -1.0, 1.0, -1.0, -1.0)

# Larger than any 3Dconnexion report (13 bytes) and than a full-speed USB interrupt packet.
_MAX_REPORT_BYTES = 64
# How long the reader waits for one report before checking for close(); bounds close() latency.
_READER_POLL_S = 0.05
# Reports per second are counted over this window.
_RATE_WINDOW_S = 1.0
# A malformed report is logged the first time and then once per this many.
_MALFORMED_LOG_EVERY = 100

UDEV_HINT = (
    "The SpaceMouse is read through its /dev/hidraw* node, which needs read access for your user: "
    'add a udev rule such as /etc/udev/rules.d/99-spacemouse.rules with KERNEL=="hidraw*", '
    'ATTRS{idVendor}=="256f", MODE="0660", GROUP="plugdev" (older models use vendor 046d; '
    'add ATTRS{idProduct}=="c626" or the model\'s product id so other Logitech devices stay closed), '
    "put your user in that group, run `sudo udevadm control --reload && sudo udevadm trigger` "
    "and replug the device. scripts/udev/99-robot-stack.rules is such a rule set."
)


# ----------------------------------------------------------------------------------------
# Supported models
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpaceMouseModel:
    """One 3Dconnexion product: USB ids and its button names by bitmask index."""

    name: str
    vendor_id: int
    product_id: int
    buttons: tuple[tuple[int, str], ...] = ()  # (bit index in report 3, label on the device)

    def button_name(self, index: int) -> str:
        for bit, name in self.buttons:
            if bit == index:
                return name
        return f"button {index}"


_TWO_BUTTONS = ((0, "LEFT"), (1, "RIGHT"))
_PRO_BUTTONS = (
    (0, "MENU"), (1, "FIT"), (2, "TOP"), (4, "REAR"), (5, "FRONT"), (8, "ROLL_CW"),
    (12, "BTN_1"), (13, "BTN_2"), (14, "BTN_3"), (15, "BTN_4"),
    (22, "ESC"), (23, "ALT"), (24, "SHIFT"), (25, "CTRL"), (26, "ROTATION"),
)

# USB ids and button bits: pyspacemouse 2.1.0 devices.toml. Report layout in the comments
# (split: report 1 translation + report 2 rotation; six-axis: 13-byte report 1).
SUPPORTED_MODELS: tuple[SpaceMouseModel, ...] = (
    SpaceMouseModel("SpaceNavigator", 0x046D, 0xC626, _TWO_BUTTONS),  # split
    SpaceMouseModel("SpaceMouseCompact", 0x256F, 0xC635, _TWO_BUTTONS),  # split
    SpaceMouseModel("SpaceMouseUSB", 0x256F, 0xC641, ()),  # split, no buttons
    SpaceMouseModel("SpaceMousePro", 0x046D, 0xC62B, _PRO_BUTTONS),  # split
    SpaceMouseModel(
        "SpaceExplorer", 0x046D, 0xC627,
        ((0, "BTN_1"), (1, "BTN_2"), (2, "T"), (3, "L"), (4, "R"), (5, "F"), (6, "ESC"), (7, "ALT"),
         (8, "SHIFT"), (9, "CTRL"), (10, "FIT"), (11, "PANEL"), (12, "PLUS"), (13, "MINUS"), (14, "BTN_2D")),
    ),  # split
    SpaceMouseModel(
        "SpacePilot", 0x046D, 0xC625,
        ((0, "BTN_1"), (1, "BTN_2"), (2, "BTN_3"), (3, "BTN_4"), (4, "BTN_5"), (5, "BTN_6"), (6, "T"),
         (7, "L"), (8, "R"), (9, "F"), (10, "ESC"), (11, "ALT"), (12, "SHIFT"), (13, "CTRL"), (14, "FIT"),
         (15, "PANEL"), (16, "ZOOM_MINUS"), (17, "ZOOM_PLUS"), (18, "DOM"), (19, "LOCK_3D"), (20, "CONFIG")),
    ),  # split
    SpaceMouseModel(
        "SpacePilotPro", 0x046D, 0xC629,
        ((0, "MENU"), (1, "FIT"), (2, "TOP"), (4, "REAR"), (5, "FRONT"), (8, "ROLL_CW"), (10, "ISO"),
         (14, "BTN_3"), (15, "BTN_4"), (16, "BTN_5"), (17, "BTN_1"), (18, "BTN_2"), (22, "ESC"),
         (23, "ALT"), (24, "SHIFT"), (25, "CTRL"), (26, "ROTATION"), (27, "PAN_ZOOM"), (28, "DOMINANT"),
         (29, "PLUS"), (30, "MINUS")),
    ),  # split
    SpaceMouseModel("SpaceMouseWireless", 0x256F, 0xC62E, _TWO_BUTTONS),  # six-axis
    SpaceMouseModel("SpaceMouseWirelessNew", 0x256F, 0xC63A, _TWO_BUTTONS),  # six-axis
    SpaceMouseModel("SpaceMouseProWireless", 0x256F, 0xC632, _PRO_BUTTONS),  # six-axis
    SpaceMouseModel("SpaceMouseProWirelessBluetooth", 0x256F, 0xC638, _PRO_BUTTONS),  # six-axis
    SpaceMouseModel("UniversalReceiver", 0x256F, 0xC652, _PRO_BUTTONS),  # six-axis
    SpaceMouseModel(
        "SpaceMouseEnterprise", 0x256F, 0xC633,
        ((0, "MENU"), (1, "FIT"), (2, "TOP"), (4, "RIGHT"), (5, "FRONT"), (8, "ROLL_CW"), (10, "ISO1"),
         (12, "BTN_1"), (13, "BTN_2"), (14, "BTN_3"), (15, "BTN_4"), (16, "BTN_5"), (17, "BTN_6"),
         (18, "BTN_7"), (19, "BTN_8"), (20, "BTN_9"), (21, "BTN_10"), (22, "ESC"), (23, "ALT"),
         (24, "SHIFT"), (25, "CTRL"), (26, "LOCK")),
    ),  # six-axis
)


def model_for_ids(vendor_id: int, product_id: int) -> Optional[SpaceMouseModel]:
    for model in SUPPORTED_MODELS:
        if (model.vendor_id, model.product_id) == (vendor_id, product_id):
            return model
    return None


# ----------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------


class SpaceMouseOpenError(RuntimeError):
    """No SpaceMouse could be opened (none found, unsupported device, no permission)."""


class MalformedReportError(ValueError):
    """A HID report too short for its report id."""


# ----------------------------------------------------------------------------------------
# Report parsing (pure)
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HidReport:
    """What one HID report says, in normalised device axes (see the module docstring)."""

    translation: Optional[tuple[float, float, float]] = None
    rotation: Optional[tuple[float, float, float]] = None
    buttons: Optional[int] = None  # bitmask, bit i = button index i


def _axes(report: bytes, first_byte: int, signs: tuple[float, float, float]) -> tuple[float, float, float]:
    x, y, z = (s * c / FULL_SCALE_COUNTS for s, c in zip(signs, struct.unpack_from("<3h", report, first_byte)))
    return (min(1.0, max(-1.0, x)), min(1.0, max(-1.0, y)), min(1.0, max(-1.0, z)))


def parse_report(report: bytes) -> Optional[HidReport]:
    """Decode one raw HID report (report id first). None for reports with no motion or
    buttons; ``MalformedReportError`` for a report too short for its id."""
    if not report:
        raise MalformedReportError("empty HID report")
    report_id, length = report[0], len(report)
    translation_signs, rotation_signs = _HID_TO_DEVICE_SIGNS[:3], _HID_TO_DEVICE_SIGNS[3:]
    if report_id == TRANSLATION_REPORT_ID:
        if length < _SPLIT_REPORT_BYTES:
            raise MalformedReportError(
                f"translation report (id 1) has {length} bytes, needs {_SPLIT_REPORT_BYTES} or "
                f"{_SIX_AXIS_REPORT_BYTES}: {report.hex()}"
            )
        translation = _axes(report, 1, translation_signs)
        rotation = _axes(report, 7, rotation_signs) if length >= _SIX_AXIS_REPORT_BYTES else None
        return HidReport(translation=translation, rotation=rotation)
    if report_id == ROTATION_REPORT_ID:
        if length < _SPLIT_REPORT_BYTES:
            raise MalformedReportError(
                f"rotation report (id 2) has {length} bytes, needs {_SPLIT_REPORT_BYTES}: {report.hex()}"
            )
        return HidReport(rotation=_axes(report, 1, rotation_signs))
    if report_id == BUTTON_REPORT_ID:
        if length < 2:
            raise MalformedReportError(f"button report (id 3) has no bitmask byte: {report.hex()}")
        return HidReport(buttons=int.from_bytes(report[1:], "little"))
    return None


# ----------------------------------------------------------------------------------------
# Device reading -> policy action (pure)
# ----------------------------------------------------------------------------------------


def command_from_device(
    axes: np.ndarray, buttons: int, config: TeleopConfig, tcp_rotation: Optional[np.ndarray] = None
) -> TeleopCommand:
    """The teleop command for a device reading.

    ``axes``: (6,) normalised device axes (x, y, z, Rx, Ry, Rz); ``buttons``: report-3
    bitmask; ``tcp_rotation``: the measured TCP orientation in the base frame (base_R_ee),
    needed for ``frame == "base"`` only. Steps: clip to [-1, 1], ``axis_signs``, deadzone
    (per axis, module docstring), ``translation_scale`` / ``rotation_scale``, into the
    end-effector frame, clip per component to the action box [-1, 1].
    """
    v = np.clip(np.asarray(axes, dtype=np.float64), -1.0, 1.0) * np.asarray(config.axis_signs)
    dz = config.deadzone
    beyond = np.abs(v) > dz
    v = np.where(beyond, np.sign(v) * (np.abs(v) - dz) / (1.0 - dz), 0.0)
    translation = v[:3] * config.translation_scale
    rotation = v[3:] * config.rotation_scale
    if config.frame == "base":
        if tcp_rotation is None:
            raise ValueError("teleop frame 'base' needs the measured TCP rotation to map into the end-effector frame")
        # ee_R_device = (base_R_ee)^T base_R_device; twists are vectors, so both halves rotate alike.
        ee_from_device = np.asarray(tcp_rotation, dtype=np.float64).T @ matrix_from_rpy(config.base_from_device_rpy_rad)
        translation = ee_from_device @ translation
        rotation = ee_from_device @ rotation
    twist = np.clip(np.concatenate([translation, rotation]), -1.0, 1.0)

    actions: list[str] = []
    for index in sorted(config.button_map):
        action = config.button_map[index]
        if buttons >> index & 1 and action not in actions:
            actions.append(action)
    closing, opening = "gripper_close" in actions, "gripper_open" in actions
    # Both at once is ambiguous: keep the gripper as it is.
    gripper = 1.0 if closing and not opening else -1.0 if opening and not closing else None
    # A gripper button is an intervention (it acts on the robot); the command buttons (success,
    # pause, ...) go to the operator console and leave the policy acting.
    grip = closing or opening
    return TeleopCommand(twist=twist, gripper=gripper, intervening=bool(beyond.any()) or grip, buttons=tuple(actions))


# ----------------------------------------------------------------------------------------
# Finding devices (Linux sysfs)
# ----------------------------------------------------------------------------------------

SYSFS_HIDRAW_DIR = Path("/sys/class/hidraw")
DEV_DIR = Path("/dev")


@dataclass(frozen=True)
class HidrawDevice:
    path: str  # /dev/hidrawN
    name: str  # HID_NAME as the kernel reports it
    vendor_id: int
    product_id: int
    model: Optional[SpaceMouseModel]  # None: not a supported SpaceMouse

    def describe(self) -> str:
        return f"{self.path} '{self.name}' ({self.vendor_id:04x}:{self.product_id:04x})"


def _hidraw_number(name: str) -> int:
    digits = name.removeprefix("hidraw")
    return int(digits) if digits.isdigit() else 1 << 30


def list_hidraw_devices(sysfs_dir: Path = SYSFS_HIDRAW_DIR, dev_dir: Path = DEV_DIR) -> list[HidrawDevice]:
    """Every hidraw node the kernel lists, from ``<sysfs_dir>/hidrawN/device/uevent``
    (HID_ID=bus:vendor:product in hex, HID_NAME); readable without opening the device."""
    if not sysfs_dir.is_dir():
        return []
    devices = []
    for entry in sorted(sysfs_dir.iterdir(), key=lambda p: _hidraw_number(p.name)):
        try:
            fields = dict(
                line.split("=", 1) for line in (entry / "device" / "uevent").read_text().splitlines() if "=" in line
            )
            _bus, vendor, product = fields["HID_ID"].split(":")
            vendor_id, product_id = int(vendor, 16), int(product, 16)
        except (OSError, KeyError, ValueError):
            continue
        devices.append(
            HidrawDevice(
                path=str(dev_dir / entry.name),
                name=fields.get("HID_NAME", ""),
                vendor_id=vendor_id,
                product_id=product_id,
                model=model_for_ids(vendor_id, product_id),
            )
        )
    return devices


def list_spacemice(sysfs_dir: Path = SYSFS_HIDRAW_DIR, dev_dir: Path = DEV_DIR) -> list[HidrawDevice]:
    """The connected supported SpaceMice (hidraw path, name, vendor/product id), lowest hidraw number first."""
    return [device for device in list_hidraw_devices(sysfs_dir, dev_dir) if device.model is not None]


# ----------------------------------------------------------------------------------------
# Report sources
# ----------------------------------------------------------------------------------------


class ReportSource(Protocol):
    """Where raw HID reports come from (the hidraw node, or a test's fake)."""

    def read(self, timeout_s: float) -> Optional[bytes]:
        """The next report (report id first), or None if none came within ``timeout_s``.
        Raises ``OSError`` when the device is gone."""

    def close(self) -> None: ...


class HidrawReportSource:
    """Reports from a Linux hidraw node, read with ``os.read``.

    hidraw rather than hidapi/easyhid: the configured ``device_path`` is a hidraw node;
    the kernel hands over exactly one report (id first) per read, so no report-size table
    is needed; ``poll`` sleeps in the kernel until a report or the timeout (no busy loop,
    and the reader notices ``close()`` within the timeout); an unplugged device shows up
    as POLLHUP/POLLERR or EIO, distinct from "no report yet"; and it needs only the
    standard library, so the same code reads a FIFO standing in for the node in tests.
    """

    def __init__(self, path: str):
        self.path = path
        self._fd: Optional[int] = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLIN | select.POLLERR | select.POLLHUP)

    def read(self, timeout_s: float) -> Optional[bytes]:
        if self._fd is None:
            raise OSError(errno.EBADF, f"{self.path} is closed")
        events = self._poll.poll(max(0, math.ceil(timeout_s * 1000.0)))
        if not events:
            return None
        revents = events[0][1]
        if revents & select.POLLIN:
            try:
                report = os.read(self._fd, _MAX_REPORT_BYTES)
            except BlockingIOError:
                return None
            if not report:
                raise OSError(errno.ENODEV, f"{self.path} reached end of file (device gone)")
            return report
        raise OSError(errno.ENODEV, f"{self.path} hung up (poll flags {revents:#x}): device gone")

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


@dataclass(frozen=True)
class SpaceMouseConnection:
    """An opened device: its report source and which model and path it is."""

    source: ReportSource
    model: SpaceMouseModel
    path: str


def open_spacemouse(
    device_path: Optional[str] = None, sysfs_dir: Path = SYSFS_HIDRAW_DIR, dev_dir: Path = DEV_DIR
) -> SpaceMouseConnection:
    """Open ``device_path`` (a hidraw node, or a symlink to one) or, if None, the first
    supported SpaceMouse found. ``SpaceMouseOpenError`` says what was found and what to do."""
    found = list_hidraw_devices(sysfs_dir, dev_dir)
    listing = "; ".join(device.describe() for device in found) or "no hidraw devices"
    if device_path is None:
        spacemice = [device for device in found if device.model is not None]
        if not spacemice:
            raise SpaceMouseOpenError(
                f"no supported SpaceMouse found among the hidraw devices ({listing}). Check that it is "
                f"plugged in (or its wireless receiver is) and switched on; `ls -l /dev/hidraw*` and `dmesg` "
                f"show whether the kernel sees it. {UDEV_HINT}"
            )
        device = spacemice[0]
    else:
        if not os.path.exists(device_path):
            raise SpaceMouseOpenError(
                f"teleop device_path '{device_path}' does not exist. Found: {listing}. Check the cable or "
                f"receiver, or leave device_path unset to use the first SpaceMouse found. {UDEV_HINT}"
            )
        node_name = os.path.basename(os.path.realpath(device_path))
        matches = [d for d in found if os.path.basename(d.path) == node_name]
        if not matches:
            raise SpaceMouseOpenError(
                f"teleop device_path '{device_path}' is not a hidraw device listed in {sysfs_dir} (found: {listing})"
            )
        device = matches[0]
        if device.model is None:
            supported = ", ".join(f"{m.name} ({m.vendor_id:04x}:{m.product_id:04x})" for m in SUPPORTED_MODELS)
            raise SpaceMouseOpenError(
                f"teleop device_path '{device_path}' is {device.describe()}, not a supported SpaceMouse; "
                f"supported: {supported}"
            )
    path = device_path if device_path is not None else device.path
    try:
        source = HidrawReportSource(path)
    except PermissionError as e:
        raise SpaceMouseOpenError(f"no permission to read {device.describe()}: {e}. {UDEV_HINT}") from e
    except OSError as e:
        raise SpaceMouseOpenError(f"could not open {device.describe()}: {e}. {UDEV_HINT}") from e
    assert device.model is not None
    return SpaceMouseConnection(source=source, model=device.model, path=path)


# ----------------------------------------------------------------------------------------
# The teleop device
# ----------------------------------------------------------------------------------------

_ZERO_AXES = (0.0,) * 6


class SpaceMouse:
    """A SpaceMouse behind the ``TeleopDevice`` protocol.

    ``config``: a ``TeleopConfig`` of kind "spacemouse". ``tcp_rotation``: returns the
    measured TCP orientation (3x3, base frame); required for ``frame == "base"``, called
    on every ``read()``. ``connect``: opens the device and is called again to reconnect;
    default ``open_spacemouse(config.device_path)``, tests pass one returning a fake
    ``ReportSource``. ``clock``: monotonic seconds (report times, the stale timeout).
    ``reconnect_backoff_s``: (first, longest) wait between reopen attempts.

    Opening happens here, so a missing device fails at construction with
    ``SpaceMouseOpenError``. A daemon thread then reads reports as fast as they come;
    ``read()`` maps the newest state and never waits on the device.

    Reconnecting opens the same ``device_path`` again, or the first SpaceMouse found when
    none is set. A replug can give the device another /dev/hidrawN, so a fixed path should
    be a udev ``SYMLINK+=`` name rather than a bare hidraw number.
    """

    def __init__(
        self,
        config: TeleopConfig,
        tcp_rotation: Optional[Callable[[], np.ndarray]] = None,
        *,
        connect: Optional[Callable[[], SpaceMouseConnection]] = None,
        clock: Callable[[], float] = time.monotonic,
        reconnect_backoff_s: tuple[float, float] = (0.1, 2.0),
    ):
        if config.kind != "spacemouse":
            raise ValueError(f"SpaceMouse needs a teleop config of kind 'spacemouse', got '{config.kind}'")
        if config.frame == "base" and tcp_rotation is None:
            raise ValueError(
                "teleop frame 'base' reads the SpaceMouse in the robot base frame and needs the measured TCP "
                "rotation to turn that into the end-effector frame: pass tcp_rotation (e.g. "
                "lambda: backend.read_state().tcp_rotation), or use frame 'end_effector'"
            )
        self.config = config
        self._tcp_rotation = tcp_rotation
        self._connect = connect if connect is not None else partial(open_spacemouse, config.device_path)
        self._clock = clock
        self._backoff_first_s, self._backoff_max_s = reconnect_backoff_s

        connection = self._connect()
        self._lock = threading.Lock()
        self._axes: tuple[float, ...] = _ZERO_AXES
        self._buttons = 0
        self._last_motion_time = clock()
        self._stale_logged = False
        self._report_times: deque[float] = deque()
        self._report_count = 0
        self._malformed_count = 0
        self._disconnect_error: Optional[str] = None
        self._reader_failure: Optional[str] = None
        self._model = connection.model
        self._path = connection.path
        self._closed = False
        self._stop = threading.Event()
        self._warn_unknown_buttons(connection.model)
        log.info("SpaceMouse %s opened at %s", connection.model.name, connection.path)
        self._thread = threading.Thread(
            target=self._run, args=(connection.source,), name=f"spacemouse-reader {connection.path}", daemon=True
        )
        self._thread.start()

    # -- the TeleopDevice protocol ----------------------------------------------------

    def read(self) -> TeleopCommand:
        """The command for the newest device state. Raises ``TeleopDisconnected`` while the
        device is gone (its last state is discarded, so nothing replays on reconnect)."""
        if self._closed:
            raise RuntimeError("SpaceMouse.read() after close()")
        now = self._clock()
        with self._lock:
            failure, disconnect = self._reader_failure, self._disconnect_error
            axes, buttons, last_motion = self._axes, self._buttons, self._last_motion_time
            model, path = self._model, self._path
        if failure is not None:
            raise TeleopDisconnected(
                f"SpaceMouse {model.name} at {path}: the reader thread stopped ({failure}); no teleop readings "
                "until the device is reopened (restart the process)"
            )
        if disconnect is not None:
            raise TeleopDisconnected(
                f"SpaceMouse {model.name} at {path} disconnected ({disconnect}); the intervention has ended. "
                "Check the USB cable or wireless receiver and its battery, and that /dev/hidraw* is readable "
                "by this user (udev rule); reconnecting in the background"
            )
        if any(axes) and now - last_motion > self.config.disconnect_timeout_s:
            if not self._stale_logged:
                self._stale_logged = True
                log.warning(
                    "SpaceMouse %s: no report for %.2f s while displaced; reading it as released",
                    model.name,
                    now - last_motion,
                )
            axes = _ZERO_AXES
        rotation = self._tcp_rotation() if self.config.frame == "base" else None  # type: ignore[misc]
        return command_from_device(np.asarray(axes), buttons, self.config, rotation)

    def close(self) -> None:
        """Stop the reader thread and close the device; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._thread.join(timeout=2.0)

    def __enter__(self) -> SpaceMouse:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- for bring-up tools and tests -------------------------------------------------

    @property
    def model(self) -> SpaceMouseModel:
        return self._model

    @property
    def path(self) -> str:
        return self._path

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._disconnect_error is None and self._reader_failure is None

    @property
    def report_count(self) -> int:
        """Reports parsed since construction (all kinds, malformed ones not included)."""
        with self._lock:
            return self._report_count

    @property
    def malformed_report_count(self) -> int:
        with self._lock:
            return self._malformed_count

    @property
    def measured_report_rate_hz(self) -> float:
        """Reports per second over the last second (0 at rest: the device only streams while displaced)."""
        now = self._clock()
        with self._lock:
            return sum(1 for t in self._report_times if now - t <= _RATE_WINDOW_S) / _RATE_WINDOW_S

    # -- the reader thread ------------------------------------------------------------

    def _run(self, source: Optional[ReportSource]) -> None:
        backoff_s = self._backoff_first_s
        try:
            while not self._stop.is_set():
                if source is None:
                    # Wait first: a replugged device takes a moment to enumerate, and every
                    # disconnect stays visible to read() for at least this long.
                    if self._stop.wait(backoff_s):
                        break
                    source = self._reopen()
                    if source is None:
                        backoff_s = min(2.0 * backoff_s, self._backoff_max_s)
                    else:
                        backoff_s = self._backoff_first_s
                    continue
                try:
                    report = source.read(_READER_POLL_S)
                except OSError as e:
                    self._on_disconnect(e)
                    _close_quietly(source)
                    source = None
                    backoff_s = self._backoff_first_s
                    continue
                if report is not None:
                    self._on_report(report)
        except Exception as e:  # a bug, not a device fault: stop loudly rather than read garbage
            log.exception("SpaceMouse reader thread failed")
            with self._lock:
                self._reader_failure = f"{type(e).__name__}: {e}"
                self._axes, self._buttons = _ZERO_AXES, 0
        finally:
            if source is not None:
                _close_quietly(source)

    def _on_report(self, report: bytes) -> None:
        try:
            parsed = parse_report(report)
        except MalformedReportError as e:
            with self._lock:
                self._malformed_count += 1
                count = self._malformed_count
            if count % _MALFORMED_LOG_EVERY == 1:
                log.warning("SpaceMouse %s: ignoring malformed report (%d so far): %s", self._model.name, count, e)
            return
        now = self._clock()
        with self._lock:
            self._report_count += 1
            self._report_times.append(now)
            while self._report_times and now - self._report_times[0] > _RATE_WINDOW_S:
                self._report_times.popleft()
            if parsed is None:
                return
            if parsed.translation is not None or parsed.rotation is not None:
                translation = parsed.translation if parsed.translation is not None else self._axes[:3]
                rotation = parsed.rotation if parsed.rotation is not None else self._axes[3:]
                self._axes = tuple(translation) + tuple(rotation)
                self._last_motion_time = now
                self._stale_logged = False
            if parsed.buttons is not None:
                self._buttons = parsed.buttons

    def _on_disconnect(self, error: OSError) -> None:
        log.error("SpaceMouse %s at %s disconnected: %s", self._model.name, self._path, error)
        with self._lock:
            self._disconnect_error = str(error) or type(error).__name__
            self._axes, self._buttons = _ZERO_AXES, 0
            self._report_times.clear()

    def _reopen(self) -> Optional[ReportSource]:
        try:
            connection = self._connect()
        except (OSError, SpaceMouseOpenError) as e:
            log.debug("SpaceMouse reconnect failed: %s", e)
            return None
        with self._lock:
            self._model, self._path = connection.model, connection.path
            self._axes, self._buttons = _ZERO_AXES, 0
            self._last_motion_time = self._clock()
            self._disconnect_error = None
        log.warning("SpaceMouse %s reconnected at %s", connection.model.name, connection.path)
        self._warn_unknown_buttons(connection.model)
        return connection.source

    def _warn_unknown_buttons(self, model: SpaceMouseModel) -> None:
        known = {index for index, _name in model.buttons}
        unknown = sorted(index for index in self.config.button_map if index not in known)
        if unknown:
            log.warning(
                "SpaceMouse %s has no button at index %s of teleop button_map; its buttons: %s",
                model.name,
                unknown,
                ", ".join(f"{index}={name}" for index, name in model.buttons) or "none",
            )


def _close_quietly(source: ReportSource) -> None:
    try:
        source.close()
    except OSError as e:
        log.debug("closing the SpaceMouse report source failed: %s", e)
