"""The operator console's live page (actor/live_view.py), served for real on 127.0.0.1 over a
real OperatorConsole that a fake actor thread drives the way the actor loop does: over HTTP
endpoint by endpoint, then in headless Chromium as an operator would use it."""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pytest
from PIL import Image

from actor.console import OperatorConsole, Request
from actor.live_view import LiveViewError, LiveViewServer

from browser import CHROMIUM, CHROMIUM_ARGS, VIEWPORT
CAMERA_SIZE = 128
EPISODE_STEPS = 12
STEP_S = 0.02


class FakeActor:
    """Steps every STEP_S like the actor loop: between two steps it takes the console's requests,
    applies them and records what it did; after each step it reports two camera images that
    change every step, and each finished episode for the curves."""

    def __init__(self, console: OperatorConsole):
        self.console = console
        self.episode = 0
        self.episode_step = 0
        self.env_steps = 0
        self.intervention_steps = 0
        self.paused = False
        self.stopped = False
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-actor", daemon=True)

    def start(self) -> "FakeActor":
        self.console.set_state("running")
        self._thread.start()
        return self

    def halt(self) -> None:
        self._halt.set()
        self._thread.join(2)

    def _run(self) -> None:
        while not self._halt.is_set() and not self.stopped:
            for request in self.console.take():
                touched = (self.episode, self.episode_step, self.env_steps)
                self.console.record(request, *touched, outcome=self._apply(request))
            if self.stopped:
                self.console.set_state("stopped")
            elif not self.paused:
                self._step()
            time.sleep(STEP_S)

    def _apply(self, request: Request) -> str:
        command = request.command
        if command == "toggle_pause":
            command = "resume" if self.paused else "pause"
        if command == "pause":
            self.paused = True
            self.console.set_state("paused")
            return "paused"
        if command == "resume":
            self.paused = False
            self.console.set_state("running")
            return "resumed"
        if command == "stop":
            self.stopped = True
            self.console.set_state("stopping")
            return "stopping"
        episode = self.episode
        if command == "rerecord":
            self.episode_step = self.intervention_steps = 0
            return f"episode {episode} discarded; recording it again"
        if command == "reset":
            self._finish(success=False, label="truncated")
            return f"episode {episode} cut short; resetting"
        self._finish(success=command == "success", label=f"{command} (operator)")
        return f"episode {episode} ended: {command} (operator)"

    def _step(self) -> None:
        self.episode_step += 1
        self.env_steps += 1
        intervening = self.episode_step % 6 < 2
        self.intervention_steps += intervening
        self.console.observe_step(
            camera_images(self.env_steps),
            episode=self.episode, episode_step=self.episode_step, env_steps=self.env_steps,
            intervening=intervening, reward=0.0, success_probability=self.episode_step / EPISODE_STEPS,
            weights_version=self.env_steps // 3, deterministic=self.episode % 5 == 4,
        )
        if self.episode_step >= EPISODE_STEPS:
            self._finish(success=self.episode % 3 != 0, label="detector")

    def _finish(self, success: bool, label: str) -> None:
        self.console.observe_episode({
            "episode": self.episode, "success": success, "length": self.episode_step,
            "intervention_steps": self.intervention_steps, "deterministic": self.episode % 5 == 4,
            "label": label, "env_steps_total": self.env_steps, "weights_version": self.env_steps // 3,
        })
        self.episode += 1
        self.episode_step = self.intervention_steps = 0


