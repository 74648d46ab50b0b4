"""The live page of the operator console: what the actor sees and does, and its controls.

``make_app`` builds the web application over an ``OperatorConsole``; ``LiveViewServer`` serves
it from a thread of the actor's process (``actor.console.web``, ``web_host``, ``web_port``).

    GET  /                   the page (live_view.html: no outside resources, works offline)
    GET  /api/state          the console's snapshot; ?episodes_since=N sends only the finished
                             episodes from index N, so the page's curves grow incrementally
    GET  /api/frame/{camera} the latest image of a camera the policy sees, as JPEG
    POST /api/command        {"command": "pause"}: queued for the actor's next step boundary

The page polls the state a few times a second and reloads a camera image only when the actor
has stepped since; a poll that fails tells the operator the actor is gone.
"""

from __future__ import annotations

import io
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Sequence
from importlib import resources
from typing import Literal, Any, Optional

import numpy as np

try:
    import uvicorn
    from fastapi import FastAPI, HTTPException, Query
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from starlette.middleware.trustedhost import TrustedHostMiddleware
except ImportError as error:  # the actor runs without the page when the extra is missing
    raise ImportError(
        f"the live page needs the 'console' extra ({error.name} is missing): "
        "pip install 'robot-stack[console]', or set actor.console.web: false"
    ) from error
from PIL import Image
from pydantic import BaseModel, ConfigDict

from actor.console import ConsoleError, OperatorConsole

log = logging.getLogger(__name__)

PAGE_RESOURCE = "live_view.html"
JPEG_QUALITY = 90
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 2.0
PORT_FIELD = "actor.console.web_port"
HOST_FIELD = "actor.console.web_host"
NO_STORE = {"Cache-Control": "no-store"}
# The names a browser on this machine (or at the near end of an SSH tunnel) puts in the Host
# header of a page served on loopback.
LOOPBACK_HOST_NAMES = ("127.0.0.1", "localhost", "[::1]")


class CommandBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    command: str
    # The page's buttons are "web"; the session forwards its terminal's keys here as "keyboard";
    # `robot-stack operator send` and scripts say "api".
    source: Literal["web", "keyboard", "api"] = "web"


def encode_jpeg(image: np.ndarray, camera: str) -> bytes:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"camera {camera!r} holds a {image.dtype} image of shape {image.shape}; expected HxWx3 uint8")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def make_app(console: OperatorConsole, allowed_hosts: Sequence[str] = LOOPBACK_HOST_NAMES) -> FastAPI:
    """The live page's application. ``allowed_hosts``: Host header names it answers ("*": any)."""
    page = resources.files("actor").joinpath(PAGE_RESOURCE).read_text(encoding="utf-8")
    # No /docs or /openapi.json: the page is the only client, and an interactive API explorer
    # beside the robot's controls is one more way to press them.
    app = FastAPI(title="robot-stack live view", docs_url=None, redoc_url=None, openapi_url=None)
    # Another web site open in the operator's browser could rename itself to 127.0.0.1 in DNS
    # and then post commands as if it were this page; its requests still carry its own name in
    # Host. (A plain cross-site form post is already refused: commands must be JSON.)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))

    # Plain `def` endpoints: FastAPI runs them in its worker threads, so neither JPEG encoding
    # nor waiting for the console's lock holds up the event loop that serves the other requests.
    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse(page, headers=NO_STORE)

    @app.get("/api/state")
    def state(episodes_since: int = Query(0, ge=0)) -> JSONResponse:
        snapshot = console.snapshot(episodes_since=episodes_since)
        # The server's clock, so the page can tell how old the last step is even when the
        # browser runs on another machine whose clock differs.
        snapshot["server_time"] = time.time()
        return JSONResponse(snapshot, headers=NO_STORE)

    @app.get("/api/frame/{camera}")
    def frame(camera: str) -> Response:
        image = console.frame(camera)
        if image is None:
            known = ", ".join(console.snapshot()["cameras"]) or "none yet"
            raise HTTPException(404, f"no camera {camera!r}; the policy sees: {known}")
        try:
            body = encode_jpeg(image, camera)
        except ValueError as error:
            raise HTTPException(500, str(error)) from error
        return Response(body, media_type="image/jpeg", headers=NO_STORE)

    @app.post("/api/command")
    def command(body: CommandBody) -> JSONResponse:
        try:
            answer = console.request(body.command, body.source)
        except ConsoleError as error:
            raise HTTPException(400, str(error)) from error
        # 202: taken, the actor applies it at its next step boundary; 409: the console refused
        # it now (the actor is stopping, or too many commands wait), its message says why.
        return JSONResponse(answer, status_code=202 if answer["queued"] else 409)

    return app


class LiveViewError(RuntimeError):
    """The live page could not start: the address or port cannot be had."""


def _resolve(host: str, port: int) -> tuple[socket.AddressFamily, tuple]:
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        raise LiveViewError(f"the live page cannot bind host {host!r} ({HOST_FIELD}): {error.strerror}") from error
    return family, address


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


class LiveViewServer:
    """The page served by uvicorn in a daemon thread of the actor's process.

    ``start()`` binds the socket itself before uvicorn runs, so a taken port fails at once with
    the config field to change, and port 0 is resolved to the port the system chose."""

    def __init__(self, console: OperatorConsole, host: str = "127.0.0.1", port: int = 8765):
        self.console = console
        self.host = host
        self.requested_port = port
        self.port: Optional[int] = None
        self._server: Optional[uvicorn.Server] = None
        self._thread: Optional[threading.Thread] = None
        self._socket: Optional[socket.socket] = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the live page is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> str:
        """Listen and serve; returns the page's URL once connections are accepted."""
        if self._thread is not None:
            raise RuntimeError(f"the live page is already serving {self.url}")
        family, address = _resolve(self.host, self.requested_port)
        listener = socket.socket(family, socket.SOCK_STREAM)
        # A restarted actor rebinds the port while the last run's connections sit in TIME_WAIT;
        # on Linux this still refuses a port another process listens on.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(address)
            listener.listen(64)
        except OSError as error:
            listener.close()
            raise LiveViewError(
                f"the live page cannot listen on {self.host}:{self.requested_port}: {error.strerror}; "
                f"set {PORT_FIELD} to a free port (0: any free port)"
            ) from error
        self._socket = listener
        self.port = listener.getsockname()[1]
        loopback = _is_loopback(address[0])
        if not loopback:
            log.warning(
                "the live page at %s is reachable from other machines: whoever reaches it can pause, stop and "
                "label the robot's episodes (%s)", self.url, HOST_FIELD,
            )

        config = uvicorn.Config(
            # Beyond loopback the names the machine is reached by are not known here.
            make_app(self.console, LOOPBACK_HOST_NAMES if loopback else ("*",)),
            log_config=None,  # leave the process's logging as the session set it up
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [listener]}, name="live-view", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise LiveViewError(f"the live page did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        log.info("live page: %s", self.url)
        return self.url

    def stop(self) -> None:
        """Stop serving; open connections are closed within about a second."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)
            if self._thread.is_alive():
                log.warning("the live page's server thread did not end within %.0f s", STOP_TIMEOUT_S)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> "LiveViewServer":
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()
