"""Bring-up check: connect to every device a task config names and say what works.

``robot-stack hw check CONFIG`` runs it. Per device it reports whether it is reachable and
its measured rate: the arm's state updates per second (robot clock), each camera's frame
rate (one frame of each saved as PNG), the SpaceMouse's reports per second (it only
reports while the puck is moved or a button is pressed). Every check runs, whatever the
others did; each failure says what is wrong and what to check. The results are also
written as ``hw_check.json`` next to the PNGs.

A simulated config checks the simulated robot and renders its cameras, so the same tool
shows what the policy will see in simulation.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from robot_stack.config.schema import CameraConfig, TaskConfig, TeleopConfig
from robot_stack.data.files import write_json_atomic


@dataclass
class DeviceCheck:
    kind: str  # robot | camera | teleop
    name: str
    source: str  # what it connected to: address, serial, recording, hidraw path
    ok: bool = False
    detail: str = ""
    figures: dict[str, float] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)


@dataclass
class CheckReport:
    task: str
    devices: list[DeviceCheck]

    @property
    def ok(self) -> bool:
        return all(device.ok for device in self.devices)

    def table(self) -> str:
        rows = [(d.kind, f"{d.name} ({d.source})", "ok" if d.ok else "FAILED", d.detail) for d in self.devices]
        widths = [max(len(row[i]) for row in rows) for i in range(3)] if rows else [0, 0, 0]
        lines = [f"hardware check of task '{self.task}'"]
        for row in rows:
            lines.append("  " + "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3])
        failed = sum(not d.ok for d in self.devices)
        lines.append(f"{len(self.devices) - failed} of {len(self.devices)} device(s) ok" + (f", {failed} FAILED" if failed else ""))
        return "\n".join(lines)


def _guarded(check: DeviceCheck, body: Callable[[DeviceCheck], None]) -> DeviceCheck:
    try:
        body(check)
    except Exception as error:  # every device gets its own verdict
        check.ok = False
        check.detail = f"{type(error).__name__}: {error}"
    return check


def _save_png(image: np.ndarray, path: Path) -> str:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(image)).save(path)
    return str(path)


# --------------------------------------------------------------------------- robot


def _measure_robot(check: DeviceCheck, backend, seconds: float) -> None:
    """State updates per second, counted as distinct robot-clock times over ``seconds``."""
    backend.hold()
    first = backend.read_state()
    times, reads = {first.time_s}, 1
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        times.add(backend.read_state().time_s)
        reads += 1
        time.sleep(0.0005)
    elapsed = time.monotonic() - started
    state = backend.read_state()
    check.figures = {
        "state_updates_hz": round(len(times) / elapsed, 1),
        "reads_hz": round(reads / elapsed, 1),
        "gripper_width_m": round(float(state.gripper_width_m), 4),
    }
    x, y, z = (float(v) for v in state.tcp_position_m)
    check.detail = (
        f"state {check.figures['state_updates_hz']:.0f} updates/s; TCP at ({x:.3f}, {y:.3f}, {z:.3f}) m; "
        f"gripper {state.gripper_width_m * 1000:.1f} mm; |external force| "
        f"{np.linalg.norm(state.tcp_wrench[:3]):.1f} N"
    )
    check.ok = len(times) > 1
    if not check.ok:
        check.detail = "the arm's state did not change in " + f"{seconds:.1f} s: " + check.detail


def check_robot(config: TaskConfig, seconds: float) -> DeviceCheck:
    robot = config.robot
    if robot.backend == "sim":
        check = DeviceCheck("robot", robot.name, "simulated FR3 (MuJoCo)")

        def body(check: DeviceCheck) -> None:
            from robot_stack.envs.factory import make_sim_env

            sim = make_sim_env(config)
            try:
                sim.backend.advance(0.01)
                _measure_robot(check, _AdvancingBackend(sim.backend), seconds)
            finally:
                sim.env.close()

        return _guarded(check, body)
    check = DeviceCheck("robot", robot.name, f"{robot.driver} driver at {robot.address}")

    def body(check: DeviceCheck) -> None:
        from robot_stack.hardware.devices import make_robot_backend

        backend = make_robot_backend(config.robot, config.task)
        try:
            _measure_robot(check, backend, seconds)
        finally:
            backend.close()

    return _guarded(check, body)


class _AdvancingBackend:
    """The simulated arm's clock only moves when it is stepped: step 1 ms per read."""

    def __init__(self, backend):
        self.backend = backend

    def hold(self) -> None:
        self.backend.hold()

    def read_state(self):
        self.backend.advance(0.001)
        return self.backend.read_state()


# --------------------------------------------------------------------------- cameras


def _camera_source(camera: CameraConfig, name: str) -> str:
    if camera.kind == "realsense":
        return f"realsense {camera.serial}"
    if camera.kind == "replay":
        return f"recording {camera.replay_path}"
    return f"simulated camera '{camera.sim_camera or name}'"


