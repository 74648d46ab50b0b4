"""The simulated task session as ROS 2 nodes (controller, reward, reset, actor) in separate
processes, with the learner over ZeroMQ: episodes complete and the learner has their
transitions; every process stops cleanly on SIGINT."""

import json
import time
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


OPERATOR_PROBE = """
import sys, time
import rclpy
from rclpy.node import Node
from std_srvs.srv import Trigger

rclpy.init()
node = Node("operator_probe")
for name in sys.argv[1:]:
    client = node.create_client(Trigger, "actor/" + name)
    deadline = time.monotonic() + 60
    while not client.wait_for_service(timeout_sec=0.2):
        if time.monotonic() > deadline:
            sys.exit("service actor/" + name + " did not come up")
    future = client.call_async(Trigger.Request())
    rclpy.spin_until_future_complete(node, future, timeout_sec=20)
    answer = future.result()
    print(name, answer.success, answer.message, flush=True)
node.destroy_node()
rclpy.shutdown()
"""


def test_the_operator_pauses_labels_and_stops_the_actor_node_through_its_services(ros_env, tmp_path):
    import csv

    config, paths = _session_files(tmp_path, episode_steps=40)
    config_file = paths.config_file
    text = config_file.read_text()
    # Another session's live page may hold the default port.
    config_file.write_text(config_to_yaml(with_fields(load_task_config(config_file), "actor.console", web_port=0)))
    assert text != config_file.read_text()
    learner_log = open(tmp_path / "learner.log", "w")
    learner = subprocess.Popen([sys.executable, "-m", "robot_stack", "learner", str(config_file)],
                               cwd=REPO, env=ros_env, stdout=learner_log, stderr=subprocess.STDOUT)
    params = {"config": str(config_file)}
    nodes = [NodeProcess(name, params, ros_env, tmp_path) for name in ("controller", "reward", "reset")]
    actor = NodeProcess("actor", {**params, "run_dir": str(tmp_path)}, ros_env, tmp_path)
    nodes.append(actor)
    status = tmp_path / "actor_status.json"
    probe = tmp_path / "probe.py"
    probe.write_text(OPERATOR_PROBE)

    def call(*services: str) -> str:
        done = subprocess.run([sys.executable, str(probe), *services], env=ros_env, capture_output=True, text=True, timeout=90)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    def actor_status() -> dict:
        try:
            return json.loads(status.read_text())
        except (OSError, ValueError):
            return {}

    operator_csv = paths.logs / "operator.csv"

    def operator_rows() -> list[dict]:
        return list(csv.DictReader(open(operator_csv))) if operator_csv.exists() else []

    try:
        wait_for(lambda: actor_status().get("env_steps", 0) >= 5, 150, "the actor stepping", nodes)
        assert call("pause").startswith("pause True queued")
        wait_for(lambda: actor_status().get("paused") is True, 20, "the actor paused", nodes)
        held = actor_status()["env_steps"]
        time.sleep(2.0)
        assert actor_status()["env_steps"] == held
        call("resume")
        wait_for(lambda: actor_status().get("env_steps", 0) > held + 3, 20, "steps after resuming", nodes)
        wait_for(lambda: (call("mark_success"), any("ended: success" in r["outcome"] for r in operator_rows()))[1],
                 60, "an episode labelled a success", nodes)
        call("stop")
        assert actor.process.wait(60) == 0  # the node ends on its own
        codes = {}
    finally:
        codes = {}
        for node in reversed(nodes):
            try:
                codes[node.name] = node.stop(signal.SIGINT)
            except AssertionError as error:
                codes[node.name] = str(error)
        learner.send_signal(signal.SIGINT)
        codes["learner"] = learner.wait(60)
        learner_log.close()
    assert all(code == 0 for code in codes.values()), codes
    rows = operator_rows()
    assert [r["source"] for r in rows] and all(r["source"] == "ros" for r in rows)
    assert rows[0]["command"] == "pause" and rows[-1]["command"] == "stop"
    episodes = read_episodes(paths.logs / "episodes.csv")
    assert any(int(e["operator_label"]) == 1 and int(e["success"]) == 1 for e in episodes)
    assert actor_status()["stopped_by"] == "ros"
    # The actor node recorded its episodes; the labelled one says who labelled it.
    from robot_stack.data.lerobot_v3 import validate_dataset
    from robot_stack.data.session_dataset import read_episode_transitions

    assert validate_dataset(tmp_path / "dataset" / "actor0") == []
    labels = [outcome.get("label") for _, outcome in read_episode_transitions(tmp_path / "dataset" / "actor0")]
    assert "operator" in labels and len(labels) == len(episodes)
