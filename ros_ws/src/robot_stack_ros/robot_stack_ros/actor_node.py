"""The actor node: the actor loop (actor/actor_loop.py) on the ROS 2 cell.

Observations are assembled from the controller's state topics (and camera topics when the
task observes images), targets go out on franka/target_pose and franka/gripper_command,
reward comes from the reward service, resets from the reset action, interventions from
the SpaceMouse topics (or, in simulation with teleop kind 'scripted', from the scripted
teleoperator watching a mirror of the simulated world). Transitions stream to the learner
over ZeroMQ exactly as in the plain session. The loop is rate-locked to the task's control
rate and reports its jitter.

Publishes actor/episode_events (EpisodeEvent) and actor/intervention_events
(InterventionEvent). Operator commands (actor/console.py) are std_srvs/Trigger services:
actor/pause, actor/resume, actor/mark_success, actor/mark_failure, actor/rerecord,
actor/reset_episode, actor/stop; each answers whether the command was queued (the loop
applies it at its next step boundary). The live page is served as in the plain session
(actor.console). Parameters: config (required), actor_id, seed, max_env_steps (0: until
stopped), run_dir (status.json and the outbox go there; empty: none), learner_host,
transitions_port, weights_port (override the task's session file).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from rclpy.node import Node

from std_srvs.srv import Trigger

from actor.console import OperatorConsole
from actor.intervention import HumanIntervention, ScriptedIntervention
from actor.actor_loop import ActorEnvironment, dataset_path, run_actor
from robot_stack.envs.franka_env import FrankaEnv
from robot_stack.config import with_fields as _with
from robot_stack_interfaces.msg import EpisodeEvent, InterventionEvent

from robot_stack_ros.clients import STOPPING, MirrorFeed, StopRequested, RosCameras, RosReset, RosRobotBackend, RosSuccess, RosTeleop, StateCache
from robot_stack_ros.node_common import COMMAND_QOS, Topics, load_config, run_node


#: Service name (under the node) -> operator command.
OPERATOR_SERVICES = {
    "pause": "pause", "resume": "resume", "mark_success": "success", "mark_failure": "failure",
    "rerecord": "rerecord", "reset_episode": "reset", "stop": "stop",
}


class ActorNode(Node):
    def __init__(self):
        super().__init__("actor")
        config = load_config(self)
        for name, default in (("actor_id", "actor0"), ("run_dir", ""), ("learner_host", "")):
            self.declare_parameter(name, default)
        for name in ("seed", "max_env_steps", "transitions_port", "weights_port"):
            self.declare_parameter(name, 0)
        p = lambda name: self.get_parameter(name).value  # noqa: E731
        session = {}
        if p("learner_host"):
            session["learner_host"] = p("learner_host")
        if p("transitions_port"):
            session["transitions_port"] = p("transitions_port")
        if p("weights_port"):
            session["weights_port"] = p("weights_port")
        if session:
            config = _with(config, "session", **session)
        if config.actor.rate_locked is None:
            # On the ROS cell the simulated world runs in real time: lock the loop to it.
            config = _with(config, "actor", rate_locked=True)
        self.config = config
        self.actor_id = p("actor_id")
        self.seed = int(p("seed"))
        self.max_env_steps = int(p("max_env_steps")) or None
        self.run_dir = Path(p("run_dir")) if p("run_dir") else None
        self.summary = None

        self.state = StateCache(self, max_age_s=config.ros.state_timeout_s)
        self.backend = RosRobotBackend(self, config, self.state)
        names = tuple(config.task.observation.images)
        self.reward_cameras: tuple[str, ...] = ()
        if config.task.reward.source != "sim_ground_truth":
            from robot_stack.reward.detector import reward_cameras

            # A learned reward: the actor sends those cameras' frames with each success query.
            self.reward_cameras = reward_cameras(config.task, config.cameras)
        names = tuple(dict.fromkeys(names + self.reward_cameras))
        self.cameras = RosCameras(self, names) if names else None
        self.success = RosSuccess(self, config.ros.service_timeout_s)
        self.reset = RosReset(self, config)
        self.simulated = config.robot.backend == "sim"
        self.feed = MirrorFeed(self, config) if self.simulated else None
        self.teleop = RosTeleop(self, config) if config.teleop.kind == "spacemouse" else None
        self.pub_episodes = self.create_publisher(EpisodeEvent, Topics.EPISODE_EVENTS, COMMAND_QOS)
        self.pub_interventions = self.create_publisher(InterventionEvent, Topics.INTERVENTION_EVENTS, COMMAND_QOS)
        log_dir = config.session.log_dir if config.session.log_dir is not None else (
            self.run_dir / "logs" if self.run_dir is not None else None)
        self.console = OperatorConsole(Path(log_dir) / "operator.csv" if log_dir is not None else None,
                                       config.task.name, self.actor_id)
        for service, command in OPERATOR_SERVICES.items():
            self.create_service(Trigger, f"~/{service}", lambda request, response, c=command: self._operator(c, response))

    def _operator(self, command: str, response: Trigger.Response) -> Trigger.Response:
        answer = self.console.request(command, "ros")
        response.success, response.message = bool(answer["queued"]), str(answer["message"])
        return response

    # ------------------------------------------------------------------ the env the loop steps

    def environment(self, config, rng: np.random.Generator) -> ActorEnvironment:
        object_position = None
        if self.feed is not None:
            feed = self.feed

            def mirrored_object_position():
                feed.sync()
                return feed.mirror.object_position()

            object_position = mirrored_object_position

        env = FrankaEnv(
            config, self.backend, self.cameras, self.success, self.reset, object_position=object_position,
            reward_cameras=self.reward_cameras,
        )
        intervention = None
        if config.teleop.kind == "scripted":
            if self.feed is None:
                raise RuntimeError("teleop kind 'scripted' needs a simulated robot")
            from robot_stack.sim.teleop import ScriptedTeleop

            teleop = ScriptedTeleop(self.feed.mirror.expert, _SyncedMirror(self.feed), config.teleop, rng)
            intervention = ScriptedIntervention(
                teleop, config.teleop.intervention, rng, env.action_dim, config.task.max_episode_steps
            )
        elif self.teleop is not None:
            intervention = HumanIntervention(self.teleop, env.action_dim)
        events_env = _EventsEnv(env, self)
        return ActorEnvironment(events_env, _EventsIntervention(intervention, self, events_env) if intervention else None)

    def dataset_dir(self):
        """The run dir parameter's dataset folder when given, else the task's run dir's."""
        if self.run_dir is not None and self.config.actor.record_dataset:
            from robot_stack.run_dir import RunPaths

            return RunPaths.under(self.run_dir).actor_dataset(self.actor_id)
        return dataset_path(self.config, self.actor_id)

    def wait_for_cell(self) -> None:
        wait = self.config.ros.wait_for_nodes_s
        self.state.wait_ready(wait)
        self.success.wait_ready(wait)
        self.reset.wait_ready(wait)
        if self.cameras is not None:
            self.cameras.wait_ready(wait)
        if self.feed is not None:
            self.feed.sync(timeout_s=wait)

    def run(self, stop: threading.Event) -> None:
        watcher = threading.Thread(target=lambda: (stop.wait(), STOPPING.set()), daemon=True)
        watcher.start()
        try:
            self.wait_for_cell()
        except StopRequested:
            self.get_logger().info("stopped before the cell was ready")
            return
        self.get_logger().info(
            f"cell ready; actor '{self.actor_id}' streaming to {self.config.session.learner_host}:"
            f"{self.config.session.transitions_port}"
        )
        status = self.run_dir / "actor_status.json" if self.run_dir else None
        outbox = self.run_dir / "outbox" / self.actor_id if self.run_dir else None
        try:
            self.summary = run_actor(
                self.config, self.actor_id, stop, env_factory=self.environment, max_env_steps=self.max_env_steps,
                seed=self.seed, status_path=status, outbox_dir=outbox, console=self.console,
                dataset_dir=self.dataset_dir(),
            )
        except StopRequested as error:
            # Stopped mid-reset: the episodes before it were sent; anything the learner had
            # not acknowledged stays in the outbox and goes out on the next start.
            self.get_logger().info(f"stopped during a reset ({error})")
            return
        s = self.summary
        timing = s.timing
        self.get_logger().info(
            f"stopped after {s.env_steps} env steps, {s.episodes} episodes ({s.successes} successes); "
            f"loop {timing.loop_hz:.2f} Hz, jitter p50 {timing.jitter_p50_ms:.2f} ms p99 {timing.jitter_p99_ms:.2f} ms, "
            f"{timing.overruns} overruns; delivered: {s.delivered}"
            if timing is not None and timing.jitter_p99_ms is not None else
            f"stopped after {s.env_steps} env steps, {s.episodes} episodes; delivered: {s.delivered}"
        )

    # ------------------------------------------------------------------ events

    def publish_episode(self, kind: int, episode: int, steps_total: int, **fields) -> None:
        msg = EpisodeEvent()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.actor_id = self.actor_id
        msg.kind = kind
        msg.episode = episode
        msg.env_steps_total = steps_total
        for key, value in fields.items():
            setattr(msg, key, value)
        self.pub_episodes.publish(msg)

    def publish_intervention(self, active: bool, episode: int, step: int) -> None:
        msg = InterventionEvent()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.actor_id = self.actor_id
        msg.active = active
        msg.episode = episode
        msg.episode_step = step
        msg.source = self.config.teleop.kind
        self.pub_interventions.publish(msg)


