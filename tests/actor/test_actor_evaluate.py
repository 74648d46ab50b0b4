"""Policy evaluation: deterministic rollouts, success rate, CSV and JSON."""

from __future__ import annotations

import csv
import json

import pytest

from actor.evaluate_policy import evaluate_policy, write_eval
from actor_fakes import FakePolicy, SimHolder
from robot_stack.config import load_task_config


@pytest.fixture
def config(pick_cube_state_yaml):
    return load_task_config(pick_cube_state_yaml)


def test_a_policy_replaying_the_expert_succeeds(config, tmp_path) -> None:
    holder = SimHolder()

    report = evaluate_policy(config, holder.expert_policy(), episodes=2, seed=5, progress=False, env_factory=holder.env)
    written = write_eval(report, tmp_path)

    assert report.success_rate == 1.0
    assert [e.seed for e in report.episodes] == [5, 6]
    assert all(e.episode_return == 1.0 and e.length < 60 for e in report.episodes)
    rows = list(csv.DictReader((tmp_path / "eval_episodes.csv").open()))
    summary = json.loads((tmp_path / "eval.json").read_text())
    assert [p.name for p in written] == ["eval_episodes.csv", "eval.json"]
    assert [r["success"] for r in rows] == ["1", "1"]
    assert summary["success_rate"] == 1.0 and len(summary["per_episode"]) == 2


def test_a_policy_that_does_nothing_fails(config) -> None:
    short = config.model_copy(update={"task": config.task.model_copy(update={"max_episode_steps": 15})})
    policy = FakePolicy()

    report = evaluate_policy(short, policy, episodes=2, seed=0, progress=False)

    assert report.success_rate == 0.0
    assert [e.length for e in report.episodes] == [15, 15]
    assert policy.calls == 30


def test_a_nan_action_is_held_and_counted_not_raised(config) -> None:
    short = config.model_copy(update={"task": config.task.model_copy(update={"max_episode_steps": 5})})
    policy = FakePolicy(action_for=lambda observation: [float("nan")] * 4)

    report = evaluate_policy(short, policy, episodes=1, progress=False)

    assert report.nonfinite_actions == 5 and report.episodes[0].length == 5


@pytest.mark.parametrize("deterministic", [True, False])
def test_the_evaluation_asks_the_policy_for_mean_or_sampled_actions_and_says_which(config, tmp_path, deterministic) -> None:
    short = config.model_copy(update={"task": config.task.model_copy(update={"max_episode_steps": 3})})
    asked = []

    class Recording(FakePolicy):
        def act(self, observation, deterministic, rng):
            asked.append(deterministic)
            return super().act(observation, deterministic, rng)

    report = evaluate_policy(short, Recording(), episodes=1, progress=False, deterministic=deterministic)
    write_eval(report, tmp_path)

    assert asked == [deterministic] * 3
    assert json.loads((tmp_path / "eval.json").read_text())["deterministic"] is deterministic


def test_eval_json_holds_the_deterministic_evaluation_with_the_sampled_one_beside_it(config, tmp_path) -> None:
    short = config.model_copy(update={"task": config.task.model_copy(update={"max_episode_steps": 3})})
    deterministic = evaluate_policy(short, FakePolicy(), episodes=2, seed=7, progress=False, deterministic=True)
    sampled = evaluate_policy(short, FakePolicy(), episodes=1, seed=7, progress=False, deterministic=False)

    write_eval(deterministic, tmp_path, sampled)

    summary = json.loads((tmp_path / "eval.json").read_text())
    rows = list(csv.DictReader((tmp_path / "eval_episodes.csv").open()))
    assert summary["deterministic"] is True and summary["episodes"] == 2
    assert summary["sampled"]["deterministic"] is False and summary["sampled"]["episodes"] == 1
    assert [(r["actions"], r["seed"]) for r in rows] == [("deterministic", "7"), ("deterministic", "8"), ("sampled", "7")]
