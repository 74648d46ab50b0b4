"""The simulated task session as ROS 2 nodes (controller, reward, reset, actor) in separate
processes, with the learner over ZeroMQ: episodes complete and the learner has their
transitions; every process stops cleanly on SIGINT."""

import json
import signal
import subprocess
import sys

from rosproc import REPO, NodeProcess, wait_for

from robot_stack.config import load_task_config
from robot_stack.config.loader import config_to_yaml
from robot_stack.data.curves import read_episodes
from robot_stack.run_dir import RunPaths
from robot_stack.config import with_fields
from robot_stack.session import session_config


def _session_files(tmp_path, episode_steps=20):
    base = load_task_config(REPO / "hardware_configs" / "tasks" / "sim_pick_cube_state.yaml")
    paths = RunPaths.under(tmp_path, tmp_path / "demos")
    config = session_config(base, paths, demo_episodes=0)
    config = with_fields(config, "task", max_episode_steps=episode_steps)
    # Five processes share two cores here (the learner importing torch, the simulated
    # controller's 1 kHz physics): the controller's state can pause for a second, which on a
    # real cell would rightly stop the actor.
    config = with_fields(config, "ros", state_timeout_s=3.0)
    for directory in (paths.logs, paths.checkpoints):
        directory.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text(config_to_yaml(config))
    return config, paths


def test_simulated_session_over_ros_nodes_reaches_the_learner(ros_env, tmp_path):
    config, paths = _session_files(tmp_path)
    learner_log = open(tmp_path / "learner.log", "w")
    learner = subprocess.Popen(
        [sys.executable, "-m", "robot_stack", "learner", str(paths.config_file)],
        cwd=REPO, env=ros_env, stdout=learner_log, stderr=subprocess.STDOUT,
    )
    params = {"config": str(paths.config_file)}
    nodes = [NodeProcess(name, params, ros_env, tmp_path) for name in ("controller", "reward", "reset")]
    nodes.append(NodeProcess("actor", {**params, "run_dir": str(tmp_path)}, ros_env, tmp_path))
    episodes_csv = paths.logs / "episodes.csv"
    status_json = paths.logs / "status.json"

    def learner_has_three_episodes():
        if not (episodes_csv.exists() and status_json.exists()):
            return False
        try:
            transitions = json.loads(status_json.read_text())["online_transitions"]
        except (ValueError, KeyError):
            return False
        return len(read_episodes(episodes_csv)) >= 3 and transitions >= 60

    codes = {}
    try:
        wait_for(learner_has_three_episodes, 150, "3 episodes and their transitions at the learner", nodes)
    finally:
        for node in reversed(nodes):
            try:
                codes[node.name] = node.stop(signal.SIGINT)
            except AssertionError as error:
                codes[node.name] = str(error)
        learner.send_signal(signal.SIGINT)
        codes["learner"] = learner.wait(60)
        learner_log.close()
    assert all(code == 0 for code in codes.values()), codes
    episodes = read_episodes(episodes_csv)
    assert len(episodes) >= 3
    assert all(int(e["length"]) == 20 for e in episodes[:3])
    status = json.loads((paths.logs / "status.json").read_text())
    # Every step of the finished episodes reached the learner's replay buffer.
    assert status["online_transitions"] >= 60
    assert status["actors"] == [] or status["actors"] == ["actor0"]
    actor_stats = read_episodes(paths.logs / "actor.csv")
    assert actor_stats and actor_stats[-1]["rate_locked"] == 1.0
    assert 5.0 < actor_stats[-1]["loop_hz"] < 12.0  # locked to the task's 10 Hz