def camera_images(step: int) -> dict[str, np.ndarray]:
    """A colour gradient that slides one pixel a step, and a checkerboard whose phase moves."""
    y, x = np.mgrid[0:CAMERA_SIZE, 0:CAMERA_SIZE]
    front = np.stack([(x + step) * 2 % 256, y * 2, np.full_like(x, 96)], axis=-1).astype(np.uint8)
    wrist = np.where(((x + step) // 16 + y // 16) % 2 == 0, 220, 40).astype(np.uint8)
    return {"front": front, "wrist": np.stack([wrist, wrist // 2, 255 - wrist], axis=-1)}


def wait_until(condition: Callable[[], Any], what: str, timeout_s: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"within {timeout_s} s: {what}")


def event(console: OperatorConsole, command: str, source: str = "web") -> Optional[dict[str, Any]]:
    matches = [e for e in console.snapshot()["events"] if e["command"] == command and e["source"] == source]
    return matches[-1] if matches else None


def http(url: str, body: Optional[dict] = None, **headers: str) -> tuple[int, dict[str, str], bytes]:
    data = None if body is None else json.dumps(body).encode()
    if data is not None:
        headers.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.fixture
def cell():
    """(console, fake actor, server): the actor steps, the page is served on a free port."""
    console = OperatorConsole(task="fake_pick_cube", actor_id="actor-0")
    actor = FakeActor(console).start()
    server = LiveViewServer(console, "127.0.0.1", 0)
    server.start()
    wait_until(lambda: console.snapshot()["cameras"], "the fake actor has taken a step")
    yield console, actor, server
    server.stop()
    actor.halt()


def paused(console: OperatorConsole) -> None:
    console.request("pause", "api")
    wait_until(lambda: console.snapshot()["live"]["state"] == "paused", "the actor paused")


# ---------------------------------------------------------------------------------------- HTTP


def test_the_page_is_one_document_with_no_outside_resources(cell):
    _, _, server = cell
    status, headers, body = http(server.url)
    page = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert headers["cache-control"] == "no-store"
    assert "<script>" in page and "/api/state" in page and "/api/command" in page
    for outside in ("http://", "https://", "src=\"//", "href=\"//"):
        assert outside not in page


def test_state_is_the_console_snapshot_and_sends_episodes_incrementally(cell):
    console, _, server = cell
    wait_until(lambda: console.snapshot()["episodes_total"] >= 3, "three episodes finished")
    paused(console)
    status, headers, body = http(server.url + "api/state")
    state = json.loads(body)
    assert status == 200 and headers["cache-control"] == "no-store"
    assert state["live"]["state"] == "paused" and state["live"]["task"] == "fake_pick_cube"
    assert state["cameras"] == ["front", "wrist"]
    assert abs(state["server_time"] - time.time()) < 5
    total = state["episodes_total"]
    assert len(state["episodes"]) == total >= 3

    _, _, body = http(server.url + f"api/state?episodes_since={total - 1}")
    assert json.loads(body)["episodes"] == state["episodes"][-1:]
    _, _, body = http(server.url + f"api/state?episodes_since={total}")
    assert json.loads(body)["episodes"] == []
    status, _, _ = http(server.url + "api/state?episodes_since=-1")
    assert status == 422


def test_a_frame_is_the_cameras_latest_image_as_jpeg(cell):
    console, _, server = cell
    paused(console)
    status, headers, body = http(server.url + "api/frame/front")
    assert status == 200 and headers["content-type"] == "image/jpeg"
    assert headers["cache-control"] == "no-store"
    image = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))
    latest = console.frame("front")
    assert image.shape == latest.shape == (CAMERA_SIZE, CAMERA_SIZE, 3)
    assert np.abs(image.astype(int) - latest).mean() < 8  # JPEG's loss only


def test_a_frame_changes_as_the_actor_steps(cell):
    _, _, server = cell
    first = http(server.url + "api/frame/wrist")[2]
    second = wait_until(lambda: (b := http(server.url + "api/frame/wrist")[2]) != first and b, "a new wrist frame")
    assert Image.open(io.BytesIO(second)).size == (CAMERA_SIZE, CAMERA_SIZE)


def test_an_unknown_camera_is_404_naming_the_cameras_the_policy_sees(cell):
    _, _, server = cell
    status, _, body = http(server.url + "api/frame/side")
    assert status == 404
    assert json.loads(body)["detail"] == "no camera 'side'; the policy sees: front, wrist"


def test_a_frame_that_is_no_colour_image_is_500_saying_what_it_is():
    console = OperatorConsole()
    console.observe_step({"depth": np.zeros((4, 6), np.float32)})
    with LiveViewServer(console, "127.0.0.1", 0) as server:
        status, _, body = http(server.url + "api/frame/depth")
    assert status == 500
    assert json.loads(body)["detail"] == "camera 'depth' holds a float32 image of shape (4, 6); expected HxWx3 uint8"


def test_a_command_is_queued_and_the_actor_applies_it(cell):
    console, _, server = cell
    status, _, body = http(server.url + "api/command", {"command": "pause"})
    assert status == 202
    assert json.loads(body) == {"queued": True, "command": "pause", "message": "queued"}
    applied = wait_until(lambda: event(console, "pause"), "the actor applied the page's pause")
    assert applied["outcome"] == "paused"
    assert console.snapshot()["live"]["state"] == "paused"


def test_an_unknown_command_is_400_with_the_consoles_message(cell):
    _, _, server = cell
    status, _, body = http(server.url + "api/command", {"command": "jump"})
    assert status == 400
    assert json.loads(body)["detail"].startswith("unknown operator command 'jump'; known: pause, resume")
    assert http(server.url + "api/command", {"comand": "pause"})[0] == 422


def test_commands_from_other_sites_are_refused(cell):
    # A cross-site form post (no JSON), and a site that renamed itself to 127.0.0.1 in DNS.
    console, _, server = cell
    assert http(server.url + "api/command", {"command": "stop"}, **{"Content-Type": "text/plain"})[0] == 422
    assert http(server.url + "api/command", {"command": "stop"}, Host=f"attacker.example:{server.port}")[0] == 400
    assert http(f"http://localhost:{server.port}/api/state")[0] == 200
    time.sleep(3 * STEP_S)
    assert event(console, "stop") is None and console.snapshot()["live"]["state"] == "running"


def test_a_command_to_a_stopped_actor_is_409_saying_so(cell):
    console, _, server = cell
    console.request("stop", "api")
    wait_until(lambda: console.snapshot()["live"]["state"] == "stopped", "the actor stopped")
    status, _, body = http(server.url + "api/command", {"command": "resume"})
    assert status == 409
    assert json.loads(body)["message"] == "the actor is stopped"


# ------------------------------------------------------------------------------------ server


def test_a_taken_port_fails_naming_the_port_and_its_config_field():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(LiveViewError, match=f"127.0.0.1:{port}: .*actor.console.web_port"):
            LiveViewServer(OperatorConsole(), "127.0.0.1", port).start()


def test_stop_ends_serving_promptly_and_frees_the_port(caplog):
    caplog.set_level(logging.INFO)
    server = LiveViewServer(OperatorConsole(), "127.0.0.1", 0)
    url = server.start()
    assert url == f"http://127.0.0.1:{server.port}/" and server.port > 0
    assert http(url + "api/state")[0] == 200
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 2
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "api/state", timeout=2)
    again = LiveViewServer(OperatorConsole(), "127.0.0.1", server.port)
    again.start()
    again.stop()
    uvicorn_chatter = [r for r in caplog.records if r.name.startswith("uvicorn") and r.levelno < logging.WARNING]
    assert not uvicorn_chatter


def test_binding_beyond_loopback_warns_that_the_controls_are_exposed(caplog):
    server = LiveViewServer(OperatorConsole(), "0.0.0.0", 0)
    with caplog.at_level(logging.WARNING, logger="actor.live_view"):
        server.start()
        server.stop()
    assert any("reachable from other machines" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="actor.live_view"):
        with LiveViewServer(OperatorConsole(), "127.0.0.1", 0):
            pass
    assert not caplog.records


# ----------------------------------------------------------------------------------- browser


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no {CHROMIUM} (scripts/setup.sh installs Debian's chromium with the dev extra)")
def test_an_operator_drives_the_actor_from_the_page_in_chromium(cell, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    console, _, server = cell
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            tmp_path / "profile", executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, viewport=VIEWPORT
        )
        try:
            page = browser.new_page()
            page.on("dialog", lambda dialog: dialog.accept())  # Stop asks for confirmation
            page.goto(server.url)
            page.wait_for_function(
                "() => { const images = [...document.querySelectorAll('#cameras img')];"
                " return images.length === 2 && images.every(i => i.complete && i.naturalWidth > 0); }"
            )
            assert page.eval_on_selector("img[data-camera=front]", "i => i.naturalWidth") == CAMERA_SIZE

            page.click("button[data-command=pause]")
            expect(page.locator("#state")).to_have_text("paused")
            expect(page.locator("#banner")).to_contain_text("PAUSED")
            expect(page.locator("#response")).to_contain_text("pause: queued")
            page.click("button[data-command=resume]")
            expect(page.locator("#state")).to_have_text("running")
            expect(page.locator("#banner")).to_be_hidden()

            for command in ("success", "rerecord", "reset"):
                wait_until(lambda: console.snapshot()["live"].get("episode_step", 0) > 0, "a step in the episode")
                page.click(f"button[data-command={command}]")
                applied = wait_until(lambda: event(console, command), f"the actor applied the page's {command}")
                assert applied["outcome"].startswith(f"episode {applied['episode']} ")
                expect(page.locator("#events")).to_contain_text(applied["outcome"])

            wait_until(lambda: console.snapshot()["episodes_total"] >= 4, "episodes for the curves")
            page.wait_for_timeout(500)  # a poll or two: curves and images follow the state
            shot = Image.open(io.BytesIO(page.screenshot()))
            assert shot.format == "PNG" and shot.size == (VIEWPORT["width"], VIEWPORT["height"])
            box = page.locator("img[data-camera=front]").bounding_box()
            camera = np.asarray(shot.convert("RGB").crop(
                (int(box["x"]), int(box["y"]), int(box["x"] + box["width"]), int(box["y"] + box["height"]))
            ))
            assert camera.std() > 20 and len(np.unique(camera.reshape(-1, 3), axis=0)) > 100

            page.click("button[data-command=stop]")
            expect(page.locator("#state")).to_have_text("stopped")
            assert event(console, "stop")["outcome"] == "stopping"

            started = time.monotonic()
            server.stop()  # with the browser's connection open
            assert time.monotonic() - started < 2.5
            expect(page.locator("#banner")).to_contain_text("No answer from the actor")
            expect(page.locator("#state")).to_have_text("gone")
        finally:
            browser.close()


def test_the_operator_command_sends_one_command_and_says_why_it_could_not(tmp_path):
    import subprocess
    import sys

    console = OperatorConsole(None)
    server = LiveViewServer(console, "127.0.0.1", 0)
    server.start()
    try:
        sent = subprocess.run([sys.executable, "-m", "robot_stack", "operator", "send", "pause", "--url", server.url],
                              capture_output=True, text=True, timeout=60)
    finally:
        server.stop()
    assert sent.returncode == 0 and sent.stdout.strip() == "pause: queued"
    assert [(r.command, r.source) for r in console.take()] == [("pause", "api")]
    gone = subprocess.run([sys.executable, "-m", "robot_stack", "operator", "send", "stop", "--url", server.url],
                          capture_output=True, text=True, timeout=60)
    assert gone.returncode == 1 and "did not answer" in gone.stdout
