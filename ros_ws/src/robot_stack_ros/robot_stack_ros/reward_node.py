"""The reward service: answers "is the task done?" for the actor.

Sources (task.reward.source):

- ``sim_ground_truth`` reads the simulated world's object poses through a mirror of the
  controller's world (waiting, bounded, until the mirror is at least as new as the
  query's stamp).
- ``classifier`` and ``vlm``: the learned success detector (robot_stack.reward.detector)
  on the images that come with the query, at its calibrated threshold, with the task's
  state checks read from the controller's newest state.

Service: reward/classify_success (robot_stack_interfaces/ClassifySuccess). A query that
cannot be answered (a camera missing, images of the wrong size, no robot state for a state
check) gets probability -1 and a message naming the problem; the node goes on serving.
"""

from __future__ import annotations

import threading

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node

from robot_stack_interfaces.srv import ClassifySuccess

from robot_stack_ros.clients import MirrorFeed, StateCache
from robot_stack_ros.node_common import FeedNode, NodeConfigError, Topics, load_config, run_node, stamp_seconds
from robot_stack_ros.convert import image_from_msg, time_msg


class RewardNode(Node):
    def __init__(self):
        super().__init__("reward_service")
        self.config = load_config(self)
        source = self.config.task.reward.source
        self.source = source
        self.feed = None
        self.detector = None
        self.state = None
        self._feeds = None
        if source == "sim_ground_truth":
            self._feeds = FeedNode(self)
            self.feed = MirrorFeed(self._feeds.node, self.config)
        else:
            from robot_stack.reward.base import RewardModelError
            from robot_stack.reward.detector import SuccessDetector

            try:
                self.detector = SuccessDetector.from_task(self.config.task, self.config.cameras)
            except (RewardModelError, ValueError, OSError) as error:
                raise NodeConfigError(f"reward source '{source}': {error}") from None
            if self.detector.state_checks:
                self._feeds = FeedNode(self)
                self.state = StateCache(self._feeds.node, self.config.ros.state_timeout_s)
        self._lock = threading.Lock()
        self.answered = 0
        self.create_service(
            ClassifySuccess, Topics.CLASSIFY_SUCCESS, self._on_query, callback_group=MutuallyExclusiveCallbackGroup()
        )
        detail = ""
        if self.detector is not None:
            detail = (f" ({self.detector.model.kind} on {', '.join(self.detector.cameras)}, threshold "
                      f"{self.detector.threshold:.4f}, state checks: {self.detector.state_checks.describe()})")
        self.get_logger().info(f"serving '{source}' success on {Topics.CLASSIFY_SUCCESS}{detail}")

    def shutdown(self) -> None:
        if self._feeds is not None:
            self._feeds.close()

    def _on_query(self, request, response):
        try:
            with self._lock:
                if self.detector is None:
                    stamp = self.feed.sync(stamp_seconds(request.stamp), timeout_s=self.config.ros.service_timeout_s / 2)
                    status = self.feed.mirror.scene.status()
                    success, probability = bool(status.success), 1.0 if status.success else 0.0
                else:
                    success, probability, stamp = self._classify(request)
            response.success = success
            response.probability = float(probability)
            response.message = ""
            response.state_stamp = time_msg(stamp)
            self.answered += 1
        except Exception as error:
            response.success = False
            response.probability = -1.0
            response.message = str(error)
            self.get_logger().warning(f"success query not answered: {error}")
        return response

    def _classify(self, request) -> tuple[bool, float, float]:
        names = list(request.camera_names)
        if len(names) != len(request.images):
            raise ValueError(f"the query names {len(names)} cameras but carries {len(request.images)} images")
        missing = [c for c in self.detector.cameras if c not in names]
        if missing:
            raise ValueError(f"the reward model needs camera(s) {missing}; the query has {names}")
        images = {c: image_from_msg(request.images[names.index(c)]) for c in self.detector.cameras}
        state = None
        stamp = stamp_seconds(request.stamp)
        if self.state is not None:
            robot_state = self.state.read()
            state, stamp = robot_state, robot_state.time_s
        answer = self.detector.query(images, state)
        return answer.success, answer.probability, stamp


def main(args=None) -> int:
    return run_node(RewardNode, args=args)


if __name__ == "__main__":
    raise SystemExit(main())
