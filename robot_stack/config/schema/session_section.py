"""The session file: where the learner listens, its keys, where runs go, and the
actor <-> learner transport."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from pydantic import Field, model_validator

from robot_stack.config.schema.primitives import Float, Int, StrictModel


class TransportConfig(StrictModel):
    """Actor <-> learner link over ZeroMQ (robot_stack.transport)."""

    heartbeat_interval_s: Float = Field(0.5, gt=0, le=10, description="both sides send a heartbeat this often")
    peer_timeout_s: Float = Field(
        5.0, gt=0, le=120, description="silence after which a peer counts as gone and the actor reconnects"
    )
    handshake_timeout_s: Float = Field(3.0, gt=0, le=60, description="wait for the learner's welcome before retrying")
    max_message_mb: Float = Field(256.0, gt=0, le=4096, description="larger received messages are dropped")
    max_in_flight_batches: Int = Field(256, ge=1, le=100000, description="batches sent but not yet acknowledged")
    max_in_flight_mb: Float = Field(
        64.0, gt=0, le=4096, description="bytes sent but not yet acknowledged (one batch is always let through)"
    )
    outbox_dir: Path = Field(Path("runs/outbox"), description="actor: where unacknowledged batches spill and persist")
    outbox_memory_mb: Float = Field(256.0, gt=0, description="actor: unacknowledged batches kept in memory")
    outbox_max_disk_gb: Float = Field(20.0, gt=0, description="actor: disk bound of the outbox")
    durable_outbox: bool = Field(
        True, description="actor: write every batch to the outbox directory so a killed actor loses nothing"
    )
    receive_queue_mb: Float = Field(512.0, gt=0, description="learner: received batches not yet taken by training")
    weights_chunk_mb: Float = Field(4.0, gt=0, le=512, description="learner: weights travel in chunks of this size")


class SessionConfig(StrictModel):
    learner_host: str = "127.0.0.1"
    transitions_port: Int = Field(5555, ge=1024, le=65535)
    weights_port: Int = Field(5556, ge=1024, le=65535)
    # CurveZMQ: authentication and encryption are on when these name key files made by
    # `robot-stack keys generate`. The learner needs its secret key and the directory of
    # public keys of the actors it accepts; an actor needs its secret key and the learner's
    # public key.
    server_public_key_file: Optional[Path] = None
    server_secret_key_file: Optional[Path] = None
    client_secret_key_file: Optional[Path] = None
    authorized_client_keys_dir: Optional[Path] = None
    # Per task by default: tasks that shared one checkpoint dir resumed or pruned each other's
    # checkpoints. A task file resolves the defaults (TaskConfig); a session's --run-dir wins.
    run_dir: Optional[Path] = Field(None, description="Where a task's runs go; none: runs/<task.name>.")
    checkpoint_dir: Optional[Path] = Field(None, description="none: <run_dir>/checkpoints.")
    log_dir: Optional[Path] = Field(None, description="none: <run_dir>/logs.")
    transport: TransportConfig = TransportConfig()
    actors: Int = Field(
        1, ge=1, le=32,
        description="Simulated actors `robot-stack session` starts into its learner (actor0..actorN-1, each with its "
        "own seed, outbox, dataset, status file and log); an actor started on its own does not read it.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> "SessionConfig":
        if self.transitions_port == self.weights_port:
            raise ValueError("transitions_port and weights_port must differ")
        keys = {
            "server_public_key_file": self.server_public_key_file,
            "server_secret_key_file": self.server_secret_key_file,
            "client_secret_key_file": self.client_secret_key_file,
            "authorized_client_keys_dir": self.authorized_client_keys_dir,
        }
        named = [name for name, value in keys.items() if value is not None]
        if named and len(named) != len(keys):
            missing = [name for name in keys if name not in named]
            raise ValueError(
                f"authentication is half configured: {', '.join(named)} set but {', '.join(missing)} not; "
                "set all four (robot-stack keys generate makes the files) or none"
            )
        return self

    @property
    def authenticated(self) -> bool:
        return self.server_secret_key_file is not None

    def for_task(self, task_name: str) -> "SessionConfig":
        """This section with its directories resolved for ``task_name``."""
        run_dir = self.run_dir if self.run_dir is not None else Path("runs") / task_name
        return self.model_copy(update={
            "run_dir": run_dir,
            "checkpoint_dir": self.checkpoint_dir if self.checkpoint_dir is not None else run_dir / "checkpoints",
            "log_dir": self.log_dir if self.log_dir is not None else run_dir / "logs",
        })
