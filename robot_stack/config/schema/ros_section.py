"""The ros section: how the ROS 2 nodes of a task session run."""

from __future__ import annotations

from pydantic import Field

from robot_stack.config.schema.primitives import Float, StrictModel


class RosConfig(StrictModel):
    """How the ROS 2 nodes of a task session run (ros_ws/src/robot_stack_ros)."""

    state_publish_rate_hz: Float = Field(
        100.0, ge=50.0, le=1000.0,
        description="Controller state topics (joint states, TCP pose, twist, wrench) per second; the impedance "
        "law runs at robot.control_rate_hz between them.",
    )
    service_timeout_s: Float = Field(2.0, gt=0.0, le=60.0, description="A success query or joint move that takes longer fails.")
    reset_timeout_s: Float = Field(60.0, gt=0.0, le=600.0, description="A reset (scripted or human) that takes longer fails.")
    wait_for_nodes_s: Float = Field(
        30.0, gt=0.0, le=600.0, description="How long a node waits at start for the topics and services it needs."
    )
    observation_lead_s: Float = Field(
        0.04, ge=0.0, le=0.08,
        description="The actor reads its observation this long before the next control tick, leaving that much "
        "time for the success query, inference and the transition.",
    )
    state_timeout_s: Float = Field(
        0.5, gt=0.0, le=5.0,
        description="Controller state older than this is waited for (as long again) and then refused: the "
        "actor stops rather than act on a stale robot.",
    )
