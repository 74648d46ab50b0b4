"""The reset node: brings the cell back to a start state between episodes.

Action reset/reset_task (robot_stack_interfaces/ResetTask). Mode 'scripted' (the task's
reset section): lift, open, joint move home, Cartesian move to a randomised start pose
(robot_stack.reset.scripted, driven through the controller's topics and services). In
simulation the controller re-places the scene's objects with the goal's seed first. Mode
'human': move to the start pose, then wait until the operator says the scene is ready
(service reset/operator_done, std_srvs/Trigger; the SpaceMouse 'reset_done' button does the
same). Feedback names the phase; a cancel stops between phases and holds the arm.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from std_srvs.srv import Trigger

from robot_stack.reset.scripted import ScriptedReset
from robot_stack_interfaces.action import ResetTask
from robot_stack_interfaces.srv import RandomiseScene

from robot_stack_ros.clients import PeerTimeout, RosRobotBackend, StateCache, call_service
from robot_stack_ros.node_common import FeedNode, Topics, load_config, run_node
from robot_stack_ros.convert import pose_msg


class ResetCancelled(RuntimeError):
    pass


class ResetNode(Node):
    def __init__(self):
        super().__init__("reset")
        self.config = load_config(self)
        c = self.config
        self._feeds = FeedNode(self)
        self.state = StateCache(self._feeds.node, max_age_s=c.ros.state_timeout_s)
        self.backend = RosRobotBackend(self, c, self.state)
        self.backend.lead_s = 0.0  # the routine's waits are real durations
        self.routine = ScriptedReset(c.task.reset, np.array(c.robot.home_joint_positions_rad), c.robot.gripper.max_width_m)
        self.simulated = c.robot.backend == "sim"
        group = ReentrantCallbackGroup()
        self._randomise = self.create_client(RandomiseScene, Topics.RANDOMISE_SCENE, callback_group=group) if self.simulated else None
        self._operator_done = threading.Event()
        self.create_service(Trigger, "reset/operator_done", self._on_operator_done, callback_group=group)
        self._busy = threading.Lock()
        self.resets = 0
        self._server = ActionServer(
            self, ResetTask, Topics.RESET_TASK, self._execute,
            goal_callback=self._on_goal, cancel_callback=lambda _: CancelResponse.ACCEPT, callback_group=group,
        )
        self.get_logger().info(f"reset mode '{c.task.reset.mode}' on {Topics.RESET_TASK}")

    def _on_goal(self, goal) -> GoalResponse:
        if goal.task and goal.task != self.config.task.name:
            self.get_logger().error(f"reset for task '{goal.task}' refused: this node runs '{self.config.task.name}'")
            return GoalResponse.REJECT
        if self._busy.locked():
            self.get_logger().error("reset refused: another reset is running")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _on_operator_done(self, request, response):
        self._operator_done.set()
        response.success, response.message = True, "operator confirmed the scene is ready"
        return response

    def _execute(self, handle):
        goal = handle.request
        result = ResetTask.Result()
        started = time.monotonic()
        mode = {ResetTask.Goal.MODE_SCRIPTED: "scripted", ResetTask.Goal.MODE_HUMAN: "human"}.get(
            goal.mode, self.config.task.reset.mode
        )

        def phase(name: str, progress: float) -> None:
            if handle.is_cancel_requested:
                raise ResetCancelled(f"cancelled before '{name}'")
            feedback = ResetTask.Feedback()
            feedback.phase, feedback.progress = name, float(progress)
            handle.publish_feedback(feedback)

        with self._busy:
            try:
                self.state.wait_ready(self.config.ros.wait_for_nodes_s)
                if self.simulated:
                    phase("re-placing the simulated scene", 0.1)
                    response = call_service(
                        self._randomise, RandomiseScene.Request(seed=int(goal.seed)),
                        self.config.ros.service_timeout_s, "controller scene reset",
                    )
                    if not response.success:
                        raise RuntimeError(response.message)
                else:
                    phase("clearing the scene", 0.1)
                    self.routine.clear_scene(self.backend)
                phase("moving to the start pose", 0.4)
                outcome = self.routine.move_to_start(self.backend, np.random.default_rng([int(goal.seed), 1]))
                if mode == "human":
                    phase("waiting for the operator (reset/operator_done)", 0.8)
                    self._operator_done.clear()
                    deadline = time.monotonic() + self.config.ros.reset_timeout_s
                    while not self._operator_done.wait(0.1):
                        if handle.is_cancel_requested:
                            raise ResetCancelled("cancelled while waiting for the operator")
                        if time.monotonic() > deadline:
                            raise PeerTimeout("the operator did not confirm the reset in time")
                        self.backend.hold()
                result.success = True
                result.message = f"start pose reached in {time.monotonic() - started:.2f} s"
                result.start_pose = pose_msg(outcome.position_m, outcome.rotation)
                handle.succeed()
                self.resets += 1
            except ResetCancelled as error:
                self._hold_quietly()
                result.success, result.message = False, str(error)
                handle.canceled()
            except Exception as error:
                self._hold_quietly()
                result.success, result.message = False, f"{type(error).__name__}: {error}"
                self.get_logger().error(f"reset failed: {result.message}")
                handle.abort()
        result.duration_s = time.monotonic() - started
        return result

    def shutdown(self) -> None:
        self._feeds.close()

    def _hold_quietly(self) -> None:
        try:
            self.backend.hold()
        except Exception:
            pass


def main(args=None) -> int:
    return run_node(ResetNode, args=args)


if __name__ == "__main__":
    raise SystemExit(main())
