"""What a session reports: the stop rule on the deterministic episodes' window, and the final
evaluation with the policy's mean action first and sampled actions beside it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from robot_stack.config import load_task_config, with_fields
from robot_stack.run_dir import RunPaths
from robot_stack.session import _progress_text, _summary_text, stop_reason, summarise

TASKS = Path(__file__).resolve().parents[2] / "hardware_configs" / "tasks"
SIM_TASKS = sorted([*TASKS.glob("sim_*.yaml"), *TASKS.glob("variants/*.yaml")])


@pytest.mark.parametrize("task", SIM_TASKS, ids=lambda path: path.stem)
def test_every_shipped_sim_task_stops_on_a_window_of_at_least_40_deterministic_episodes(task):
    training = load_task_config(task).training

    assert training.stop_on == "deterministic_episodes"
    assert training.success_window_episodes >= 40


def test_the_stop_rule_names_the_deterministic_window_it_read(pick_cube_state_yaml):
    training = with_fields(load_task_config(pick_cube_state_yaml), "training", target_success_rate=0.9).training

    reason = stop_reason({"env_steps": 5000, "success_rate": 0.9}, training, time.monotonic())

    assert reason == "target success rate reached (90% >= 90% over the last 40 deterministic episodes)"


def test_the_progress_line_leads_with_the_deterministic_rate():
    filling = {"episodes": 30, "policy_success_rate": 0.8, "deterministic_success_rate": None, "deterministic_window": [12, 15]}
    full = {"episodes": 90, "policy_success_rate": 0.95, "deterministic_success_rate": 0.875, "deterministic_window": [35, 40]}

    assert _progress_text(filling).startswith("ep 30 | deterministic 12/15 | training success 80%")
    assert _progress_text(full).startswith("ep 90 | deterministic 88% | training success 95%")


def an_eval_json(success_rate: float, sampled_rate: float) -> dict:
    sampled = {"deterministic": False, "episodes": 50, "success_rate": sampled_rate, "mean_length": 30.0, "per_episode": []}
    return {"deterministic": True, "episodes": 50, "success_rate": success_rate, "mean_length": 25.0, "per_episode": [],
            "sampled": sampled}


def test_the_summary_reports_the_deterministic_evaluation_with_sampled_beside_it(pick_cube_state_yaml, tmp_path):
    config = load_task_config(pick_cube_state_yaml)
    status = {"env_steps": 9000, "episodes": 200, "updates": 9000, "policy_success_rate": 0.95,
              "deterministic_success_rate": 0.9, "intervention_rate": 0.02}

    summary = summarise(config, RunPaths.under(tmp_path), status, "target success rate reached", 300.0,
                        an_eval_json(0.92, 0.86), interrupted=False)
    text = _summary_text(summary)

    assert summary["evaluation"] == {"episodes": 50, "success_rate": 0.92, "mean_length": 25.0,
                                     "sampled": {"episodes": 50, "success_rate": 0.86, "mean_length": 30.0}}
    assert summary["stop_on"] == "deterministic_episodes"
    assert ("evaluation without interventions: 92% of 50 episodes with the policy's mean action "
            "(sampled actions, as in training: 86% of 50)") in text
