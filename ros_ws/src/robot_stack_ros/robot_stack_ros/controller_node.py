"""The Cartesian impedance controller as a lifecycle node.

configure: build the task's robot backend (the simulated FR3, or the real arm through the
driver robot.driver names: robot_stack.hardware.franka) and start the real-time loop (robot_stack.control.controller_loop), which holds the
arm and publishes its state from then on. activate: accept targets. deactivate: refuse
targets and hold position. cleanup/shutdown: hold, stop the loop, close the backend.
With ``autostart`` (default true) the node configures and activates itself.

Publishes (sensor QoS, at ros.state_publish_rate_hz): joint_states, franka/tcp_pose,
franka/tcp_twist, franka/tcp_wrench; franka/tracked_target (the target after the safety
box, when it changes); franka/controller_stats (JSON, 1 Hz); sim/world_state (simulation
only: the world's state vector for the camera, reward and actor mirrors).
Subscribes (reliable): franka/target_pose (PoseStamped), franka/gripper_command (Float64,
finger width in m). Services: franka/set_impedance_gains, franka/move_to_joints,
sim/randomise_scene (simulation only).
"""

from __future__ import annotations

import json

import numpy as np
from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import JointState
from geometry_msgs.msg import TwistStamped, WrenchStamped
from std_msgs.msg import Float64, String

from robot_stack.config.schema import ImpedanceConfig
from robot_stack.control.from_config import impedance_gains_from_config, safety_box_from_config
from robot_stack.control.controller_loop import ControllerLoop, TargetRefused
from robot_stack_interfaces.msg import WorldState
from robot_stack_interfaces.srv import MoveToJoints, RandomiseScene, SetImpedanceGains

from robot_stack_ros.node_common import COMMAND_QOS, SENSOR_QOS, WORLD_QOS, Topics, load_config, run_node
from robot_stack_ros.convert import pose_from_msg, pose_msg, state_messages


