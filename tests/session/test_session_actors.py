"""`robot-stack session --actors 2`: two simulated actors feed one learner, which counts what
both send, and their pacing holds all of them together within the lead limit."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

from robot_stack.config import config_to_yaml, load_task_config, with_fields

LEAD_LIMIT = 100
UTD = 2.0


def test_two_actors_feed_one_learner_and_lead_training_together_by_the_limit(quick_task, tmp_path):
    config = load_task_config(quick_task)
    # Two updates per env step on one thread: the learner is slower than two actors, so pacing binds.
    config = with_fields(config, "training", updates_per_env_step=UTD, log_every_updates=5, publish_every_updates=10)
    config = with_fields(config, "actor", sim_max_lead_env_steps=LEAD_LIMIT)
    config = with_fields(config, "actor.console", web_port=0)
    task = tmp_path / "two_actors.yaml"
    task.write_text(config_to_yaml(config))
    run_dir = tmp_path / "run"

    process = subprocess.run(
        [sys.executable, "-m", "robot_stack", "session", str(task), "--run-dir", str(run_dir), "--actors", "2",
         "--max-env-steps", "500", "--no-progress"],
        capture_output=True, text=True, timeout=400, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )

    assert process.returncode == 0, process.stdout + process.stderr
    logs = run_dir / "logs"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["actors"] == 2 and summary["stop_reason"].startswith("step budget reached")
    with open(logs / "episodes.csv", newline="") as handle:
        episodes = list(csv.DictReader(handle))
    assert {row["actor"] for row in episodes} == {"actor0", "actor1"}
    # Everything both actors took reached the learner, and nothing else did.
    actor_steps = [json.loads((logs / f"actor-actor{index}.json").read_text())["env_steps"] for index in (0, 1)]
    learner_status = json.loads((logs / "status.json").read_text())
    assert learner_status["env_steps"] == sum(actor_steps)
    assert all(steps > 0 for steps in actor_steps)
    assert (logs / "actor0.log").exists() and (logs / "actor1.log").exists()
    assert (run_dir / "dataset" / "actor0").is_dir() and (run_dir / "dataset" / "actor1").is_dir()
    # The lead of both actors together over what training covers, as the learner saw it whenever it
    # logged: within the limit, plus the episode each actor may start just under it, plus what one
    # actor sent that the other had not yet seen counted (weights versions carry the counts; on a
    # loaded machine one more episode went by between two of them).
    with open(logs / "train.csv", newline="") as handle:
        leads = [float(row["env_steps"]) - float(row["step"]) / UTD for row in csv.DictReader(handle)]
    assert leads and max(leads) <= LEAD_LIMIT + 3 * config.task.max_episode_steps
