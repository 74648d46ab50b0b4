"""Interventions: the human's device replaces the policy while used; the scripted
teleoperator steps in after the policy strays, with a decaying probability, for bursts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from actor.intervention import HumanIntervention, ScriptedIntervention, intervention_rate
from robot_stack.config.schema import ScriptedInterventionConfig
from robot_stack.hardware.interfaces import TeleopCommand, TeleopDisconnected

EXPERT_TWIST = np.array([0.5, 0.0, -0.5, 0.0, 0.0, 0.1])
AGREEING = np.array([0.5, 0.0, -0.5, 0.0, 0.0, 0.0, -1.0], np.float32)
STRAYING = np.array([-0.5, 0.0, 0.5, 0.0, 0.0, 0.0, -1.0], np.float32)  # 1.41 away in translation


class FakeTeleop:
    def __init__(self, gripper: float | None = -1.0, intervening: bool = True):
        self.command = TeleopCommand(twist=EXPERT_TWIST.copy(), gripper=gripper, intervening=intervening)
        self.reads = 0
        self.resets = 0

    def read(self) -> TeleopCommand:
        self.reads += 1
        return self.command

    def reset(self) -> None:
        self.resets += 1

    def close(self) -> None:
        pass


def scripted(rate: float, teleop=None, max_episode_steps: int = 100, **overrides) -> ScriptedIntervention:
    config = ScriptedInterventionConfig(
        **{"stray_steps": 3, "burst_steps": 4, "initial_rate": rate, "final_rate": rate, **overrides}
    )
    return ScriptedIntervention(teleop or FakeTeleop(), config, np.random.default_rng(0), 7, max_episode_steps)


def decisions(intervention, actions, start_step: int = 0) -> list[bool]:
    return [intervention.decide({}, action, start_step + i) is not None for i, action in enumerate(actions)]


def test_with_rate_one_it_steps_in_on_the_stray_steps_th_strayed_step() -> None:
    intervention = scripted(1.0)

    taken = decisions(intervention, [STRAYING] * 3)

    assert taken == [False, False, True]


def test_the_action_it_takes_over_with_is_the_experts() -> None:
    intervention = scripted(1.0, stray_steps=1)

    action = intervention.decide({}, STRAYING, 0)

    np.testing.assert_allclose(action, [*EXPERT_TWIST, -1.0])
    assert action.dtype == np.float32


def test_with_rate_zero_it_never_steps_in() -> None:
    intervention = scripted(0.0)

    assert not any(decisions(intervention, [STRAYING] * 200))


def test_a_policy_that_agrees_with_the_expert_is_left_alone() -> None:
    intervention = scripted(1.0)

    assert not any(decisions(intervention, [AGREEING] * 50))


def test_a_burst_lasts_burst_steps_then_the_policy_acts_again() -> None:
    intervention = scripted(1.0, stray_steps=2, burst_steps=4)

    taken = decisions(intervention, [STRAYING] * 9)

    # stray, stray+step in (1 of 4), 3 more burst steps, then two strayed steps before the next.
    assert taken == [False, True, True, True, True, False, True, True, True]


def test_a_strayed_step_run_broken_by_agreement_starts_over() -> None:
    intervention = scripted(1.0)

    taken = decisions(intervention, [STRAYING, STRAYING, AGREEING, STRAYING, STRAYING, STRAYING])

    assert taken == [False, False, False, False, False, True]


def test_a_gripper_choice_other_than_the_experts_counts_as_straying() -> None:
    intervention = scripted(1.0, stray_steps=1)
    closing = AGREEING.copy()
    closing[6] = 1.0  # expert says open

    assert intervention.decide({}, closing, 0) is not None


def test_stay_counts_as_agreeing_when_the_gripper_is_already_where_the_expert_wants_it() -> None:
    intervention = scripted(1.0, stray_steps=1)
    staying = AGREEING.copy()
    staying[6] = 0.2  # between the thresholds: keep (open after reset), as the expert's "open"

    assert intervention.decide({}, staying, 0) is None


def test_interventions_are_capped_at_max_fraction_of_the_episode() -> None:
    intervention = scripted(1.0, stray_steps=1, burst_steps=100, max_fraction=0.3, max_episode_steps=10)

    taken = decisions(intervention, [STRAYING] * 10)
    intervention.reset()
    after_reset = decisions(intervention, [STRAYING] * 10)

    assert sum(taken) == 3 and sum(after_reset) == 3


def test_disabled_it_never_steps_in_but_still_follows_the_expert() -> None:
    teleop = FakeTeleop()
    intervention = scripted(1.0, teleop=teleop)
    intervention.enabled = False

    assert not any(decisions(intervention, [STRAYING] * 20))
    assert teleop.reads == 20


def test_reset_restarts_the_expert() -> None:
    teleop = FakeTeleop()
    intervention = scripted(1.0, teleop=teleop)
    before = teleop.resets

    intervention.reset()

    assert teleop.resets == before + 1


def test_the_rate_decays_from_initial_to_final_with_the_e_folding_time() -> None:
    config = ScriptedInterventionConfig(initial_rate=0.5, final_rate=0.1, decay_env_steps=1000.0)

    assert intervention_rate(config, 0) == pytest.approx(0.5)
    assert intervention_rate(config, 1000) == pytest.approx(0.1 + 0.4 / math.e)
    assert intervention_rate(config, 100_000) == pytest.approx(0.1, abs=1e-12)


def test_the_step_in_probability_follows_the_rate_at_the_env_step_given() -> None:
    config = ScriptedInterventionConfig(
        stray_steps=1, burst_steps=1, initial_rate=0.8, final_rate=0.0, decay_env_steps=1000.0
    )
    intervention = ScriptedIntervention(FakeTeleop(), config, np.random.default_rng(1), 7, 10_000)

    early = np.mean([intervention.decide({}, STRAYING, 0) is not None for _ in range(2000)])
    late = np.mean([intervention.decide({}, STRAYING, 2000) is not None for _ in range(2000)])

    assert early == pytest.approx(0.8, abs=0.04)
    assert late == pytest.approx(0.8 * math.exp(-2), abs=0.03)


# ------------------------------------------------------------------------ human


def test_the_human_device_replaces_the_policy_while_intervening() -> None:
    human = HumanIntervention(FakeTeleop(gripper=None, intervening=True), env_action_dim=7)

    action = human.decide({}, AGREEING, 0)

    np.testing.assert_allclose(action, [*EXPERT_TWIST, 0.0])  # no gripper request: keep


def test_an_idle_device_lets_the_policy_act() -> None:
    human = HumanIntervention(FakeTeleop(gripper=None, intervening=False), env_action_dim=7)

    assert human.decide({}, AGREEING, 0) is None


def test_a_gripper_button_alone_is_an_intervention() -> None:
    device = FakeTeleop(gripper=1.0, intervening=False)
    device.command = TeleopCommand(twist=np.zeros(6), gripper=1.0, intervening=False)
    human = HumanIntervention(device, env_action_dim=7)

    np.testing.assert_allclose(human.decide({}, AGREEING, 0), [0, 0, 0, 0, 0, 0, 1.0])


def test_a_six_dimensional_task_gets_the_twist_only() -> None:
    human = HumanIntervention(FakeTeleop(gripper=None), env_action_dim=6)

    assert human.decide({}, AGREEING[:6], 0).shape == (6,)


class _UnpluggedTeleop:
    def __init__(self):
        self.connected = False

    def read(self) -> TeleopCommand:
        if not self.connected:
            raise TeleopDisconnected("SpaceMouse Compact at /dev/hidraw3 stopped reporting")
        return TeleopCommand(twist=np.array(EXPERT_TWIST), gripper=None, intervening=True)

    def close(self) -> None:
        pass


def test_a_lost_device_ends_the_intervention_and_tells_the_operator(caplog) -> None:
    device = _UnpluggedTeleop()
    human = HumanIntervention(device, env_action_dim=7)

    with caplog.at_level("ERROR", logger="actor.intervention"):
        assert human.decide({}, AGREEING, 0) is None
        assert human.decide({}, AGREEING, 1) is None
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "/dev/hidraw3" in errors[0].getMessage()
    assert human.disconnected_steps == 2

    device.connected = True
    np.testing.assert_allclose(human.decide({}, AGREEING, 2), [*EXPERT_TWIST, 0.0])
    assert human.disconnected_steps == 0