class ControllerNode(LifecycleNode):
    def __init__(self):
        super().__init__("impedance_controller")
        self.declare_parameter("autostart", True)
        self.config = load_config(self)
        self.loop: ControllerLoop | None = None
        self.world = None
        self.scene = None
        self._backend = None
        self._last_tracked = None
        self._warned = 0
        self._commands = ReentrantCallbackGroup()
        self._slow = MutuallyExclusiveCallbackGroup()
        rate = self.config.ros.state_publish_rate_hz
        self.pub_joints = self.create_publisher(JointState, Topics.JOINT_STATES, SENSOR_QOS)
        self.pub_pose = self.create_publisher(PoseStamped, Topics.TCP_POSE, SENSOR_QOS)
        self.pub_twist = self.create_publisher(TwistStamped, Topics.TCP_TWIST, SENSOR_QOS)
        self.pub_wrench = self.create_publisher(WrenchStamped, Topics.TCP_WRENCH, SENSOR_QOS)
        self.pub_tracked = self.create_publisher(PoseStamped, Topics.TRACKED_TARGET, COMMAND_QOS)
        self.pub_stats = self.create_publisher(String, "franka/controller_stats", COMMAND_QOS)
        self.pub_world = None
        if self.config.robot.backend == "sim":
            self.pub_world = self.create_publisher(WorldState, Topics.WORLD_STATE, WORLD_QOS)
        self.create_subscription(PoseStamped, Topics.TARGET_POSE, self._on_target, COMMAND_QOS, callback_group=self._commands)
        self.create_subscription(Float64, Topics.GRIPPER_COMMAND, self._on_gripper, COMMAND_QOS, callback_group=self._commands)
        self.create_service(SetImpedanceGains, Topics.SET_GAINS, self._on_set_gains, callback_group=self._slow)
        self.create_service(MoveToJoints, Topics.MOVE_TO_JOINTS, self._on_move_to_joints, callback_group=self._slow)
        if self.config.robot.backend == "sim":
            self.create_service(RandomiseScene, Topics.RANDOMISE_SCENE, self._on_randomise, callback_group=self._slow)
        self.create_timer(1.0, self._publish_stats)
        self.get_logger().info(f"state at {rate:.0f} Hz, impedance law at {self.config.robot.control_rate_hz:.0f} Hz")
        if self.get_parameter("autostart").value:
            if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
                self.trigger_activate()

    # ------------------------------------------------------------------ lifecycle

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        config = self.config
        try:
            if config.robot.backend == "sim":
                from robot_stack.sim.backend import SimFrankaBackend
                from robot_stack.sim.tasks import make_task_scene
                from robot_stack.sim.world import SimWorld

                self.world = SimWorld(config.robot, config.task.sim)
                self.scene = make_task_scene(self.world, config.task)
                self._backend = SimFrankaBackend(self.world, safety_box_from_config(config.task))
            else:
                from robot_stack.hardware.devices import make_robot_backend

                self._backend = make_robot_backend(config.robot, config.task)
            self._set_gains_on_backend = self._backend_gains_setter(self._backend)
        except Exception as error:
            self.get_logger().error(f"configure failed: {error}")
            return TransitionCallbackReturn.FAILURE
        self.loop = ControllerLoop(
            self._backend,
            tick_rate_hz=config.ros.state_publish_rate_hz,
            control_rate_hz=config.robot.control_rate_hz,
            watchdog_timeout_s=config.robot.watchdog_timeout_s,
            on_tick=self._publish_state,
            set_gains=self._set_gains_on_backend,
        ).start()
        self.get_logger().info("configured: holding position")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.loop.activate()
        self.get_logger().info("active: tracking targets")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.loop.deactivate()
        self.get_logger().info("inactive: holding position, targets refused")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._close()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._close()
        return TransitionCallbackReturn.SUCCESS

    def shutdown(self) -> None:
        """SIGINT/SIGTERM: hold, stop the loop, close the backend."""
        self._close()

    def _close(self) -> None:
        if self.loop is not None:
            self.loop.stop()
            stats = self.loop.stats()
            self.get_logger().info(
                f"stopped: control loop {stats.control_rate_hz:.0f} Hz of {stats.nominal_control_rate_hz:.0f} Hz nominal, "
                f"{stats.overruns} overruns, {stats.targets_refused} targets refused, {stats.targets_clamped} clamped"
            )
            self.loop = None
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    # ------------------------------------------------------------------ loop thread

    def _publish_state(self, state) -> None:
        stamp = self.get_clock().now().to_msg()
        fingers = None
        if self.world is not None:
            fingers = tuple(float(v) for v in self.world.data.qpos[self.world.finger_qpos])
        joints, pose, twist, wrench = state_messages(state, stamp, fingers)
        self.pub_joints.publish(joints)
        self.pub_pose.publish(pose)
        self.pub_twist.publish(twist)
        self.pub_wrench.publish(wrench)
        if self.pub_world is not None:
            from robot_stack.sim.mirror import world_state_vector

            msg = WorldState()
            msg.header = pose.header
            msg.state = world_state_vector(self.world).tolist()
            self.pub_world.publish(msg)
        tracked = self.loop.last_tracked if self.loop is not None else None
        if tracked is not None and tracked is not self._last_tracked:
            self._last_tracked = tracked
            out = PoseStamped()
            out.header = pose.header
            out.pose = pose_msg(tracked[0], tracked[1])
            self.pub_tracked.publish(out)

    # ------------------------------------------------------------------ commands

    def _on_target(self, msg: PoseStamped) -> None:
        if self.loop is None:
            return
        try:
            try:
                position, rotation = pose_from_msg(msg.pose)
            except ValueError:
                self.loop.count_refused()
                raise
            self.loop.set_target(position, rotation)
        except (TargetRefused, ValueError) as error:
            self._warned += 1
            if self._warned <= 10 or self._warned % 100 == 0:
                self.get_logger().warning(f"target refused ({self._warned} so far): {error}")

    def _on_gripper(self, msg: Float64) -> None:
        if self.loop is None:
            return
        try:
            self.loop.set_gripper(float(msg.data))
        except TargetRefused as error:
            self.get_logger().warning(str(error))

    def _on_set_gains(self, request, response):
        g = request.gains
        try:
            current = self.config.robot.impedance
            impedance = ImpedanceConfig(
                translational_stiffness_n_per_m=g.translational_stiffness_n_per_m,
                rotational_stiffness_nm_per_rad=g.rotational_stiffness_nm_per_rad,
                translational_damping_ns_per_m=g.translational_damping_ns_per_m,
                rotational_damping_nms_per_rad=g.rotational_damping_nms_per_rad,
                nullspace_stiffness_nm_per_rad=g.nullspace_stiffness_nm_per_rad,
                translational_error_clip_m=tuple(g.translational_error_clip_m),
                rotational_error_clip_rad=tuple(g.rotational_error_clip_rad),
                torque_rate_limit_nm_per_cycle=current.torque_rate_limit_nm_per_cycle,
            )
            self.loop.set_gains(impedance)
            response.success, response.message = True, "gains applied at the next tick"
        except Exception as error:  # pydantic names the out-of-range field
            response.success, response.message = False, f"gains refused: {error}"
        return response

    def _backend_gains_setter(self, backend):
        def apply(impedance: ImpedanceConfig) -> None:
            if hasattr(backend, "set_impedance"):  # the real drivers
                backend.set_impedance(impedance)
            else:
                backend.gains = impedance_gains_from_config(self.config.robot, impedance)

        return apply

    def _on_move_to_joints(self, request, response):
        try:
            self.loop.move_to_joints(
                np.asarray(request.positions_rad, dtype=float), float(request.duration_s),
                timeout_s=float(request.duration_s) + self.config.ros.service_timeout_s,
            )
            response.success, response.message = True, "done"
        except Exception as error:
            response.success, response.message = False, f"joint move refused: {error}"
        return response

    def _on_randomise(self, request, response):
        held = self.config.robot.gripper.min_width_m if self.config.task.gripper_mode == "fixed_closed" else None
        seed = int(request.seed)

        def randomise(backend):
            # As the in-process simulated env's reset: back to time zero, objects re-placed
            # with the seed (an episode is then reproducible from its seed).
            self.world.restore_initial_state(gripper_width_m=held)
            backend.recover()
            if held is not None:
                backend.set_gripper(held)
            self.scene.randomise(np.random.default_rng(seed))

        try:
            self.loop.call(randomise, timeout_s=self.config.ros.service_timeout_s)
            response.success, response.message = True, f"scene re-placed with seed {seed}"
        except Exception as error:
            response.success, response.message = False, f"scene not re-placed: {error}"
        return response

    def _publish_stats(self) -> None:
        if self.loop is None:
            return
        s = self.loop.stats()
        self.pub_stats.publish(String(data=json.dumps({
            "active": self.loop.active,
            "ticks": s.ticks,
            "tick_rate_hz": round(s.tick_rate_hz, 2),
            "control_rate_hz": round(s.control_rate_hz, 1),
            "nominal_control_rate_hz": s.nominal_control_rate_hz,
            "tick_p99_ms": round(s.tick_p99_ms, 3),
            "overruns": s.overruns,
            "targets_applied": s.targets_applied,
            "targets_refused": s.targets_refused,
            "targets_clamped": s.targets_clamped,
            "watchdog_trips": s.watchdog_trips,
            "joint_moves": s.joint_moves,
            "error": repr(self.loop.error) if self.loop.error else None,
        })))


def main(args=None) -> int:
    return run_node(ControllerNode, args=args)


if __name__ == "__main__":
    raise SystemExit(main())
