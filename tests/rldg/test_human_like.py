"""The scripted human-like demonstrator: per-episode speed, drifting error, pauses."""

from types import SimpleNamespace

import numpy as np
import pytest

from robot_stack.config.rldg import HumanLikeDemosConfig
from robot_stack.sim.human_like import HumanLikeTeleop


class ConstantExpert:
    def reset(self):
        pass

    def act(self, position, rotation, width):
        return np.array([0.8, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0])


class StillBackend:
    def read_state(self):
        return SimpleNamespace(tcp_position_m=np.zeros(3), tcp_rotation=np.eye(3), gripper_width_m=0.08)


def _readings(config, steps, seed=0):
    teleop = HumanLikeTeleop(ConstantExpert(), StillBackend(), config, 10.0, np.random.default_rng(seed))
    teleop.reset()
    return teleop, [teleop.read() for _ in range(steps)]


def test_without_noise_or_pauses_it_is_the_expert_at_its_episode_speed():
    config = HumanLikeDemosConfig(speed_range=(0.5, 0.5), drift_std=0.0, noise_std=0.0, pause_probability=0.0)
    _, readings = _readings(config, 5)
    for reading in readings:
        np.testing.assert_allclose(reading.twist, [0.4, 0, 0, 0, 0, 0])
        assert reading.gripper == 1.0 and reading.intervening


def test_pauses_hold_still_at_the_configured_rate():
    config = HumanLikeDemosConfig(drift_std=0.0, noise_std=0.0, pause_probability=0.1, pause_steps=(3, 3))
    _, readings = _readings(config, 4000, seed=1)
    still = np.array([np.all(r.twist == 0) for r in readings])
    # A pause starts with probability p on a step that is not paused and holds that step and the next two,
    # so of every 1/p moving steps plus 3 still ones: still share = 3p / (1 + 2p).
    expected = 3 * 0.1 / (1 + 2 * 0.1)
    assert still.mean() == pytest.approx(expected, abs=0.04)
    assert all(r.gripper == 1.0 for r in readings[1:])  # the gripper command is held through a pause


def test_drift_is_slow_and_has_the_configured_spread():
    config = HumanLikeDemosConfig(speed_range=(1.0, 1.0), drift_std=0.3, drift_time_constant_s=1.0, noise_std=0.0,
                                  pause_probability=0.0)
    _, readings = _readings(config, 5000, seed=2)
    error = np.array([r.twist[1] for r in readings])  # the expert asks for 0 on y: all of it is drift
    assert error.std() == pytest.approx(0.3, rel=0.2)
    lag1 = np.corrcoef(error[:-1], error[1:])[0, 1]
    assert lag1 == pytest.approx(np.exp(-0.1), abs=0.05)  # correlation time 1 s at 10 Hz


def test_speed_is_drawn_per_episode_within_range():
    config = HumanLikeDemosConfig(speed_range=(0.4, 0.9), drift_std=0.0, noise_std=0.0, pause_probability=0.0)
    teleop = HumanLikeTeleop(ConstantExpert(), StillBackend(), config, 10.0, np.random.default_rng(3))
    speeds = []
    for _ in range(50):
        teleop.reset()
        speeds.append(teleop.read().twist[0] / 0.8)
    assert 0.4 <= min(speeds) and max(speeds) <= 0.9 and np.std(speeds) > 0.05


@pytest.mark.parametrize("field, value", [("speed_range", (0.0, 1.0)), ("speed_range", (0.9, 0.5)), ("pause_steps", (3, 2))])
def test_bad_settings_are_refused(field, value):
    with pytest.raises(ValueError):
        HumanLikeDemosConfig(**{field: value})
