"""`robot-stack hw check`: every device the config names gets its own verdict, measured
rates and a PNG per camera; a missing device fails with what to check, the rest still run."""

import json

import pytest
from PIL import Image

from franka_sim import FRANKY, FRANKY_SIM, missing_package, start_franky_sim, stop_franky_sim
from robot_stack.cli import main
from robot_stack.config import load_task_config
from robot_stack.config.loader import config_to_yaml
from robot_stack.config.schema import TeleopConfig
from robot_stack.hardware.check import check_teleop, run_check
from robot_stack.config import with_fields


def test_a_simulated_config_checks_the_simulated_arm_and_saves_each_camera_frame(pick_cube_yaml, tmp_path):
    report = run_check(load_task_config(pick_cube_yaml), tmp_path, seconds=0.3, prompt=lambda _: None)

    assert report.ok, report.table()
    kinds = [d.kind for d in report.devices]
    assert kinds == ["robot", "camera", "teleop"]
    for name in ("front", "wrist"):
        assert Image.open(tmp_path / f"camera_{name}.png").size == (128, 128)
    saved = json.loads((tmp_path / "hw_check.json").read_text())
    assert saved["ok"] is True and saved["devices"][0]["figures"]["state_updates_hz"] > 0


@pytest.mark.skipif(missing_package(FRANKY, FRANKY_SIM) is not None, reason=str(missing_package(FRANKY, FRANKY_SIM)))
def test_the_lab_config_against_the_protocol_simulator_a_recording_and_no_spacemouse(repo_root, tmp_path, capsys):
    pytest.importorskip("pyrealsense2", reason="pyrealsense2 is not installed (pip install -e '.[realsense]')")
    from realsense_recording import record

    recording = record(tmp_path / "wrist.db3", n_frames=60, fps=30, size_wh=(96, 64))
    config = load_task_config(repo_root / "hardware_configs" / "tasks" / "fr3_lab_insertion.yaml")
    config = with_fields(config, "robot", address="127.0.0.1", realtime="ignore")
    replay = config.cameras.cameras["wrist_1"].model_copy(
        update={"kind": "replay", "replay_path": recording.path, "resolution_wh": (96, 64), "crop_xywh": (16, 0, 64, 64)}
    )
    config = with_fields(config, "cameras", cameras={"wrist_1": replay})
    config = with_fields(config, "task.observation", images=("wrist_1",))
    config = with_fields(config, "teleop", device_path=str(tmp_path / "no_such_hidraw"))
    path = tmp_path / "lab.yaml"
    path.write_text(config_to_yaml(config))

    process = start_franky_sim(tmp_path / "franky_sim.log")
    try:
        code = main(["hw", "check", str(path), "--out", str(tmp_path / "check"), "--seconds", "1"])
    finally:
        stop_franky_sim(process)

    out = capsys.readouterr().out
    assert code == 1  # the SpaceMouse is missing
    saved = json.loads((tmp_path / "check" / "hw_check.json").read_text())
    robot, camera, teleop = saved["devices"]
    assert robot["ok"], robot["detail"]
    assert robot["figures"]["state_updates_hz"] > 100  # the simulator's 1 kHz robot clock
    assert camera["ok"], camera["detail"]
    assert Image.open(camera["files"][0]).size == (128, 128)
    assert not teleop["ok"] and "no_such_hidraw" in teleop["detail"] and "udev" in teleop["detail"]
    assert "2 of 3 device(s) ok, 1 FAILED" in out


def test_the_teleop_check_reads_the_teleop_section_alone():
    assert check_teleop(TeleopConfig(kind="none"), 0.1, prompt=print) is None
    scripted = check_teleop(TeleopConfig(kind="scripted"), 0.1, prompt=print)
    assert scripted.ok and scripted.detail == "nothing to connect"
