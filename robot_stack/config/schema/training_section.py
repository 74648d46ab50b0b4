"""The training section: the learner's buffers and update rate, and when a session stops."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, model_validator

from robot_stack.config.schema.primitives import Float, Int, StrictModel


class InitFromConfig(StrictModel):
    """A warm start: a new run that begins with what another run learned. Not a resume: the new
    run keeps its own run dir, counters start at 0 and its replay starts empty but for demos;
    once the new run has checkpoints of its own, a restart resumes those and this is not applied
    again. The other run may be of another task, but its observation and action spec (and a
    frozen image trunk) must be the same."""

    run_dir: Path = Field(description="The other run's directory (its checkpoints/ and dataset/ are read).")
    networks: bool = Field(
        True,
        description="Start from its newest checkpoint's networks: actor, critics, target critics, grasp critic and "
        "temperature. The optimisers start fresh (their moments describe the other run's data and learning rates).",
    )
    datasets_as_demos: bool = Field(
        False, description="Also put every episode it recorded (its dataset/) into the demo buffer, after the task's demos."
    )

    @model_validator(mode="after")
    def _takes_something(self) -> "InitFromConfig":
        if not (self.networks or self.datasets_as_demos):
            raise ValueError("init_from takes nothing: set networks or datasets_as_demos (or drop init_from)")
        return self


class TrainingConfig(StrictModel):
    """The learner process and the session around it."""

    seed: Int = Field(0, ge=0)
    torch_threads: Optional[Int] = Field(
        1, ge=1, le=256,
        description="Learner CPU threads; none: torch's default (one per core). One, because the learner shares the "
        "machine with actors: with torch's two threads on a 2-core machine where another process is busy, the "
        "learner's threads wait on each other and it slows several-fold (docs/benchmarks.md#learner-speed-against-stable-baselines3).",
    )
    online_buffer_capacity: Int = Field(200_000, ge=100, le=10_000_000, description="Transitions.")
    demo_buffer_capacity: Int = Field(50_000, ge=100, le=10_000_000, description="Demo and intervention transitions.")
    demo_ratio: Float = Field(0.5, ge=0.0, le=1.0, description="Share of each batch from the demo buffer (RLPD: 0.5).")
    demo_episodes: Int = Field(20, ge=0, le=10000, description="Demos the session records when none exist.")
    demo_dir: Optional[Path] = Field(None, description="Where demos are kept; none means <session.run_dir>/../demos/<task>.")
    updates_per_env_step: Float = Field(1.0, gt=0.0, le=64.0, description="Update-to-data ratio: learner steps per received transition.")
    min_online_transitions: Int = Field(200, ge=0, description="Online transitions before training starts (demos are used from the start).")
    publish_every_updates: Int = Field(50, ge=1, description="Weights go to the actors every N learner steps...")
    publish_every_s: Float = Field(5.0, gt=0.0, description="...or every T seconds, whichever comes first.")
    checkpoint_every_s: Float = Field(300.0, gt=0.0, le=86400.0)
    log_every_updates: Int = Field(100, ge=1)
    max_env_steps: Int = Field(20_000, ge=1, description="The session stops here...")
    target_success_rate: Optional[Float] = Field(
        0.9, gt=0.0, le=1.0, description="...or once the success rate stop_on names, over the last window, reaches this."
    )
    stop_on: Literal["policy_episodes", "deterministic_episodes"] = Field(
        "policy_episodes",
        description="Which episodes target_success_rate is read from. deterministic_episodes (every shipped sim task): "
        "the last success_window_episodes of the actor's deterministic ones (actor.deterministic_every_episodes), "
        "run as an evaluation runs. policy_episodes reads high: the exploring policy's episodes that nobody "
        "intervened in, with sampled actions, while the operator intervenes exactly when the policy strays (a "
        "pick-cube session stopped at 95% then evaluated 86%, peg insertion 90% then 42%). It is the default only "
        "because deterministic episodes ignore the operator's SpaceMouse, which a real robot's task must opt into.",
    )
    success_window_episodes: Int = Field(
        20, ge=1, le=1000,
        description="The stop rule's window; with deterministic episodes use 40 or more (36 of 40 for a 90% target): "
        "read after every episode, 18 of 20 fired on a lucky streak of a policy that then evaluated 70%.",
    )
    min_policy_only_episodes: Int = Field(
        10, ge=0, le=1000, description="stop_on policy_episodes: at least this many episodes without intervention in the window."
    )
    eval_episodes: Int = Field(
        50, ge=0, le=10000,
        description="After training, episodes without interventions with the policy's mean action (the figure to report), "
        "then as many with sampled actions from the same starts.",
    )
    max_wall_time_s: Optional[Float] = Field(None, gt=0.0, description="The session also stops after this long.")
    init_from: Optional[InitFromConfig] = Field(None, description="Warm-start from another run (`session --init-from`).")
