"""The pacing rule of free-running simulated actors (actor_loop.lead_over_training), played out
with N actors against a learner slower than they are, fresh and after a restart."""

from __future__ import annotations

import pytest

from actor.actor_loop import lead_over_training
from robot_stack.transport import TrainingProgress

EPISODE_STEPS = 100
LEAD_LIMIT = 400


def play(actors: int, utd: float, learner_updates_per_tick: int, resumed: TrainingProgress, ticks: int = 300) -> list[float]:
    """Actors and a learner taking turns, a tick being about an episode's time. In a tick each
    actor that the rule lets go collects an episode and sends it (the learner receives it at
    once); then the learner trains at its own speed, up to what is due, and publishes its
    progress, which every actor takes. Returns the lead of all actors over training after each
    tick (env steps received minus updates / utd)."""
    learner_steps, updates = resumed.env_steps, resumed.updates
    published = resumed  # every actor (re)starts from the learner's published progress
    leads = []
    for _ in range(ticks):
        for _actor in range(actors):
            # An actor goes at most once a tick, so it has sent nothing since the progress it holds.
            if lead_over_training(published, 0, utd) <= LEAD_LIMIT:
                learner_steps += EPISODE_STEPS
        updates = min(updates + learner_updates_per_tick, int(utd * learner_steps))
        leads.append(learner_steps - updates / utd)
        published = TrainingProgress(learner_steps, updates)
    return leads


@pytest.mark.parametrize("actors", [1, 2, 4])
def test_n_actors_together_lead_training_by_the_limit_and_an_episode_each(actors):
    leads = play(actors, utd=1.0, learner_updates_per_tick=60, resumed=TrainingProgress(0, 0))

    assert max(leads) <= LEAD_LIMIT + actors * EPISODE_STEPS
    # Training is the bottleneck all along: the actors waited, they did not run dry.
    assert min(leads[50:]) >= LEAD_LIMIT - 60


@pytest.mark.parametrize("actors", [1, 2])
def test_after_a_learner_restart_the_actors_lead_by_the_limit_not_by_its_previous_steps(actors):
    # Resumed at the counts its checkpoint kept (1,557 env steps, 1,207 updates): a fresh actor
    # compares the learner's total with its updates, not its own zero steps with them.
    leads = play(actors, utd=1.0, learner_updates_per_tick=60, resumed=TrainingProgress(1557, 1207))

    assert max(leads) <= LEAD_LIMIT + actors * EPISODE_STEPS


def test_an_actor_counts_its_own_steps_the_learner_has_not_yet_counted():
    caught_up = TrainingProgress(env_steps=5000, updates=10_000)

    assert lead_over_training(caught_up, 0, 2.0) == 0
    assert lead_over_training(caught_up, 300, 2.0) == 300
    assert lead_over_training(TrainingProgress(env_steps=5000, updates=9000), 300, 2.0) == 800
