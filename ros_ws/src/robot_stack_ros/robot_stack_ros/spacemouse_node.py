"""The SpaceMouse node: publishes the teleop device's twist and buttons.

spacemouse/twist (TwistStamped, action units in [-1, 1], end-effector frame, after the
task's axis signs, scales and deadzone) and spacemouse/joy (Joy: axes = the same six
values, buttons = the device's buttons), at ``rate_hz`` (default 50).

Devices (teleop.kind): 'spacemouse' is the 3Dconnexion device (robot_stack.hardware.spacemouse;
while it is unplugged the node publishes a zero twist and logs the error every 5 s);
'scripted' is the simulated session's scripted teleoperator (noisy scripted expert)
watching a mirror of the simulated world, published as if it were a device, for viewing
and for exercising the operator path without hardware.
"""

from __future__ import annotations

import numpy as np
from geometry_msgs.msg import TwistStamped
from rclpy.node import Node
from sensor_msgs.msg import Joy


from robot_stack.hardware.interfaces import TeleopCommand, TeleopDisconnected
from robot_stack_ros.clients import MirrorFeed, PeerTimeout
from robot_stack_ros.node_common import NodeConfigError, COMMAND_QOS, Topics, load_config, run_node


class SpaceMouseNode(Node):
    def __init__(self):
        super().__init__("spacemouse")
        self.config = load_config(self)
        self.declare_parameter("rate_hz", 50.0)
        teleop = self.config.teleop
        self.feed = None
        if teleop.kind == "scripted":
            if self.config.robot.backend != "sim":
                raise NodeConfigError("teleop kind 'scripted' needs a simulated robot")
            from robot_stack.sim.teleop import ScriptedTeleop

            self.feed = MirrorFeed(self, self.config)
            self.device = ScriptedTeleop(self.feed.mirror.expert, self.feed.mirror, teleop, np.random.default_rng())
        elif teleop.kind == "spacemouse":
            from robot_stack.hardware.spacemouse import SpaceMouse

            tcp_rotation = None
            if teleop.frame == "base":
                # The device's axes are read in the base frame and turned into the gripper's
                # with the measured TCP pose from the controller.
                from robot_stack_ros.clients import StateCache

                self.state = StateCache(self, max_age_s=self.config.ros.state_timeout_s)
                tcp_rotation = lambda: self.state.read().tcp_rotation  # noqa: E731
            self.device = SpaceMouse(teleop, tcp_rotation=tcp_rotation)
        else:
            raise NodeConfigError("the task's teleop kind is 'none': there is no device to publish")
        self.pub_twist = self.create_publisher(TwistStamped, Topics.SPACEMOUSE_TWIST, COMMAND_QOS)
        self.pub_joy = self.create_publisher(Joy, Topics.SPACEMOUSE_JOY, COMMAND_QOS)
        self.readings = 0
        self.create_timer(1.0 / float(self.get_parameter("rate_hz").value), self._publish)
        self.get_logger().info(f"publishing teleop kind '{teleop.kind}' on {Topics.SPACEMOUSE_TWIST}")

    def _publish(self) -> None:
        if self.feed is not None:
            try:
                self.feed.sync(timeout_s=0.0)
            except PeerTimeout:
                return
        try:
            command = self.device.read()
        except TeleopDisconnected as error:
            # Zero twist, no buttons: the intervention ends while the device is gone.
            command = TeleopCommand(twist=np.zeros(6), gripper=None, intervening=False)
            self.get_logger().error(str(error), throttle_duration_sec=5.0)
        except PeerTimeout as error:
            self.get_logger().warning(f"no TCP pose for the device's base frame: {error}", throttle_duration_sec=5.0)
            return
        stamp = self.get_clock().now().to_msg()
        twist = TwistStamped()
        twist.header.stamp = stamp
        v = [float(x) for x in np.clip(command.twist, -1.0, 1.0)]
        twist.twist.linear.x, twist.twist.linear.y, twist.twist.linear.z = v[:3]
        twist.twist.angular.x, twist.twist.angular.y, twist.twist.angular.z = v[3:]
        joy = Joy()
        joy.header.stamp = stamp
        joy.axes = v
        # Buttons as the task's button map reads them: the gripper request becomes a press.
        buttons = {action: index for index, action in self.config.teleop.button_map.items()}
        pressed = [0] * (max(self.config.teleop.button_map, default=-1) + 1)
        if command.gripper is not None:
            action = "gripper_close" if command.gripper >= 0.5 else "gripper_open" if command.gripper <= -0.5 else None
            if action in buttons:
                pressed[buttons[action]] = 1
        for action in command.buttons:  # success / failure / rerecord marks of a real device
            if action in buttons:
                pressed[buttons[action]] = 1
        joy.buttons = pressed
        self.pub_twist.publish(twist)
        self.pub_joy.publish(joy)
        self.readings += 1

    def shutdown(self) -> None:
        self.device.close()


def main(args=None) -> int:
    return run_node(SpaceMouseNode, threads=2, args=args)


if __name__ == "__main__":
    raise SystemExit(main())
