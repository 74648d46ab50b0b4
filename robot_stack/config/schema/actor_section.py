"""The actor section: the actor process's control loop."""

from __future__ import annotations

from typing import Optional

from pydantic import Field

from robot_stack.config.schema.primitives import Float, Int, StrictModel


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
        description="A free-running simulated actor waits while it is this many env steps ahead of what the learner's "
        "updates cover (weights version / training.updates_per_env_step), so a fast simulator cannot outrun training; "
        "a rate-locked actor never waits.",
    )
