"""One actor step outside the actor process (``ActorStepper``): the action that reaches the env,
who chose it, the gripper's state changes and the episode's bookkeeping, as the actor records them."""

from __future__ import annotations

from typing import Optional

import numpy as np

from actor.actor_loop import ActorStepper


class GripperEnv:
    """Observations count steps; the gripper closes on a command above 0.5 and opens below -0.5;
    an episode is ``episode_steps`` long and pays 1 on its last step."""

    action_dim = 4
    binary_gripper = True

    def __init__(self, episode_steps: int = 3):
        self.episode_steps = episode_steps
        self.executed: list[np.ndarray] = []
        self.reset_seeds: list[Optional[int]] = []
        self.closed, self.t = False, 0

    def reset(self, seed: Optional[int] = None):
        self.reset_seeds.append(seed)
        self.closed, self.t = False, 0
        return {"state": np.array([0.0], np.float32)}, {"gripper_closed": False}

    def step(self, action):
        self.executed.append(np.array(action))
        self.t += 1
        if action[-1] > 0.5:
            self.closed = True
        elif action[-1] < -0.5:
            self.closed = False
        done = self.t >= self.episode_steps
        info = {"gripper_closed": self.closed, "success": done}
        return {"state": np.array([float(self.t)], np.float32)}, float(done), done, False, info


class ScriptedPolicy:
    def __init__(self, actions):
        self.actions = iter(actions)
        self.deterministic: list[bool] = []

    def act(self, observation, deterministic, rng):
        self.deterministic.append(deterministic)
        return np.asarray(next(self.actions), np.float32)


class OverrideAt:
    """Takes over at the given env steps (counted over all episodes) with ``action``."""

    def __init__(self, steps, action):
        self.steps, self.action = set(steps), np.asarray(action, np.float32)
        self.asked: list[int] = []
        self.resets = 0

    def decide(self, observation, action, env_steps):
        self.asked.append(env_steps)
        return self.action if env_steps in self.steps else None

    def reset(self):
        self.resets += 1


def stepper(actions, intervention=None, episode_steps: int = 3) -> ActorStepper:
    actor = ActorStepper(GripperEnv(episode_steps), intervention, ScriptedPolicy(actions), np.random.default_rng(0))
    actor.reset(seed=7)
    return actor


def test_a_nonfinite_policy_action_is_held_counted_and_recorded_as_the_hold_action():
    actor = stepper([[0.1, np.nan, 0.0, 1.0], [0.1, 0.0, 0.0, np.inf]])

    transitions = [actor.step().transition() for _ in range(2)]

    assert actor.nonfinite_actions == 2
    for executed, transition in zip(actor.env.executed, transitions):
        assert np.array_equal(executed, np.zeros(4, np.float32))
        assert np.array_equal(transition["actions"], np.zeros(4, np.float32))


def test_a_teleoperator_override_is_what_the_env_executes_and_the_transition_is_flagged_an_intervention():
    teleop = OverrideAt(steps={1}, action=[0.3, 0.0, 0.0, 0.7])
    actor = stepper([[0.0, 0.0, 0.0, 0.0]] * 3, teleop)

    steps = [actor.step() for _ in range(3)]

    assert teleop.asked == [0, 1, 2]  # the teleoperator's schedule counts the actor's env steps
    assert [step.intervened for step in steps] == [False, True, False]
    assert np.allclose(actor.env.executed[1], [0.3, 0.0, 0.0, 0.7])
    recorded = steps[1].transition()
    assert recorded["interventions"] and recorded["actions"][-1] == 1.0  # the gripper command as executed
    assert actor.episode_interventions == 1


def test_nobody_intervenes_in_a_deterministic_step():
    teleop = OverrideAt(steps={0}, action=[0.3, 0.0, 0.0, 0.7])
    actor = stepper([[0.0, 0.0, 0.0, 0.0]], teleop)

    step = actor.step(deterministic=True)

    assert teleop.asked == [] and not step.intervened
    assert actor.policy.deterministic == [True]


def test_gripper_changes_are_flagged_on_the_steps_where_the_gripper_closes_or_opens():
    actor = stepper([[0, 0, 0, 0.9], [0, 0, 0, 0.9], [0, 0, 0, -0.9], [0, 0, 0, -0.9]], episode_steps=10)

    changed = [bool(actor.step().transition()["gripper_changed"]) for _ in range(4)]

    assert changed == [True, False, True, False]


def test_an_episode_keeps_its_return_length_and_interventions_until_the_next_reset():
    teleop = OverrideAt(steps={0, 3}, action=[0.0, 0.0, 0.0, 0.0])
    actor = stepper([[0.0, 0.0, 0.0, 0.0]] * 4, teleop, episode_steps=3)

    steps = [actor.step() for _ in range(3)]

    assert [step.episode_over for step in steps] == [False, False, True]
    assert steps[2].info["success"]
    assert (actor.episode_return, actor.episode_length, actor.episode_interventions) == (1.0, 3, 1)
    actor.reset()
    assert (actor.episode_return, actor.episode_length, actor.episode_interventions) == (0.0, 0, 0)
    assert actor.env.reset_seeds == [7, None] and teleop.resets == 2  # seeded once, then the env's own stream
    assert actor.step().intervened and actor.env_steps == 4
    assert np.array_equal(actor.observation["state"], [1.0])  # the next step starts from the new episode


def test_a_step_cut_short_by_a_stop_is_recorded_truncated():
    actor = stepper([[0.0, 0.0, 0.0, 0.0]])

    step = actor.step()

    assert not step.transition()["truncated"]
    assert step.transition(cut_short=True)["truncated"] and not step.transition(cut_short=True)["terminated"]