class _SyncedMirror:
    """The scripted teleoperator's view of the robot: the mirror, synced on each read."""

    def __init__(self, feed: MirrorFeed):
        self.feed = feed

    def read_state(self):
        self.feed.sync()
        return self.feed.mirror.read_state()


class _EventsEnv:
    """The env, publishing episode start and end events."""

    def __init__(self, env: FrankaEnv, node: ActorNode):
        self._env, self._node = env, node
        self.episode = -1
        self.steps_total = 0
        self.episode_return = 0.0
        self.length = 0
        self.intervention_steps = 0

    def __getattr__(self, name):
        return getattr(self._env, name)

    def reset(self, **kwargs):
        if self.length and self.episode >= 0:
            self._node.publish_episode(EpisodeEvent.STOPPED, self.episode, self.steps_total, **self._fields(False))
        result = self._env.reset(**kwargs)
        self.episode += 1
        self.episode_return, self.length, self.intervention_steps = 0.0, 0, 0
        self._node.publish_episode(EpisodeEvent.STARTED, self.episode, self.steps_total)
        return result

    def step(self, action):
        observation, reward, terminated, truncated, info = self._env.step(action)
        self.steps_total += 1
        self.length += 1
        self.episode_return += float(reward)
        if terminated or truncated:
            self._node.publish_episode(EpisodeEvent.ENDED, self.episode, self.steps_total, **self._fields(bool(info.get("success"))))
            self.length = 0
        return observation, reward, terminated, truncated, info

    def _fields(self, success: bool) -> dict:
        return {
            "length": self.length, "episode_return": self.episode_return, "success": success,
            "intervention_steps": self.intervention_steps,
        }

    def close(self):
        self._env.close()


class _EventsIntervention:
    """The intervention source, publishing when the operator takes over and lets go."""

    def __init__(self, inner, node: ActorNode, env: _EventsEnv):
        self._inner, self._node, self._env = inner, node, env
        self._active = False
        self._step = 0
        self._episode = -1

    @property
    def enabled(self):
        return self._inner.enabled

    @property
    def device(self):
        """The teleop device whose command buttons the console reads (None when scripted)."""
        return getattr(self._inner, "device", None)

    def reset(self) -> None:
        self._inner.reset()
        self._episode += 1
        self._step = 0
        self._active = False

    def decide(self, observation, policy_action, env_step):
        override = self._inner.decide(observation, policy_action, env_step)
        active = override is not None
        self._env.intervention_steps += active
        if active != self._active:
            self._node.publish_intervention(active, self._episode, self._step)
            self._active = active
        self._step += 1
        return override


def main(args=None) -> int:
    # The loop runs on the main thread and only waits on futures: one executor thread
    # delivers messages and completes them (rclpy's action client is not safe to share
    # between executor threads).
    return run_node(ActorNode, main_loop=lambda node, stop: node.run(stop), threads=1, args=args)


if __name__ == "__main__":
    raise SystemExit(main())
