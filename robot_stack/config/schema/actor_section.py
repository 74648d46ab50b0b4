"""The actor section: the actor process's control loop."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, field_validator

from robot_stack.config.schema.primitives import Float, Int, StrictModel


OperatorCommandName = Literal["pause", "resume", "toggle_pause", "success", "failure", "rerecord", "reset", "stop"]


class ConsoleConfig(StrictModel):
    """The operator console (actor/console.py): the live web page and the terminal's keys."""

    web: bool = Field(True, description="Serve the live page (cameras, episode, curves, controls) from the actor.")
    web_host: str = Field(
        "127.0.0.1",
        description="Address the live page binds. The default is this machine only; another address exposes the "
        "robot's controls to that network.",
    )
    web_port: Int = Field(8765, ge=0, le=65535, description="Port of the live page; 0: any free port (logged).")
    keyboard: bool = Field(True, description="Read the keys below from the terminal that runs the session.")
    keys: dict[str, OperatorCommandName] = Field(
        default_factory=lambda: {
            "p": "toggle_pause", " ": "toggle_pause", "s": "success", "f": "failure",
            "r": "rerecord", "n": "reset", "q": "stop",
        },
        description="Terminal key (one character) -> operator command.",
    )

    @field_validator("keys")
    @classmethod
    def _single_characters(cls, keys: dict[str, str]) -> dict[str, str]:
        for key in keys:
            if len(key) != 1 or not key.isprintable():
                raise ValueError(f"console key {key!r} must be one printable character")
        return keys


class ActorConfig(StrictModel):
    """The actor's control loop."""

    rate_locked: Optional[bool] = Field(
        None,
        description="Hold the loop to task.control_rate_hz. None: locked on a real robot, free-running on the "
        "simulated one (its clock is simulated, so waiting would only slow learning down).",
    )
    send_every_steps: Int = Field(1, ge=1, le=10000, description="Transitions per message; an episode's end always sends.")
    stats_every_s: Float = Field(5.0, gt=0.0, description="Loop jitter and rate go to the learner this often.")
    torch_threads: Int = Field(1, ge=1, le=64, description="CPU threads for policy inference.")
    stop_timeout_s: Float = Field(
        10.0, gt=0.0, le=600.0,
        description="On stop, wait this long for the learner to receive what was sent and checkpoint it (what it has "
        "not checkpointed stays in the outbox for the next start).",
    )
    deterministic_every_episodes: Int = Field(
        0, ge=0, le=1000,
        description="Every Nth episode the policy acts deterministically (its mean action, as an evaluation runs "
        "it) and nobody intervenes: a running measure of what an evaluation would show, which "
        "training.stop_on can stop on; 0: never.",
    )
    sim_max_lead_env_steps: Int = Field(
        400, ge=1,
        description="A free-running simulated actor waits while all actors together are this many env steps ahead of "
        "what the learner's updates cover (the env steps the learner received, plus this actor's sent since, minus "
        "updates / training.updates_per_env_step; the learner publishes both counts with its weights), so fast "
        "simulators cannot outrun training; it waits between episodes only (the learner gets an episode when it "
        "ends), and a rate-locked actor never waits.",
    )
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    record_dataset: bool = Field(
        True,
        description="Record every episode the actor keeps (not a discarded one) as a LeRobotDataset v3 under the "
        "run dir (run_dir/dataset/<actor id>); a resumed run appends to it.",
    )
