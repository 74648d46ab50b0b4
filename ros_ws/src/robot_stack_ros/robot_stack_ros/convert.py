"""Between robot_stack's types (numpy arrays, RobotState) and standard ROS 2 messages."""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose, PoseStamped, TwistStamped, WrenchStamped
from sensor_msgs.msg import Image, JointState

from robot_stack.control.rotations import matrix_to_quat, quat_to_matrix
from robot_stack.hardware.interfaces import RobotState

ARM_JOINT_NAMES = tuple(f"fr3_joint{i}" for i in range(1, 8))
FINGER_JOINT_NAMES = ("fr3_finger_joint1", "fr3_finger_joint2")
BASE_FRAME = "base"


def time_msg(seconds: float) -> Time:
    sec = int(seconds // 1)
    return Time(sec=sec, nanosec=int(round((seconds - sec) * 1e9)) % 1_000_000_000)


def pose_msg(position, rotation) -> Pose:
    pose = Pose()
    p = pose.position
    p.x, p.y, p.z = (float(v) for v in position)
    w, x, y, z = matrix_to_quat(rotation)
    q = pose.orientation
    q.w, q.x, q.y, q.z = float(w), float(x), float(y), float(z)
    return pose


def pose_from_msg(pose: Pose) -> tuple[np.ndarray, np.ndarray]:
    """Position and rotation matrix; raises ValueError on a non-finite or zero quaternion."""
    p, q = pose.position, pose.orientation
    position = np.array([p.x, p.y, p.z], dtype=float)
    if not np.all(np.isfinite(position)):
        raise ValueError(f"non-finite position {position.tolist()}")
    return position, quat_to_matrix([q.w, q.x, q.y, q.z])


def state_messages(state: RobotState, stamp: Time, q_fingers: tuple[float, float] | None = None):
    """JointState, TCP PoseStamped, TwistStamped and WrenchStamped of one reading."""
    joints = JointState()
    joints.header.stamp = stamp
    joints.header.frame_id = BASE_FRAME
    half = state.gripper_width_m / 2
    fingers = q_fingers if q_fingers is not None else (half, half)
    joints.name = list(ARM_JOINT_NAMES + FINGER_JOINT_NAMES)
    joints.position = [float(v) for v in state.q_rad] + [float(v) for v in fingers]
    joints.velocity = [float(v) for v in state.dq_rad_per_s] + [0.0, 0.0]
    joints.effort = [float(v) for v in state.tau_commanded_nm] + [0.0, 0.0]

    pose = PoseStamped()
    pose.header.stamp = stamp
    pose.header.frame_id = BASE_FRAME
    pose.pose = pose_msg(state.tcp_position_m, state.tcp_rotation)

    twist = TwistStamped()
    twist.header = pose.header
    v = state.tcp_velocity
    twist.twist.linear.x, twist.twist.linear.y, twist.twist.linear.z = (float(x) for x in v[:3])
    twist.twist.angular.x, twist.twist.angular.y, twist.twist.angular.z = (float(x) for x in v[3:])

    wrench = WrenchStamped()
    wrench.header = pose.header
    f = state.tcp_wrench
    wrench.wrench.force.x, wrench.wrench.force.y, wrench.wrench.force.z = (float(x) for x in f[:3])
    wrench.wrench.torque.x, wrench.wrench.torque.y, wrench.wrench.torque.z = (float(x) for x in f[3:])
    return joints, pose, twist, wrench


def robot_state_from_messages(joints: JointState, pose: PoseStamped, twist: TwistStamped, wrench: WrenchStamped) -> RobotState:
    position, rotation = pose_from_msg(pose.pose)
    n = len(ARM_JOINT_NAMES)
    t, w = twist.twist, wrench.wrench
    return RobotState(
        time_s=pose.header.stamp.sec + pose.header.stamp.nanosec * 1e-9,
        q_rad=np.asarray(joints.position[:n], dtype=float),
        dq_rad_per_s=np.asarray(joints.velocity[:n], dtype=float),
        tcp_position_m=position,
        tcp_rotation=rotation,
        tcp_velocity=np.array([t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z]),
        tcp_wrench=np.array([w.force.x, w.force.y, w.force.z, w.torque.x, w.torque.y, w.torque.z]),
        gripper_width_m=float(sum(joints.position[n : n + 2])),
        tau_commanded_nm=np.asarray(joints.effort[:n], dtype=float),
    )


def image_msg(image: np.ndarray, stamp: Time, frame_id: str) -> Image:
    """An (H, W, 3) uint8 RGB array as sensor_msgs/Image (rgb8)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
    msg = Image()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(image.shape[0]), int(image.shape[1])
    msg.encoding = "rgb8"
    msg.is_bigendian = 0
    msg.step = msg.width * 3
    msg.data = np.ascontiguousarray(image).tobytes()
    return msg


def image_from_msg(msg: Image) -> np.ndarray:
    """sensor_msgs/Image (rgb8 or bgr8) as an (H, W, 3) uint8 RGB array; names what is wrong
    with a malformed message instead of reshaping garbage."""
    if msg.encoding not in ("rgb8", "bgr8"):
        raise ValueError(f"image encoding '{msg.encoding}' is not supported (rgb8, bgr8)")
    if msg.step < msg.width * 3 or len(msg.data) != msg.step * msg.height:
        raise ValueError(
            f"image data has {len(msg.data)} bytes, {msg.height} rows of step {msg.step} need {msg.step * msg.height}"
        )
    rows = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, (bytes, bytearray)) else msg.data, np.uint8)
    image = rows.reshape(msg.height, msg.step)[:, : msg.width * 3].reshape(msg.height, msg.width, 3)
    return image[:, :, ::-1].copy() if msg.encoding == "bgr8" else image.copy()
