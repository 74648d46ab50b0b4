"""The reward service: answers "is the task done?" for the actor.

Sources (task.reward.source): ``sim_ground_truth`` reads the simulated world's object
poses through a mirror of the controller's world (waiting, bounded, until the mirror is at
least as new as the query's stamp). Learned classifiers and vision-language models plug in
here as other sources.

Service: reward/classify_success (robot_stack_interfaces/ClassifySuccess).
"""

from __future__ import annotations

import threading

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node

from robot_stack_interfaces.srv import ClassifySuccess

from robot_stack_ros.clients import MirrorFeed
from robot_stack_ros.common import NodeConfigError, Topics, load_config, run_node, stamp_seconds
from robot_stack_ros.convert import time_msg


class RewardNode(Node):
    def __init__(self):
        super().__init__("reward_service")
        self.config = load_config(self)
        source = self.config.task.reward.source
        if source != "sim_ground_truth":
            raise NodeConfigError(
                f"task '{self.config.task.name}' asks for reward source '{source}'; this build's reward service "
                "provides 'sim_ground_truth' (simulated tasks)"
            )
        self.feed = MirrorFeed(self, self.config)
        self._lock = threading.Lock()
        self.answered = 0
        self.create_service(
            ClassifySuccess, Topics.CLASSIFY_SUCCESS, self._on_query, callback_group=MutuallyExclusiveCallbackGroup()
        )
        self.get_logger().info(f"serving '{source}' success on {Topics.CLASSIFY_SUCCESS}")

    def _on_query(self, request, response):
        try:
            with self._lock:
                stamp = self.feed.sync(stamp_seconds(request.stamp), timeout_s=self.config.ros.service_timeout_s / 2)
                status = self.feed.mirror.scene.status()
            response.success = bool(status.success)
            response.probability = 1.0 if status.success else 0.0
            response.message = ""
            response.state_stamp = time_msg(stamp)
            self.answered += 1
        except Exception as error:
            response.success = False
            response.probability = -1.0
            response.message = str(error)
            self.get_logger().warning(f"success query not answered: {error}")
        return response


def main(args=None) -> int:
    return run_node(RewardNode, args=args)


if __name__ == "__main__":
    raise SystemExit(main())
