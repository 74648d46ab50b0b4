"""CurveZMQ keys and the learner's gate that admits only known actors.

Key files are ZeroMQ's certificate format: ``NAME.key`` holds the public key (safe to
copy to the other machine), ``NAME.key_secret`` holds public and secret key and is
readable by its owner only. The learner admits an actor whose public key is a ``*.key``
file in its authorised-keys directory; anyone else is refused at the CURVE handshake,
before a single message of theirs is read, and the refusal is logged: by the ZAP callback
for an unknown key, from the socket's handshake events for a peer that offers no key at
all or one that does not decrypt (ZAP never hears of those).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

log = logging.getLogger(__name__)
ZAP_DOMAIN = "robot-stack"


class KeyFileError(ValueError):
    """A key file is missing or not a CurveZMQ certificate."""


@dataclass(frozen=True)
class KeyPair:
    public: bytes
    secret: Optional[bytes]


def generate_keys(directory: Path, name: str, overwrite: bool = False) -> tuple[Path, Path]:
    """Write NAME.key (public) and NAME.key_secret (public + secret, mode 0600) into directory."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"key name {name!r} must be a plain file name")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    public_path, secret_path = directory / f"{name}.key", directory / f"{name}.key_secret"
    existing = [str(path) for path in (public_path, secret_path) if path.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing)} already exist; pass --overwrite to replace them")
    public, secret = zmq.auth.create_certificates(directory, name)
    os.chmod(secret, 0o600)
    return Path(public), Path(secret)


def load_keys(path: Path, need_secret: bool) -> KeyPair:
    path = Path(path)
    if not path.is_file():
        raise KeyFileError(f"{path}: key file not found (make one with `robot-stack keys generate DIR --name NAME`)")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (ValueError, OSError) as error:
        raise KeyFileError(f"{path}: not a CurveZMQ key file ({error})") from None
    if need_secret and not secret:
        raise KeyFileError(f"{path}: holds no secret key; name the .key_secret file here")
    return KeyPair(public, secret or None)


def configure_server(socket: zmq.Socket, keys: KeyPair) -> None:
    socket.curve_secretkey = keys.secret
    socket.curve_publickey = keys.public
    socket.zap_domain = ZAP_DOMAIN.encode()
    socket.curve_server = True


def configure_client(socket: zmq.Socket, own: KeyPair, server_public: bytes) -> None:
    socket.curve_secretkey = own.secret
    socket.curve_publickey = own.public
    socket.curve_serverkey = server_public


class AuthorisedKeys:
    """The public keys in a directory; re-read when an unknown key knocks, so adding an
    actor's key file takes effect without restarting the learner."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise KeyFileError(f"{self.directory}: authorised client keys directory not found")
        self._lock = threading.Lock()
        self._keys: dict[bytes, str] = {}
        self.refused = 0
        self._reload()
        if not self._keys:
            log.warning("%s holds no *.key files: every actor will be refused", self.directory)

    def _reload(self) -> None:
        keys = {}
        for path in sorted(self.directory.glob("*.key")):
            try:
                keys[load_keys(path, need_secret=False).public] = path.stem
            except KeyFileError as error:
                log.warning("skipping %s", error)
        self._keys = keys

    def callback(self, domain: str, client_key: bytes) -> bool:
        """ZAP credentials callback: client_key is Z85 text."""
        with self._lock:
            if client_key not in self._keys:
                self._reload()
            name = self._keys.get(client_key)
            if name is None:
                self.refused += 1
                log.warning(
                    "refused a connection: client public key %s is not in %s",
                    client_key.decode(errors="replace"), self.directory,
                )
                return False
            return True


# What a curve server's failed handshakes mean for the operator (handshake monitor events).
HANDSHAKE_EVENTS = zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL


def handshake_failure(event: int, value: int) -> str:
    """Why a peer failed the ZeroMQ handshake, from a monitor event and its value (a ZMTP
    protocol error for EVENT_HANDSHAKE_FAILED_PROTOCOL, an errno for the others)."""
    if event != zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        return f"its ZeroMQ handshake failed (errno {value})"
    if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        return "it offered no CurveZMQ key (an actor without client_secret_key_file?)"
    if value == zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
        return "its CurveZMQ handshake did not decrypt (does its server_public_key_file name this learner's key?)"
    return f"its ZeroMQ handshake failed (libzmq protocol error {value:#x})"


def start_authenticator(context: zmq.Context, authorised: AuthorisedKeys) -> ThreadAuthenticator:
    authenticator = ThreadAuthenticator(context, log=logging.getLogger(f"{__name__}.zap"))
    authenticator.start()
    authenticator.configure_curve_callback(domain=ZAP_DOMAIN, credentials_provider=authorised)
    return authenticator
