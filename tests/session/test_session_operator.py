"""An operator drives a real simulated session: from its live page in headless Chromium and
from the keys of the terminal it runs in (a pseudo-terminal here), and stops it from there."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from robot_stack.config import config_to_yaml, load_task_config, with_fields

from browser import CHROMIUM, CHROMIUM_ARGS, VIEWPORT


def wait_for(condition, what: str, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no {CHROMIUM} (scripts/setup.sh installs Debian's chromium with the dev extra)")
def test_an_operator_pauses_labels_and_stops_a_session_from_the_page_and_the_keyboard(quick_task, tmp_path):
    pytest.importorskip("actor.live_view")
    from PIL import Image
    from playwright.sync_api import expect, sync_playwright

    config = load_task_config(quick_task)
    config = with_fields(config, "actor.console", web_port=0)
    task = tmp_path / "operated.yaml"
    task.write_text(config_to_yaml(config))
    run_dir = tmp_path / "run"
    logs = run_dir / "logs"
    output = tmp_path / "session.out"
    master, terminal = os.openpty()
    with open(output, "wb") as out:
        session = subprocess.Popen(
            [sys.executable, "-m", "robot_stack", "session", str(task), "--run-dir", str(run_dir),
             "--max-env-steps", "100000", "--no-progress"],
            stdin=terminal, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    os.close(terminal)
    try:
        url = wait_for(lambda: re.search(r"live page: (http://\S+)", output.read_text()), "the live page's URL").group(1)
        assert url.startswith("http://127.0.0.1:")
        wait_for(lambda: "keys: " in output.read_text(), "the keys line")
        actor_status = logs / "actor-actor0.json"

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch_persistent_context(
                tmp_path / "profile", executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, viewport=VIEWPORT
            )
            try:
                page = browser.new_page()
                page.on("dialog", lambda dialog: dialog.accept())
                page.goto(url)
                expect(page.locator("#state")).to_have_text("running", timeout=20_000)

                # Pause from the page: the actor holds, and says so in its status.
                page.click("button[data-command=pause]")
                expect(page.locator("#state")).to_have_text("paused", timeout=10_000)
                wait_for(lambda: read_json(actor_status).get("paused") is True, "the actor's paused status", 10)
                held = read_json(actor_status)["env_steps"]
                time.sleep(1.5)
                assert read_json(actor_status)["env_steps"] == held

                # Resume from the terminal's keyboard.
                os.write(master, b"p")
                expect(page.locator("#state")).to_have_text("running", timeout=10_000)
                wait_for(lambda: read_json(actor_status).get("env_steps", 0) > held + 10, "steps after the resume", 20)
                wait_for(lambda: "[p] toggle_pause: queued" in output.read_text(), "the key's answer", 10)

                # Success from the page, inside an episode: the learner logs it as the operator's label.
                def labelled() -> bool:
                    page.click("button[data-command=success]")
                    time.sleep(0.3)
                    return any(r["command"] == "success" and "ended: success" in r["outcome"]
                               for r in csv.DictReader(open(logs / "operator.csv")))
                wait_for(labelled, "an episode labelled a success", 20)
                wait_for(lambda: any(r.get("operator_label") == "1" and r["success"] == "1"
                                     for r in csv.DictReader(open(logs / "episodes.csv"))),
                         "the learner's episode row with the operator's label", 20)
                page.wait_for_timeout(800)
                shot = Image.open(io.BytesIO(page.screenshot()))
                assert shot.format == "PNG" and shot.size == (VIEWPORT["width"], VIEWPORT["height"])
                pixels = np.asarray(shot.convert("RGB"))
                assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # a drawn page, not a blank one
                assert page.locator("#events").inner_text().count("success") >= 1
            finally:
                browser.close()

        # Stop from the keyboard: the session ends cleanly with the operator's reason.
        os.write(master, b"q")
        assert session.wait(timeout=90) == 0
    finally:
        if session.poll() is None:
            os.killpg(session.pid, signal.SIGKILL)
            session.wait(10)
        os.close(master)
    text = output.read_text()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["stop_reason"] == "stopped by the operator (keyboard)", text[-2000:]
    assert "Traceback" not in text
    commands = [(r["command"], r["source"]) for r in csv.DictReader(open(logs / "operator.csv"))]
    assert commands[0] == ("pause", "web") and ("toggle_pause", "web") not in commands
    assert ("toggle_pause", "keyboard") in commands and commands[-1] == ("stop", "keyboard")
    # Every episode the actor finished is in the learner's log once.
    episodes = [int(r["episode"]) for r in csv.DictReader(open(logs / "episodes.csv"))]
    assert episodes == list(range(len(episodes)))


def test_the_session_sends_pause_and_stop_to_every_actor_and_labels_to_the_watched_one(monkeypatch):
    import robot_stack.terminal_keys as terminal_keys
    from robot_stack.session import _OperatorKeys

    sent = []
    monkeypatch.setattr(terminal_keys, "post_command", lambda url, command: sent.append((url, command)) or "queued")
    keys = _OperatorKeys(load_task_config(Path(__file__).parents[2] / "hardware_configs/tasks/sim_pick_cube_state.yaml"), None)
    monkeypatch.setattr(keys, "_say", lambda line: None)
    keys.update({"actor0": {"console_url": "http://a0/", "paused": True}, "actor1": {"console_url": "http://a1/"}})

    assert keys.send("toggle_pause") == "queued (2 actors)"
    assert keys.send("success") == "queued"
    keys.send("stop")
    # One decision for a toggle (actor0 is paused: resume both); labels touch actor0's episode only.
    assert sent == [("http://a0/", "resume"), ("http://a1/", "resume"), ("http://a0/", "success"),
                    ("http://a0/", "stop"), ("http://a1/", "stop")]