def check_cameras(config: TaskConfig, seconds: float, out_dir: Path) -> list[DeviceCheck]:
    names = tuple(config.cameras.cameras)
    if config.robot.backend == "sim":
        return [_check_sim_cameras(config, names, seconds, out_dir)] if names else []
    return [
        _guarded(
            DeviceCheck("camera", n, _camera_source(config.cameras.cameras[n], n)),
            lambda c, n=n: _check_realsense(config.cameras.cameras[n], n, seconds, out_dir, c),
        )
        for n in names
    ]


def _check_realsense(camera: CameraConfig, name: str, seconds: float, out_dir: Path, check: DeviceCheck) -> None:
    from robot_stack.hardware.realsense import RealSenseCameras

    cameras = RealSenseCameras({name: camera}, (name,))
    try:
        frames = cameras.read()
        started, last_frame = time.monotonic(), None
        while time.monotonic() - started < seconds:
            frames = cameras.read()
            last_frame = frames.frame_numbers.get(name, last_frame)
            time.sleep(0.01)
        status = cameras.status()[name]
        image = frames.images[name]
        check.files.append(_save_png(image, out_dir / f"camera_{name}.png"))
        check.figures = {"measured_fps": round(status.measured_fps, 1), "configured_fps": float(camera.fps)}
        check.ok = status.measured_fps >= 0.5 * camera.fps
        height, width = image.shape[:2]
        check.detail = (
            f"{status.measured_fps:.1f} fps (configured {camera.fps}); {width}x{height} to the policy; "
            f"frame saved as {Path(check.files[0]).name}"
        )
        if not check.ok:
            check.detail = "frame rate under half the configured one (USB 2 port? exposure too long?): " + check.detail
    finally:
        cameras.close()


def _check_sim_cameras(config: TaskConfig, names: tuple[str, ...], seconds: float, out_dir: Path) -> DeviceCheck:
    check = DeviceCheck("camera", ", ".join(names), "simulated cameras (MuJoCo)")

    def body(check: DeviceCheck) -> None:
        from robot_stack.envs.factory import make_sim_env
        from robot_stack.sim.cameras import SimCameras

        sim = make_sim_env(config)
        cameras = SimCameras(sim.world, config.cameras.cameras, names)
        try:
            started = time.monotonic()
            frames = cameras.read()
            renders = 1
            while time.monotonic() - started < min(seconds, 1.0):
                frames = cameras.read()
                renders += 1
            rate = renders / (time.monotonic() - started)
            for name in names:
                check.files.append(_save_png(frames.images[name], out_dir / f"camera_{name}.png"))
            check.figures = {"renders_per_s": round(rate, 1)}
            check.ok = True
            check.detail = f"{rate:.1f} renders/s of all {len(names)} camera(s); frames saved as camera_<name>.png"
        finally:
            cameras.close()
            sim.env.close()

    return _guarded(check, body)


# --------------------------------------------------------------------------- teleop


def check_teleop(teleop: TeleopConfig, seconds: float, prompt: Callable[[str], None]) -> Optional[DeviceCheck]:
    if teleop.kind == "none":
        return None
    if teleop.kind == "scripted":
        return DeviceCheck("teleop", "scripted", "the simulator's scripted expert", ok=True, detail="nothing to connect")
    check = DeviceCheck("teleop", "spacemouse", teleop.device_path or "first SpaceMouse found")

    def body(check: DeviceCheck) -> None:
        from robot_stack.hardware.spacemouse import SpaceMouse

        device = SpaceMouse(teleop, tcp_rotation=(lambda: np.eye(3)) if teleop.frame == "base" else None)
        try:
            check.source = f"{device.model.name} at {device.path}"
            prompt(f"move the SpaceMouse puck for the next {seconds:.0f} s to measure its report rate")
            started, peak, moved = time.monotonic(), 0.0, False
            while time.monotonic() - started < seconds:
                command = device.read()
                moved = moved or command.intervening
                peak = max(peak, device.measured_report_rate_hz)
                time.sleep(0.02)
            check.figures = {"peak_report_rate_hz": round(peak, 1), "reports": float(device.report_count)}
            check.ok = True
            check.detail = (
                f"{peak:.0f} reports/s while moved" if moved
                else "connected; the puck was not moved, so no report rate (it reports only while moved)"
            )
            if device.malformed_report_count:
                check.detail += f"; {device.malformed_report_count} malformed report(s) ignored"
        finally:
            device.close()

    return _guarded(check, body)


# --------------------------------------------------------------------------- all


def run_check(
    config: TaskConfig, out_dir: Path, seconds: float = 2.0, prompt: Callable[[str], None] = print
) -> CheckReport:
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"seconds must be a positive number, got {seconds}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    devices = [check_robot(config, seconds)]
    devices += check_cameras(config, seconds, out_dir)
    teleop = check_teleop(config.teleop, seconds, prompt)
    if teleop is not None:
        devices.append(teleop)
    report = CheckReport(config.task.name, devices)
    write_json_atomic(out_dir / "hw_check.json", {"task": report.task, "ok": report.ok, "devices": [asdict(d) for d in devices]})
    return report
